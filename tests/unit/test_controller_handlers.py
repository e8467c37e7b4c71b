"""The controller's handlers (:mod:`controller.reconciler`) without an apiserver: small fakes
of what they read, write and requeue. The loop and the real API are covered by tests/k8s."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from controller import metrics
from controller import reconciler as reconciler_module
from controller.reconciler import CONFIG_KEY, POOLS_KEY, Reconciler, Result
from controller.status import ServicePatches
from exalb.config.problems import ObjectRef, Subject
from exalb.k8s.client import ApiError

NS = "metallb-system"
JSON = dict[str, Any]


def pool(name: str = "p", *addresses: str) -> JSON:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"addresses": list(addresses or ["203.0.113.0/30"])},
    }


def service(name: str, *, ingress: tuple[str, ...] = (), type_: str = "LoadBalancer") -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "app",
            "uid": f"u-{name}",
            "creationTimestamp": f"2026-01-01T00:00:0{len(name)}Z",
        },
        "spec": {
            "type": type_,
            "ports": [{"port": 80, "protocol": "TCP"}],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}},
    }


class FakeCluster:
    def __init__(self, *config: JSON) -> None:
        self.config = list(config)
        self.svcs: dict[str, JSON] = {}

    def service(self, key: str) -> JSON | None:
        return self.svcs.get(key)

    def services(self) -> list[JSON]:
        return list(self.svcs.values())

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return {}

    def config_documents(self) -> list[tuple[str, Any]]:
        return [(str(o["kind"]), o) for o in self.config]

    def config_object(self, subject: Subject) -> JSON | None:
        if not isinstance(subject, ObjectRef):
            return None
        return next((o for o in self.config if o["metadata"]["name"] == subject.name), None)

    def pools(self) -> list[JSON]:
        return [o for o in self.config if o["kind"] == "IPAddressPool"]


class FakeWriter:
    def __init__(self) -> None:
        self.patches: list[tuple[str, ServicePatches]] = []
        self.pool_status: list[tuple[str, dict[str, int]]] = []
        self.events: list[tuple[str, str]] = []
        self.fail: ApiError | None = None

    def patch_service(self, obj: JSON, patches: ServicePatches) -> None:
        if self.fail is not None:
            raise self.fail
        self.patches.append((obj["metadata"]["name"], patches))

    def patch_pool_status(self, name: str, status: dict[str, int]) -> None:
        self.pool_status.append((name, status))

    def record(
        self, obj: JSON, reason: str, message: str, *, warning: bool = False, dedupe: bool = True
    ) -> bool:
        self.events.append((obj["metadata"]["name"], reason))
        return True


class FakeQueue:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.later: list[str] = []

    def add(self, key: str) -> None:
        self.added.append(key)

    def add_after(self, key: str, delay: float) -> None:
        self.later.append(key)


def reconciler(
    cluster: FakeCluster,
) -> tuple[Reconciler, FakeWriter, FakeQueue]:
    writer, queue = FakeWriter(), FakeQueue()
    r = Reconciler(cluster, writer, queue, namespace=NS, lb_class=None, now=lambda: "T")
    return r, writer, queue


def run(outcome: Result | Any) -> Result:
    """The loop runs a deferred write on its pool; here, at once."""
    return outcome if isinstance(outcome, Result) else outcome()


def test_nothing_is_allocated_before_a_valid_config() -> None:
    cluster = FakeCluster()
    r, writer, _ = reconciler(cluster)
    cluster.svcs["app/web"] = service("web")
    assert r.process("svc:app/web") is Result.OK
    assert writer.patches == []
    cluster.config.append(pool())
    assert r.process(CONFIG_KEY) is Result.REPROCESS_ALL  # the loop requeues every Service
    assert r.process(CONFIG_KEY) is Result.OK  # unchanged: nothing to redo


def test_a_service_gets_an_ip_status_then_annotation_and_an_event() -> None:
    cluster = FakeCluster(pool())
    r, writer, queue = reconciler(cluster)
    r.process(CONFIG_KEY)
    cluster.svcs["app/web"] = service("web")
    assert run(r.process("svc:app/web")) is Result.OK
    ((name, patches),) = writer.patches
    assert name == "web" and patches.status is not None and patches.metadata is not None
    ingress = patches.status["status"]["loadBalancer"]["ingress"]
    assert ingress == [{"ip": "203.0.113.0"}]
    assert ("web", "IPAllocated") in writer.events
    assert POOLS_KEY in queue.later


def test_a_service_whose_status_already_holds_its_ip_writes_nothing() -> None:
    cluster = FakeCluster(pool())
    r, writer, _ = reconciler(cluster)
    cluster.svcs["app/web"] = service("web")
    for key in r.restore(cluster.services()):
        run(r.process(key))
    cluster.svcs["app/web"] = _applied(cluster.svcs["app/web"], writer)
    writer.patches.clear()
    writer.events.clear()
    assert r.process("svc:app/web") is Result.OK  # the same decision again: no write, no event
    assert writer.patches == [] and writer.events == []


def test_api_errors_map_to_what_the_loop_should_do() -> None:
    cluster = FakeCluster(pool())
    r, writer, _ = reconciler(cluster)
    r.process(CONFIG_KEY)
    cluster.svcs["app/web"] = service("web")
    for status, want in ((409, Result.RETRY), (503, Result.RETRY), (404, Result.OK),
                         (422, Result.PERMANENT)):  # fmt: skip
        writer.fail = ApiError(status, "x")
        assert run(r.handle_service("app/web")) is want, status


def test_deleting_a_service_releases_its_ip_and_requeues_the_waiting() -> None:
    cluster = FakeCluster(pool("p", "203.0.113.10/32"))
    r, writer, queue = reconciler(cluster)
    r.process(CONFIG_KEY)
    cluster.svcs["app/a"] = service("a")
    cluster.svcs["app/b"] = service("b")
    run(r.process("svc:app/a"))
    run(r.process("svc:app/b"))  # the pool is full: b waits
    assert r.pending == {"app/b"}
    del cluster.svcs["app/a"]
    assert r.process("svc:app/a") is Result.OK
    assert "svc:app/b" in queue.added
    run(r.process("svc:app/b"))
    assert r.pending == set()
    assert writer.patches[-1][1].status["status"]["loadBalancer"]["ingress"] == [  # type: ignore[index]
        {"ip": "203.0.113.10"}
    ]


def test_an_invalid_config_keeps_the_last_good_one_and_goes_on_the_object() -> None:
    good = pool()
    cluster = FakeCluster(good)
    r, writer, _ = reconciler(cluster)
    r.process(CONFIG_KEY)
    config = r.allocator.config
    cluster.config = [pool("p", "nonsense")]
    assert r.process(CONFIG_KEY) is Result.OK
    assert r.allocator.config is config
    invalid = [e for e in writer.events if e[1] == "InvalidConfig"]
    assert invalid == [("p", "InvalidConfig")]
    r.process(CONFIG_KEY)
    assert writer.events.count(("p", "InvalidConfig")) == 1  # once per distinct problem


def test_pool_counters_are_written_only_when_they_change() -> None:
    cluster = FakeCluster(pool())
    r, writer, _ = reconciler(cluster)
    r.process(CONFIG_KEY)
    assert r.process(POOLS_KEY) is Result.OK
    ((name, status),) = writer.pool_status
    assert name == "p" and status["availableIPv4"] == 4 and status["assignedIPv4"] == 0
    cluster.config[0]["status"] = status
    r.process(POOLS_KEY)
    assert len(writer.pool_status) == 1


def test_a_service_that_is_no_longer_ours_is_cleared() -> None:
    cluster = FakeCluster(pool())
    r, writer, _ = reconciler(cluster)
    r.process(CONFIG_KEY)
    cluster.svcs["app/web"] = service("web")
    run(r.process("svc:app/web"))
    cluster.svcs["app/web"] = _applied(cluster.svcs["app/web"], writer)
    cluster.svcs["app/web"]["spec"]["type"] = "ClusterIP"
    assert r.process("svc:app/web") is Result.OK
    cleared = writer.patches[-1][1]
    assert (
        cleared.status is not None and cleared.status["status"]["loadBalancer"] == {"ingress": None}
    ) or cleared.status["status"]["loadBalancer"].get("ingress") in (None, [])


def _applied(obj: JSON, writer: FakeWriter) -> JSON:
    """``obj`` as the apiserver would return it after the writer's patches."""
    out = {**obj, "metadata": dict(obj["metadata"]), "status": dict(obj.get("status") or {})}
    for _name, patches in writer.patches:
        if patches.status is not None:
            out["status"] = {k: v for k, v in patches.status["status"].items() if v is not None}
        if patches.metadata is not None:
            ann = dict(out["metadata"].get("annotations") or {})
            ann.update(patches.metadata["metadata"]["annotations"])
            out["metadata"]["annotations"] = ann
    return out


