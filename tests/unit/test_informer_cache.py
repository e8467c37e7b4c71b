"""What an informer keeps: objects without managedFields, from the list and from the watch
alike (the events its handler sees are the cached objects)."""

from __future__ import annotations

from typing import Any

from exalb.k8s.informer import Informer
from exalb.k8s.resources import SERVICES
from tests.unit.test_controller_events import FakeKube, service

JSON = dict[str, Any]


def test_cached_objects_and_events_carry_no_managed_fields() -> None:
    seen: list[tuple[str, JSON | None]] = []
    kube = FakeKube()
    kube.objects["services"] = [service("a", rv="1")]
    kube.watched = [("MODIFIED", service("a", rv="2")), ("ADDED", service("b", rv="3"))]
    assert all("managedFields" in obj["metadata"] for _, obj in kube.watched)
    informer = Informer(kube, SERVICES, lambda ev, key, old, new: seen.append((ev, new)))  # type: ignore[arg-type]
    informer._relist()
    informer._watch()
    assert sorted(informer.keys()) == ["app/a", "app/b"]
    for obj in informer.items():
        assert "managedFields" not in obj["metadata"]
        assert obj["metadata"]["resourceVersion"] in ("2", "3")
    assert [ev for ev, _ in seen] == ["added", "modified", "added"]
    assert all(new is not None and "managedFields" not in new["metadata"] for _, new in seen)
