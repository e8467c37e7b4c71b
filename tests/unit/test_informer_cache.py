"""What an informer keeps: objects without managedFields, from the list and from the watch
alike (the events its handler sees are the cached objects)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exalb.k8s.client import ListResult
from exalb.k8s.informer import Informer
from exalb.k8s.resources import SERVICES, Resource

JSON = dict[str, Any]


def service(name: str, rv: str) -> JSON:
    return {
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "app",
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"type": "LoadBalancer"},
    }


class FakeKube:
    def __init__(self, listed: list[JSON], watched: list[tuple[str, JSON]]) -> None:
        self.listed, self.watched = listed, watched

    def list(self, resource: Resource, namespace: str | None = None, **_: Any) -> ListResult:
        return ListResult(self.listed, "1")

    def watch(self, resource: Resource, rv: str, *_: Any, **__: Any) -> Iterator[tuple[str, JSON]]:
        yield from self.watched


def test_cached_objects_and_events_carry_no_managed_fields() -> None:
    seen: list[tuple[str, JSON | None]] = []
    kube = FakeKube(
        [service("a", "1")],
        [("MODIFIED", service("a", "2")), ("ADDED", service("b", "3"))],
    )
    informer = Informer(kube, SERVICES, lambda ev, key, old, new: seen.append((ev, new)))  # type: ignore[arg-type]
    informer._relist()
    informer._watch()
    assert sorted(informer.keys()) == ["app/a", "app/b"]
    for obj in informer.items():
        assert "managedFields" not in obj["metadata"]
        assert obj["metadata"]["resourceVersion"] in ("2", "3")
    assert [ev for ev, _ in seen] == ["added", "modified", "added"]
    assert all(new is not None and "managedFields" not in new["metadata"] for _, new in seen)
