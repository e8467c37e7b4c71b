"""exalb's metallb.io CRDs on a real kube-apiserver: installed by helm, MetalLB YAML
accepted unchanged, single-object mistakes rejected at admission with the field named."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from lab.binaries import Tools
from lab.controlplane import ControlPlane
from tests.k8s.conftest import KINDS, RELEASE, RELEASE_NAMESPACE, REPO, resource_path

pytestmark = pytest.mark.k8s

EXAMPLES = REPO / "examples" / "crds"

#: Values the CRD schemas default; read-back spec = these, overlaid with what was sent.
DEFAULTS: dict[str, dict[str, Any]] = {
    "IPAddressPool": {"autoAssign": True, "avoidBuggyIPs": False},
    "L2Advertisement": {},
    "BGPAdvertisement": {"aggregationLength": 32, "aggregationLengthV6": 128},
    "Community": {},
    "BGPPeer": {"peerPort": 179, "disableMP": False, "dualStackAddressFamily": False},
}


def _example_objects() -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objects.append((f"{path.stem}/{doc['kind']}/{doc['metadata']['name']}", doc))
    return objects


EXAMPLE_OBJECTS = _example_objects()


def _create(cp: ControlPlane, namespace: str, obj: dict[str, Any]) -> Any:
    body = copy.deepcopy(obj)
    body["metadata"]["namespace"] = namespace
    # Strict: unknown fields are errors, exactly what `kubectl apply` asks the server for.
    return cp.api("POST", resource_path(body["kind"], namespace) + "?fieldValidation=Strict", body)


def test_helm_install_installs_every_crd(
    control_plane: ControlPlane, tools: Tools, helm_release: str
) -> None:
    status = control_plane.run_tool(
        [str(tools.helm), "status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json"]
    )
    assert '"status":"deployed"' in status.stdout.replace(" ", "")
    for kind, (api_version, plural) in KINDS.items():
        crd = control_plane.api(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.metallb.io"
        ).body
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["kind"] == kind
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        assert f"metallb.io/{version['name']}" == api_version
        for served in crd["spec"]["versions"]:
            assert served["served"] and served["subresources"] == {"status": {}}
        if kind == "BGPPeer":  # older MetalLB YAML (v1beta1) still applies
            assert {v["name"] for v in crd["spec"]["versions"]} == {"v1beta1", "v1beta2"}
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True"
        assert conditions.get("NamesAccepted") == "True"


def test_examples_exist() -> None:
    kinds = {obj["kind"] for _, obj in EXAMPLE_OBJECTS}
    assert kinds == set(KINDS)
    assert len(EXAMPLE_OBJECTS) >= 20
    assert all(obj["metadata"]["namespace"] == "metallb-system" for _, obj in EXAMPLE_OBJECTS)


@pytest.mark.parametrize(("name", "obj"), EXAMPLE_OBJECTS, ids=[n for n, _ in EXAMPLE_OBJECTS])
def test_example_is_accepted_and_reads_back_equal(
    control_plane: ControlPlane, namespace: str, name: str, obj: dict[str, Any]
) -> None:
    created = _create(control_plane, namespace, obj)
    assert created.ok, f"{name}: {created.status} {created.message}"
    assert created.warnings == (), f"{name}: server warnings {created.warnings}"
    got = control_plane.api(
        "GET", resource_path(obj["kind"], namespace, obj["metadata"]["name"])
    ).body
    assert got["apiVersion"] == obj["apiVersion"]
    assert got["metadata"].get("labels") == obj["metadata"].get("labels")
    assert got["spec"] == {**DEFAULTS[obj["kind"]], **obj["spec"]}


def test_kubectl_applies_all_examples_together(
    control_plane: ControlPlane, tools: Tools, helm_release: str
) -> None:
    """The whole directory through kubectl, in the namespace the examples name."""
    control_plane.ensure_namespace("metallb-system")
    try:
        proc = control_plane.run_tool(
            [str(tools.kubectl), "apply", "--server-side", "-f", str(EXAMPLES)]
        )
        assert proc.stdout.count("serverside-applied") == len(EXAMPLE_OBJECTS), proc.stdout
        listed = control_plane.run_tool(
            [str(tools.kubectl), "get", "metallb", "-n", "metallb-system", "-o", "name"]
        )
        assert len(listed.stdout.split()) == len(EXAMPLE_OBJECTS)
    finally:
        control_plane.run_tool(
            [str(tools.kubectl), "delete", "--ignore-not-found", "-f", str(EXAMPLES)],
            check=False,
        )


# --------------------------------------------------------------------------- invalid


def _pool(**spec: Any) -> dict[str, Any]:
    return {"kind": "IPAddressPool", "spec": {"addresses": ["198.51.100.0/28"], **spec}}


def _peer(**spec: Any) -> dict[str, Any]:
    base = {"myASN": 64512, "peerASN": 64500, "peerAddress": "198.18.0.1"}
    return {"kind": "BGPPeer", "spec": {k: v for k, v in {**base, **spec}.items() if v is not None}}


def _bgpadv(**spec: Any) -> dict[str, Any]:
    return {"kind": "BGPAdvertisement", "spec": spec}


def _l2adv(**spec: Any) -> dict[str, Any]:
    return {"kind": "L2Advertisement", "spec": spec}


def _community(*aliases: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Community", "spec": {"communities": list(aliases)}}


#: (id, object, substrings the server's error message must contain — the field first).
INVALID: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("pool-cidr-prefix-33", _pool(addresses=["198.51.100.0/33"]), ("spec.addresses[0]",)),
    ("pool-bare-ip", _pool(addresses=["198.51.100.7"]), ("spec.addresses[0]",)),
    ("pool-not-an-address", _pool(addresses=["10.0.0.0/8", "pool-a"]), ("spec.addresses[1]",)),
    (
        "pool-range-mixed-families",
        _pool(addresses=["198.18.0.1-2001:db8::1"]),
        ("spec.addresses[0]",),
    ),
    (
        "pool-range-three-parts",
        _pool(addresses=["198.18.0.1-198.18.0.5-198.18.0.9"]),
        ("spec.addresses[0]",),
    ),
    ("pool-no-addresses", _pool(addresses=[]), ("spec.addresses",)),
    ("pool-unknown-field", _pool(autoassign=False), ('unknown field "spec.autoassign"',)),
    ("pool-autoassign-not-bool", _pool(autoAssign="yes"), ("spec.autoAssign",)),
    (
        "pool-duplicate-namespace",
        _pool(serviceAllocation={"namespaces": ["a", "a"]}),
        ("spec.serviceAllocation.namespaces[1]", "Duplicate"),
    ),
    (
        "pool-bad-selector-operator",
        _pool(
            serviceAllocation={
                "serviceSelectors": [{"matchExpressions": [{"key": "a", "operator": "Like"}]}]
            }
        ),
        ("spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator",),
    ),
    ("peer-myasn-too-big", _peer(myASN=4294967296), ("spec.myASN",)),
    ("peer-peerasn-negative", _peer(peerASN=-1), ("spec.peerASN",)),
    ("peer-missing-myasn", _peer(myASN=None), ("spec.myASN", "Required")),
    ("peer-asn-and-dynamic", _peer(dynamicASN="external"), ("peerASN", "dynamicASN")),
    ("peer-no-asn", _peer(peerASN=None), ("peerASN", "dynamicASN")),
    ("peer-dynamic-asn-enum", _peer(peerASN=None, dynamicASN="sometimes"), ("spec.dynamicASN",)),
    ("peer-bad-address", _peer(peerAddress="198.18.0.300"), ("spec.peerAddress",)),
    ("peer-address-and-interface", _peer(interface="eth0"), ("peerAddress", "interface")),
    ("peer-no-address", _peer(peerAddress=None), ("peerAddress", "interface")),
    ("peer-hold-1s", _peer(holdTime="1s"), ("spec.holdTime", "3s")),
    ("peer-hold-not-duration", _peer(holdTime="fast"), ("spec.holdTime",)),
    (
        "peer-keepalive-over-hold",
        _peer(holdTime="30s", keepaliveTime="60s"),
        ("spec.keepaliveTime",),
    ),
    (
        "peer-password-and-secret",
        _peer(password="x", passwordSecret={"name": "s", "namespace": "metallb-system"}),
        ("spec.passwordSecret", "password"),
    ),
    ("peer-multihop-ibgp", _peer(peerASN=64512, ebgpMultiHop=True), ("spec.ebgpMultiHop",)),
    (
        "peer-multihop-dynamic-internal",
        _peer(peerASN=None, dynamicASN="internal", ebgpMultiHop=True),
        ("spec.ebgpMultiHop",),
    ),
    ("peer-port-too-big", _peer(peerPort=70000), ("spec.peerPort",)),
    ("peer-router-id-v6", _peer(routerID="2001:db8::1"), ("spec.routerID",)),
    ("peer-connect-fraction", _peer(connectTime="1500ms"), ("spec.connectTime", "whole")),
    ("peer-unknown-field", _peer(holdtime="90s"), ('unknown field "spec.holdtime"',)),
    ("adv-aggregation-33", _bgpadv(aggregationLength=33), ("spec.aggregationLength",)),
    ("adv-aggregation-0", _bgpadv(aggregationLength=0), ("spec.aggregationLength",)),
    ("adv-aggregation-v6-129", _bgpadv(aggregationLengthV6=129), ("spec.aggregationLengthV6",)),
    ("adv-localpref-negative", _bgpadv(localPref=-1), ("spec.localPref",)),
    ("adv-community-out-of-range", _bgpadv(communities=["65536:1"]), ("spec.communities[0]",)),
    (
        "adv-large-community-out-of-range",
        _bgpadv(communities=["64512:1", "large:4294967296:1:1"]),
        ("spec.communities[1]",),
    ),
    ("adv-community-garbage", _bgpadv(communities=["64512:x"]), ("spec.communities[0]",)),
    (
        "adv-service-selectors-with-aggregation",
        _bgpadv(aggregationLength=24, serviceSelectors=[{"matchLabels": {"a": "b"}}]),
        ("spec.serviceSelectors",),
    ),
    (
        "l2-preferred-weight-0",
        _l2adv(preferredNodeSelectors=[{"weight": 0, "preference": {}}]),
        ("spec.preferredNodeSelectors[0].weight",),
    ),
    ("l2-unknown-field", _l2adv(interface=["eth0"]), ('unknown field "spec.interface"',)),
    (
        "community-bad-value",
        _community({"name": "x", "value": "no-export"}),
        ("spec.communities[0].value",),
    ),
    (
        "community-duplicate-name",
        _community({"name": "x", "value": "1:1"}, {"name": "x", "value": "1:2"}),
        ("spec.communities[1]", "Duplicate"),
    ),
]


def test_invalid_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 15
    assert len({case_id for case_id, _, _ in INVALID}) == len(INVALID)


@pytest.mark.parametrize(("case_id", "obj", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_object_is_rejected_naming_the_field(
    control_plane: ControlPlane,
    namespace: str,
    case_id: str,
    obj: dict[str, Any],
    expected: tuple[str, ...],
) -> None:
    kind = obj["kind"]
    body = {
        "apiVersion": KINDS[kind][0],
        "kind": kind,
        "metadata": {"name": case_id},
        "spec": obj["spec"],
    }
    resp = _create(control_plane, namespace, body)
    assert resp.status in (400, 422), f"{case_id} accepted: {resp.status} {resp.body}"
    for needle in expected:
        assert needle in resp.message, f"{case_id}: {needle!r} not in {resp.message!r}"
    # A malformed value must yield the schema's message, not a CEL evaluation failure.
    assert "type conversion error" not in resp.message, resp.message
    # Nothing half-created.
    got = control_plane.api("GET", resource_path(kind, namespace, case_id))
    assert got.status == 404


def test_graceful_restart_is_immutable(control_plane: ControlPlane, namespace: str) -> None:
    peer = {
        "apiVersion": "metallb.io/v1beta2",
        "kind": "BGPPeer",
        "metadata": {"name": "gr"},
        "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "198.18.0.1",
                 "enableGracefulRestart": True},
    }  # fmt: skip
    assert _create(control_plane, namespace, peer).ok
    resp = control_plane.api(
        "PATCH",
        resource_path("BGPPeer", namespace, "gr"),
        {"spec": {"enableGracefulRestart": False}},
        content_type="application/merge-patch+json",
    )
    assert resp.status == 422
    assert "spec.enableGracefulRestart" in resp.message
    # Other fields stay editable.
    resp = control_plane.api(
        "PATCH",
        resource_path("BGPPeer", namespace, "gr"),
        {"spec": {"holdTime": "30s"}},
        content_type="application/merge-patch+json",
    )
    assert resp.ok, resp.message


def test_pool_status_subresource_holds_counters(
    control_plane: ControlPlane, namespace: str
) -> None:
    pool = {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["198.51.100.0/28"]},
    }
    assert _create(control_plane, namespace, pool).ok
    counters = {"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 15, "availableIPv6": 0}
    path = resource_path("IPAddressPool", namespace, "p")
    resp = control_plane.api(
        "PATCH",
        path + "/status",
        {"status": counters},
        content_type="application/merge-patch+json",
    )
    assert resp.ok, resp.message
    # Status writes through the main resource are ignored (status subresource semantics).
    control_plane.api(
        "PATCH",
        path,
        {"status": {"assignedIPv4": 99}},
        content_type="application/merge-patch+json",
    )
    assert control_plane.api("GET", path).body["status"] == counters


def test_printer_columns(control_plane: ControlPlane, tools: Tools, namespace: str) -> None:
    pool = yaml.safe_load((EXAMPLES / "ipaddresspools.yaml").read_text().split("---")[0])
    assert _create(control_plane, namespace, pool).ok
    out = control_plane.run_tool(
        [str(tools.kubectl), "get", "ipaddresspools", "-n", namespace]
    ).stdout
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "AUTO", "ASSIGN", "AVOID", "BUGGY"]
    assert "198.51.100.0/25" in out
