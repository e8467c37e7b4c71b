"""The controller's informer event filters (``Controller._on_*``) without an apiserver: which
keys an add, update or delete puts on the work queue. The informers' caches are filled by
their own list path from a fake client; nothing is started. The real watch is covered by
tests/k8s."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from controller.app import Controller
from controller.reconciler import CONFIG_KEY
from exalb.k8s.client import ListResult
from exalb.k8s.informer import Informer
from exalb.k8s.resources import CONFIG_KINDS, IP_ADDRESS_POOLS, Resource

NS = "metallb-system"
JSON = dict[str, Any]


class FakeKube:
    """Answers list() from a dict of objects per resource and watch() with the events in
    ``watched``; anything else is not expected."""

    def __init__(self) -> None:
        self.objects: dict[str, list[JSON]] = {}
        self.watched: list[tuple[str, JSON]] = []

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ListResult:
        items = [
            o
            for o in self.objects.get(resource.plural, [])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]
        return ListResult(copy.deepcopy(items), "1")

    def watch(
        self, resource: Resource, resource_version: str, *_: Any, **__: Any
    ) -> Iterator[tuple[str, JSON]]:
        yield from copy.deepcopy(self.watched)


class FakeRecorder:
    def record(self, *args: Any, **kwargs: Any) -> bool:
        raise AssertionError("an event filter records nothing")


def service(name: str, ns: str = "app", *, type_: str = "LoadBalancer", rv: str = "1") -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv,
            "annotations": {"metallb.io/address-pool": "p"},
            "labels": {"app": name},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}},
    }


def namespace(name: str, rv: str = "1", **labels: str) -> JSON:
    return {
        "kind": "Namespace",
        "metadata": {"name": name, "resourceVersion": rv, "labels": labels},
    }


def pool(name: str = "p", rv: str = "1") -> JSON:
    return {
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": rv, "labels": {"a": "b"}},
        "spec": {"addresses": ["203.0.113.0/30"]},
    }


def config_map(name: str = "config") -> JSON:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": NS}, "data": {}}


def controller(kube: FakeKube | None = None) -> Controller:
    c = Controller(kube or FakeKube(), namespace=NS, recorder=FakeRecorder())  # type: ignore[arg-type]
    for inf in c.informers():
        inf._relist()  # the initial list: fills the cache, reports "added", marks synced
    drain(c)
    return c


def drain(c: Controller) -> list[str]:
    """Every key on the queue now, in order."""
    keys = []
    while (key := c.queue.get(timeout=0)) is not None:
        keys.append(key)
        c.queue.done(key)
    return keys


def changed(obj: JSON, **meta: Any) -> JSON:
    """A copy with a new resourceVersion and ``meta`` set in its metadata."""
    new = copy.deepcopy(obj)
    new["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
    new["metadata"].update(meta)
    return new


def cluster() -> tuple[FakeKube, Controller]:
    kube = FakeKube()
    kube.objects = {
        "services": [
            service("web"),
            service("internal", type_="ClusterIP"),
            service("other", "elsewhere"),
        ],
        "namespaces": [namespace("app", team="a"), namespace("elsewhere", team="a")],
        "ipaddresspools": [pool()],
        "configmaps": [config_map(), config_map("unrelated")],
    }
    return kube, controller(kube)


# -- wiring -------------------------------------------------------------------------------------
def test_each_informer_reports_to_its_filter() -> None:
    c = controller()
    assert c.services.handler == c._on_service
    assert c.namespaces.handler == c._on_namespace
    assert [i.resource for i in c.config_informers] == list(CONFIG_KINDS)
    assert all(i.handler == c._on_config and i.namespace == NS for i in c.config_informers)
    assert c.config_maps.handler == c._on_config_map
    assert c.config_maps.namespace == NS


# -- Services -----------------------------------------------------------------------------------
def test_a_service_add_update_and_delete_each_queue_its_key() -> None:
    c = controller()
    svc = service("web")
    c._on_service("added", "app/web", None, svc)
    assert drain(c) == ["svc:app/web"]
    for meta in ({"annotations": {}}, {"labels": {"app": "new"}}):
        c._on_service("modified", "app/web", svc, changed(svc, **meta))
        assert drain(c) == ["svc:app/web"]
    c._on_service("deleted", "app/web", svc, None)
    assert drain(c) == ["svc:app/web"]


def test_a_service_spec_or_status_change_queues_it() -> None:
    c = controller()
    svc = service("web")
    new_spec = changed(svc)
    new_spec["spec"]["loadBalancerIP"] = "203.0.113.1"
    new_status = changed(svc)
    new_status["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
    for new in (new_spec, new_status):
        c._on_service("modified", "app/web", svc, new)
        assert drain(c) == ["svc:app/web"]


def test_a_service_update_the_allocator_does_not_look_at_queues_nothing() -> None:
    c = controller()
    svc = service("web")
    c._on_service("modified", "app/web", svc, changed(svc, managedFields=[]))
    c._on_service("modified", "app/web", svc, copy.deepcopy(svc))  # a resync, same object
    assert drain(c) == []


def test_a_relist_reports_only_real_changes() -> None:
    """A resync (re-list) of unchanged objects reaches no filter; a new resourceVersion
    whose change the allocator ignores reaches it and is dropped there."""
    kube, c = cluster()
    c.services._relist()
    assert drain(c) == []
    kube.objects["services"][0] = changed(kube.objects["services"][0], managedFields=[])
    c.services._relist()
    assert drain(c) == []
    kube.objects["services"][0] = changed(kube.objects["services"][0], labels={})
    c.services._relist()
    assert drain(c) == ["svc:app/web"]


# -- Namespaces ---------------------------------------------------------------------------------
def test_a_namespace_label_change_queues_every_service_of_that_namespace_only() -> None:
    """Every Service of the namespace, whatever its type: the handler decides what is ours."""
    _, c = cluster()
    before = c.namespaces.get("app")
    assert before is not None
    c._on_namespace("modified", "app", before, changed(before, labels={"team": "b"}))
    assert sorted(drain(c)) == ["svc:app/internal", "svc:app/web"]


def test_a_namespace_update_without_label_change_or_a_delete_queues_nothing() -> None:
    _, c = cluster()
    before = c.namespaces.get("app")
    assert before is not None
    c._on_namespace("modified", "app", before, changed(before, annotations={"x": "y"}))
    c._on_namespace("deleted", "app", before, None)
    assert drain(c) == []


def test_a_namespace_added_after_the_initial_sync_requeues_its_services() -> None:
    """A Namespace seen after its Services must not leave them judged without its labels;
    during the initial list (the cache is not synced yet) restore() handles every Service."""
    kube = FakeKube()
    kube.objects = {"services": [service("web"), service("other", "elsewhere")]}
    c = Controller(kube, namespace=NS, recorder=FakeRecorder())  # type: ignore[arg-type]
    c.services._relist()
    drain(c)
    kube.objects["namespaces"] = [namespace("app", team="a")]
    c.namespaces._relist()  # the initial list: not synced while it reports
    assert drain(c) == []
    c._on_namespace("added", "later", None, namespace("later"))
    assert drain(c) == []  # no Services there
    c._on_namespace("added", "app", None, namespace("app", team="a"))
    assert drain(c) == ["svc:app/web"]


# -- configuration ------------------------------------------------------------------------------
def test_a_config_object_add_change_or_delete_queues_the_config() -> None:
    c = controller()
    p = pool()
    c._on_config("added", f"{NS}/p", None, p)
    assert drain(c) == [CONFIG_KEY]
    new_spec = changed(p)
    new_spec["spec"]["addresses"] = ["198.51.100.0/30"]
    for new in (new_spec, changed(p, labels={})):
        c._on_config("modified", f"{NS}/p", p, new)
        assert drain(c) == [CONFIG_KEY]
    c._on_config("deleted", f"{NS}/p", p, None)
    assert drain(c) == [CONFIG_KEY]


def test_a_config_object_status_or_annotation_write_queues_nothing() -> None:
    """Our own status writes (pool counters) come back as watch events: no re-parse."""
    c = controller()
    p = pool()
    status = changed(p)
    status["status"] = {"availableIPv4": 3}
    c._on_config("modified", f"{NS}/p", p, status)
    c._on_config("modified", f"{NS}/p", p, changed(p, annotations={"x": "y"}))
    assert drain(c) == []


def test_only_the_legacy_config_map_queues_the_config() -> None:
    c = controller()
    cm, other = config_map(), config_map("unrelated")
    for event, old, new in (("added", None, cm), ("modified", cm, cm), ("deleted", cm, None)):
        c._on_config_map(event, f"{NS}/config", old, new)
        assert drain(c) == [CONFIG_KEY]
        c._on_config_map(event, f"{NS}/unrelated", old and other, new and other)
        assert drain(c) == []


def test_the_pool_informer_feeds_the_config_filter() -> None:
    """Through the informer's own list path: a changed pool spec queues the config."""
    kube, c = cluster()
    pools: Informer = next(i for i in c.config_informers if i.resource == IP_ADDRESS_POOLS)
    new = changed(kube.objects["ipaddresspools"][0])
    new["spec"]["addresses"] = ["198.51.100.0/30"]
    kube.objects["ipaddresspools"] = [new]
    pools._relist()
    assert drain(c) == [CONFIG_KEY]