HOSTILE_LEGACY = {
    "400-digit hold-time": "peers:\n- peer-address: 198.51.100.1\n  peer-asn: 64500\n"
    f"  my-asn: 64512\n  hold-time: {'9' * 400}s\n",
    "5,000-deep nesting": "address-pools: " + "[" * 5000 + "]" * 5000 + "\n",
    "duplicate key": "address-pools: []\naddress-pools: []\n",
    "alias bomb": "address-pools:\n- &a [x, x, x, x, x, x, x, x]\n"
    + "".join(f"- &{c} [{', '.join([f'*{p}'] * 8)}]\n" for p, c in itertools.pairwise("abcdefgh")),
}


def test_hostile_config_keeps_the_controller_running_on_the_last_good_config() -> None:
    """Issue 12, point 3: each of these crashed the controller (crash-loop) or froze it."""
    cluster = FakeCluster(pool())
    r, _, _ = reconciler(cluster)
    cluster.svcs["app/web"] = service("web")
    for key in r.restore(cluster.services()):
        run(r.process(key))
    good = r.allocator.config
    for name, text in HOSTILE_LEGACY.items():
        cluster.config = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "config", "namespace": NS},
                "data": {"config": text},
            }
        ]
        assert r.process(CONFIG_KEY) is Result.OK, name
        assert r.allocator.config is good, name
        assert metrics.CONFIG_STALE._value.get() == 1, name
        # Services are still decided on the last good config
        cluster.svcs["app/new"] = service("new")
        assert run(r.process("svc:app/new")) is Result.OK
        assert r.allocator.assigned("app/new"), name
    cluster.config = [pool()]
    r.process(CONFIG_KEY)
    assert metrics.CONFIG_STALE._value.get() == 0


def test_an_exception_escaping_the_parser_is_a_stale_config_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = FakeCluster(pool())
    r, _, _ = reconciler(cluster)
    r.process(CONFIG_KEY)

    def crash(*_a: Any, **_k: Any) -> Any:
        raise RecursionError("deep")

    monkeypatch.setattr(reconciler_module, "parse_documents", crash)
    assert r.process(CONFIG_KEY) is Result.OK
    assert r.config_ready and metrics.CONFIG_STALE._value.get() == 1
    r.restore([])  # the start-up path too
