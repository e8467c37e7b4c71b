"""A corpus of invalid configs: each must be refused with a message naming object and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exalb.config.documents import parse_documents, split_documents
from exalb.config.problems import ObjectRef

CORPUS: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "invalid_configs.yaml").read_text()
)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({c["name"] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_invalid_config_is_refused_with_message(case: dict[str, Any]) -> None:
    docs, problems = split_documents(case["config"], "config")
    result = parse_documents([("config", d) for d in docs])
    errors = [str(p) for p in problems.errors] + [str(p) for p in result.errors]
    assert result.config is None or problems.errors, "config was accepted"
    assert any(case["expect"] in e for e in errors), errors


def test_all_errors_are_reported_at_once() -> None:
    text = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a}
spec: {addresses: [bad, 198.18.0.0/24], autoAssign: 3}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p}
spec: {peerAddress: nope}
"""
    docs, _ = split_documents(text, "f")
    result = parse_documents([("f", d) for d in docs])
    messages = [str(e) for e in result.errors]
    assert len(messages) >= 4, messages
    assert any("spec.addresses[0]" in m for m in messages)
    assert any("spec.autoAssign" in m for m in messages)
    assert any("BGPPeer/p: spec.myASN" in m for m in messages)
    assert any("BGPPeer/p: spec.peerAddress" in m for m in messages)


def test_problems_name_their_object_as_fields_not_only_as_text() -> None:
    """The controller puts an event on the object a problem names; it reads the fields, so
    a converted legacy object points at the ConfigMap without parsing "(from ...)"."""
    crd = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "prod", "namespace": "metallb-system"},
        "spec": {"addresses": ["10.0.0.300/24"]},
    }
    legacy = {
        "kind": "ConfigMap",
        "metadata": {"name": "config", "namespace": "metallb-system"},
        "data": {"config": "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64500\n"},
    }
    (problem,) = parse_documents([("a", crd)]).errors
    assert problem.obj == ObjectRef("IPAddressPool", "prod", "metallb-system")
    assert str(problem).startswith("IPAddressPool/prod: spec.addresses[0]:")
    errors = parse_documents([("b", legacy)]).errors
    ref = next(p.obj for p in errors if isinstance(p.obj, ObjectRef) and p.obj.kind == "BGPPeer")
    assert ref.legacy == "peers[0]" and str(ref) == "BGPPeer/peer1 (from peers[0])"
