"""Migration from the real MetalLB v0.16.2 to exalb on the lab cluster, 200 Services.

MetalLB's controller and native-mode BGP speaker are built from the Go module proxy
(lab/metallb/build.sh), put in an image (``scripts/image.sh metallb``) and installed
with MetalLB's own Helm chart from the module (webhook disabled: the apiserver of the lab
cannot reach pods; memberlist off). MetalLB assigns IPs to 200 Services across five pools,
with shared and requested IPs (tests/e2e/migration_plan.py); r1 learns every BGP IP from the
three nodes. Then exalb takes over, and the test checks that every Service keeps exactly its
IPs and its pool annotation, that exalb wrote nothing to any Service (the apiserver's audit
log, lab.cluster.audit), and that the routes at r1 come back; r1's FIB is recorded
throughout (lab.fibwatch), which gives the announcement gap.

* ``test_migrate_crds_speakers_overlapped``: exalb is installed next to MetalLB's speakers
  (guardrails.allowMetalLB) and reads the same metallb.io objects; MetalLB's speakers are
  then removed one node at a time, so r1 always keeps the other nodes' paths.
* ``test_migrate_legacy_configmap``: the simple path, and the legacy config: MetalLB is
  uninstalled (its CRDs and objects go with it), exalb is installed reading the legacy
  ConfigMap that describes the same pools.

The README's "Migrating from MetalLB" is these steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.cluster.audit import Write, summary
from lab.cluster.cluster import Cluster
from lab.cluster.workloads import backend_deployment, dump
from lab.demo_show import http_get
from lab.fib import Fib
from lab.fibwatch import FibRecorder, Record, longest, outages, span
from lab.runner import Lab
from lab.wait import wait_for
from tests.e2e import migration_plan as plan
from tests.e2e.kube import NODE_IP, doctor, findings, helm_values, image_values

pytestmark = [pytest.mark.lab, pytest.mark.k8s]

NS, APP = plan.NS, plan.APP
METALLB = "go.universe.tf/metallb@v0.16.2"
#: Nodes labelled with this lose MetalLB's speaker (a node affinity added for the handover).
HANDED_OVER = "exalb.io/metallb-speaker-removed"
EXALB_SA = f"system:serviceaccount:{NS}:exalb-"
METALLB_CRDS = ("bfdprofiles", "bgpadvertisements", "bgppeers", "communities",
                "configurationstates", "ipaddresspools", "l2advertisements",
                "servicebgpstatuses", "servicel2statuses")  # fmt: skip


def metallb_chart() -> Path:
    """MetalLB's Helm chart, as the Go module (already in the module cache after the build)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out = subprocess.run([go, "mod", "download", "-json", METALLB], capture_output=True,
                         text=True, check=True, timeout=300,
                         env={**os.environ, "GOFLAGS": "-mod=mod"})  # fmt: skip
    return Path(json.loads(out.stdout)["Dir"]) / "charts" / "metallb"


def metallb_values(cluster: Cluster, *, crds: bool = True) -> dict[str, Any]:
    image = cluster.images["metallb"]
    img = {"repository": image.repository, "tag": image.tag, "pullPolicy": "Never"}
    return {
        "controller": {"command": "/controller", "webhookMode": "disabled", "image": img},
        "speaker": {"command": "/speaker", "memberlist": {"enabled": False},
                    "frr": {"enabled": False}, "image": img},
        "frrk8s": {"enabled": False},  # native BGP mode
        # the lab's apiserver cannot call webhooks in pods; MetalLB's own is off anyway
        "crds": {"enabled": crds, "validationFailurePolicy": "Ignore"},
    }  # fmt: skip


def helm_metallb(cluster: Cluster, verb: str, vals: dict[str, Any], *extra: str) -> None:
    path = cluster.dir / f"metallb-{verb}.yaml"
    path.write_text(yaml.safe_dump(vals))
    cluster.helm(verb, "metallb", str(metallb_chart()), "-n", NS, "--create-namespace",
                 "-f", str(path), *extra, timeout=600)  # fmt: skip


# -- the cluster's state ---------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    ips: tuple[str, ...]
    pool: str | None


def allocations(cluster: Cluster) -> dict[str, Allocation]:
    items = cluster.get_json("svc", "-n", APP)["items"]
    out = {}
    for s in items:
        ingress = ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        pool = (s["metadata"].get("annotations") or {}).get("metallb.io/ip-allocated-from-pool")
        out[s["metadata"]["name"]] = Allocation(tuple(i["ip"] for i in ingress), pool)
    return out


def bgp_prefixes(alloc: dict[str, Allocation]) -> set[str]:
    return {f"{ip}/32" for a in alloc.values() if a.pool != "l2" for ip in a.ips}


def routes_via(lab: Lab, prefixes: set[str], nodes: set[str]) -> bool:
    """Every prefix in r1's FIB with exactly these nodes as next hops."""
    fib = Fib(lab.ns("r1"))
    try:
        now = fib.gateways()
    finally:
        fib.close()
    want = frozenset(NODE_IP[n] for n in nodes)
    return all(now.get(p) == want for p in prefixes)


def session_since(lab: Lab, peer: str) -> float:
    """When r1's session with ``peer`` came up (epoch seconds), or 0 when it is down."""
    n = lab.vtysh_json("r1", f"show bgp neighbors {peer} json").get(peer) or {}
    return (
        float(n.get("bgpTimerUpEstablishedEpoch") or 0) if n.get("bgpState") == "Established" else 0
    )


def metallb_speaker_nodes(cluster: Cluster) -> set[str]:
    pods = cluster.get_json("pods", "-n", NS, "-l", "app.kubernetes.io/component=speaker,"
                            "app.kubernetes.io/name=metallb")["items"]  # fmt: skip
    return {p["spec"]["nodeName"] for p in pods}


def exalb_writes(cluster: Cluster, mark: int) -> list[Write]:
    return cluster.audit.writes_since(mark, user_prefix=EXALB_SA)


@dataclass
class Gaps:
    """What r1's FIB went through, from the recorder."""

    prefix: float  # the longest time any BGP prefix had no path at all
    per_node: dict[str, float] = field(default_factory=dict)  # longest loss of its path
    window: tuple[float, float] | None = None  # first loss to last return, any prefix

    def line(self) -> str:
        nodes = ", ".join(f"{n} {g:.2f} s" for n, g in sorted(self.per_node.items()))
        return (f"prefix without any path: {self.prefix:.2f} s; a node's path missing: "
                f"{nodes}")  # fmt: skip


def gaps(record: Record, prefixes: set[str]) -> Gaps:
    return Gaps(
        prefix=longest(outages(record, prefixes)),
        per_node={n: longest(outages(record, prefixes, ip)) for n, ip in NODE_IP.items()},
        window=span(outages(record, prefixes)),
    )


def timeline(record: Record, prefixes: set[str], marks: dict[str, tuple[float, float]]) -> str:
    """Each node's path outages (the span over all prefixes) relative to the record's start,
    next to when its handover began and ended."""
    t0 = record.started
    lines = []
    for node, ip in NODE_IP.items():
        found = outages(record, prefixes, ip)
        starts = sorted({round(s - t0, 2) for spans in found.values() for s, _ in spans})
        ends = sorted({round(e - t0, 2) for spans in found.values() for _, e in spans})
        a, b = marks.get(node, (t0, t0))
        lines.append(f"   {node}: handover {a - t0:.2f}..{b - t0:.2f} s; path lost at "
                     f"{starts[:3]}{'...' if len(starts) > 3 else ''}, back at "
                     f"{ends[-3:]} ({sum(len(v) for v in found.values())} outages)")  # fmt: skip
    return "\n".join(lines)


# -- set-up and tear-down --------------------------------------------------------------------


def remove_metallb_crds(cluster: Cluster) -> None:
    """A cluster as MetalLB users have it: no metallb.io CRDs but MetalLB's own (earlier
    modules left exalb's, which MetalLB's chart would refuse to take over)."""
    names = [f"{c}.metallb.io" for c in METALLB_CRDS]
    cluster.kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=true", timeout=180)


def start_metallb(lab: Lab, cluster: Cluster) -> dict[str, Allocation]:
    """MetalLB installed and configured, the backend and 200 Services created; returns what
    MetalLB assigned once r1 has every BGP IP from the three nodes."""
    assert cluster.audit.path.exists(), "the lab apiserver keeps no audit log"
    mark = cluster.audit.mark()
    remove_metallb_crds(cluster)
    helm_metallb(cluster, "install", metallb_values(cluster), "--wait", "--timeout", "300s")
    cluster.apply(dump(*plan.config_objects()))
    backend = backend_deployment(plan.BACKEND, APP, cluster.images["backend"].ref, 3)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}}
    cluster.apply(dump(namespace, backend))
    svcs = plan.services()
    requested = [s for s in svcs if s["metadata"]["name"].startswith(("req-", "lbip-"))]
    cluster.kubectl("create", "-f", "-", input=dump(*requested))
    wait_for("requested IPs assigned",
             lambda: sum(1 for a in allocations(cluster).values() if a.ips) == len(requested),
             120, 0.5)  # fmt: skip
    cluster.kubectl("create", "-f", "-", input=dump(*svcs[len(requested) :]), timeout=300)

    def all_assigned() -> dict[str, Allocation] | None:
        found = allocations(cluster)
        return found if len(found) == len(svcs) and all(a.ips for a in found.values()) else None

    alloc = wait_for("MetalLB: 200 Services with an IP", all_assigned, 300, 1.0)
    prefixes = bgp_prefixes(alloc)
    wait_for(f"r1: {len(prefixes)} BGP IPs via n1, n2, n3",
             lambda: routes_via(lab, prefixes, set(NODE_IP)), 300, 0.5)  # fmt: skip
    # the audit log sees writes: MetalLB's own, one status per Service at least
    theirs = cluster.audit.writes_since(mark, user_prefix=f"system:serviceaccount:{NS}:metallb-")
    statuses = [w for w in theirs if w.resource == "services/status"]
    assert len({w.name for w in statuses}) == len(svcs), summary(theirs)
    print(f"\n   MetalLB's writes while assigning: {len(theirs)} "
          f"{json.dumps(summary(theirs), sort_keys=True)}")  # fmt: skip
    return alloc


def check_metallbs_work(alloc: dict[str, Allocation]) -> None:
    """The premise: MetalLB shared, honoured requests, used every pool."""
    for i in range(20):
        a, b = alloc[f"share-{i:02d}-http"], alloc[f"share-{i:02d}-https"]
        assert a.ips == b.ips and a.pool == "bgp-c", (a, b)
    for i in range(16):
        assert alloc[f"req-{i:02d}"].ips == (f"203.0.113.{192 + i}",)
    for i in range(8):
        assert alloc[f"lbip-{i}"].ips == (f"203.0.113.{50 + i}",)
    assert {a.pool for a in alloc.values()} == set(plan.POOLS)


@pytest.fixture
def migration(cluster_lab: Lab) -> Iterator[Lab]:
    """MetalLB's image on the nodes; everything the test made is removed afterwards."""
    lab = cluster_lab
    cluster = lab.cluster
    assert cluster is not None
    if "metallb" not in cluster.images:
        cluster.add_images("metallb")
    try:
        yield lab
    finally:
        clean_up(cluster)


def clean_up(cluster: Cluster) -> None:
    cluster.helm("uninstall", "exalb", "-n", NS, "--wait", check=False, timeout=300)
    cluster.helm("uninstall", "metallb", "-n", NS, "--wait", check=False, timeout=300)
    cluster.kubectl("delete", "namespace", APP, "--ignore-not-found", check=False)
    cluster.kubectl("wait", "--for=delete", f"namespace/{APP}", "--timeout=600s", check=False,
                    timeout=660)  # fmt: skip
    cluster.kubectl("label", "node", "--all", f"{HANDED_OVER}-", check=False)
    for kind in ("ipaddresspools", "bgppeers", "bgpadvertisements", "l2advertisements"):
        cluster.kubectl("delete", kind, "-n", NS, "--all", check=False)
    cluster.kubectl("delete", "configmap", "-n", NS, "config", "--ignore-not-found", check=False)


def verify_after(lab: Lab, cluster: Cluster, before: dict[str, Allocation]) -> None:
    after = allocations(cluster)
    changed = {n: (before[n], after.get(n)) for n in before if after.get(n) != before[n]}
    assert not changed, f"{len(changed)} of {len(before)} Services changed: {changed}"
    prefixes = bgp_prefixes(after)
    wait_for("r1: every BGP IP via n1, n2, n3 again",
             lambda: routes_via(lab, prefixes, set(NODE_IP)), 120, 0.5)  # fmt: skip
    for name in ("l2-0", "l2-1", "l2-2", "l2-3"):
        ip = after[name].ips[0]
        wait_for(f"{name} ({ip}) answers over L2", lambda ip=ip: http_get(lab, ip), 60, 0.5)


def report(title: str, before: dict[str, Allocation], writes: list[Write], g: Gaps) -> None:
    ips = {ip for a in before.values() for ip in a.ips}
    print(f"\n== {title}: {len(before)} Services, {len(ips)} IPs, 0 changed")
    print(f"   exalb's writes: {len(writes)} {json.dumps(summary(writes), sort_keys=True)}")
    print(f"   r1: {g.line()}")


# -- the tests -------------------------------------------------------------------------------


def test_migrate_crds_speakers_overlapped(migration: Lab) -> None:
    lab = migration
    cluster = lab.cluster
    assert cluster is not None
    before = start_metallb(lab, cluster)
    check_metallbs_work(before)
    prefixes = bgp_prefixes(before)

    # the chart refuses to install next to a running MetalLB, naming it
    refused = cluster.helm("install", "exalb", "charts/exalb", "-n", NS, check=False)
    assert refused.returncode != 0
    assert "MetalLB runs in this cluster (" in refused.stderr
    assert "DaemonSet metallb-system/metallb-speaker" in refused.stderr

    recorder = FibRecorder(lab.ns("r1"))
    try:
        # 1. MetalLB gives up its CRDs (kept), its controller, and lets its speakers be
        #    removed node by node (OnDelete: no pod is restarted by this upgrade)
        crds = [f"crd/{c}.metallb.io" for c in METALLB_CRDS]
        cluster.kubectl("annotate", *crds, "helm.sh/resource-policy=keep", "--overwrite")
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": HANDED_OVER, "operator": "DoesNotExist"}]}]}}}  # fmt: skip
        speakers = metallb_speaker_nodes(cluster)
        helm_metallb(cluster, "upgrade", metallb_values(cluster), "--reuse-values",
                     "--set", "crds.enabled=false", "--set", "controller.enabled=false",
                     "--set", "speaker.updateStrategy.type=OnDelete",
                     "--set-json", f"speaker.affinity={json.dumps(affinity)}")  # fmt: skip
        assert metallb_speaker_nodes(cluster) == speakers
        # 2. exalb, next to MetalLB's speakers, reading the same objects (helm 4 applies
        #    exalb's CRDs over MetalLB's: same kinds, and no conversion webhook to call)
        mark = cluster.audit.mark()
        vals = {"image": image_values(cluster), "guardrails": {"allowMetalLB": True}}
        helm_values(cluster, "install", "exalb", NS, vals)
        bgppeers = cluster.get_json("crd", "bgppeers.metallb.io")
        assert bgppeers["spec"]["conversion"]["strategy"] == "None"
        code, rep = doctor(cluster, NS)
        (other,) = findings(rep, "other-load-balancers")
        assert "DaemonSet metallb-system/metallb-speaker" in "\n".join(other["evidence"])
        assert code == 1
        # 3. MetalLB's speakers go, one node at a time; ExaBGP's session takes over
        handover = {}
        for node in ("n1", "n2", "n3"):
            t0, wall = time.monotonic(), time.time()
            cluster.kubectl("label", "node", node, f"{HANDED_OVER}=true")
            wait_for(f"MetalLB's speaker gone from {node}",
                     lambda n=node: n not in metallb_speaker_nodes(cluster), 90, 0.2)  # fmt: skip
            # the pod object goes before its process: wait for the new session itself
            since = lambda n=node, w=wall: session_since(lab, NODE_IP[n]) >= int(w)  # noqa: E731
            wait_for(f"r1: a new session from {node} (ExaBGP's)", since, 180, 0.2)
            wait_for(f"r1: every BGP IP via {node} again (exalb)",
                     lambda: routes_via(lab, prefixes, set(NODE_IP)), 180, 0.05)  # fmt: skip
            handover[node] = (t0, time.monotonic())
        # 4. MetalLB uninstalled; its CRDs and the config stay
        cluster.helm("uninstall", "metallb", "-n", NS, "--wait", timeout=300)
        time.sleep(2)  # r1 keeps every path after MetalLB is gone
    finally:
        record = recorder.stop()
    assert cluster.get_json("ipaddresspools", "-n", NS)["items"], "the config survived"
    verify_after(lab, cluster, before)
    writes = exalb_writes(cluster, mark)
    service_writes = [w for w in writes if w.resource.startswith("services")]
    assert service_writes == [], summary(service_writes)
    g = gaps(record, prefixes)
    assert g.prefix == 0.0, "a prefix lost every path although one node changed at a time"
    code, rep = doctor(cluster, NS)
    assert code == 0 and rep["findings"] == [], rep["findings"]
    report("CRDs, speakers overlapped, node by node", before, writes, g)
    print("   node handover (label -> every path back at r1): "
          + ", ".join(f"{n} {b - a:.1f} s" for n, (a, b) in handover.items()))  # fmt: skip
    print(timeline(record, prefixes, handover))


def test_migrate_legacy_configmap(migration: Lab) -> None:
    lab = migration
    cluster = lab.cluster
    assert cluster is not None
    before = start_metallb(lab, cluster)
    check_metallbs_work(before)
    prefixes = bgp_prefixes(before)
    cluster.apply(dump(plan.legacy_config_map()))  # MetalLB v0.16 ignores it

    recorder = FibRecorder(lab.ns("r1"))
    try:
        # the simple path: MetalLB goes entirely (its CRDs and objects with it) ...
        mark = cluster.audit.mark()
        cluster.helm("uninstall", "metallb", "-n", NS, "--wait", timeout=300)
        assert cluster.kubectl("get", "crd", "ipaddresspools.metallb.io",
                               check=False).returncode != 0  # fmt: skip
        # ... and exalb comes, reading the legacy ConfigMap (and installing its CRDs)
        helm_values(cluster, "install", "exalb", NS, {"image": image_values(cluster)})
        wait_for("r1: every BGP IP via n1, n2, n3 (exalb)",
                 lambda: routes_via(lab, prefixes, set(NODE_IP)), 180, 0.05)  # fmt: skip
    finally:
        record = recorder.stop()
    verify_after(lab, cluster, before)
    writes = exalb_writes(cluster, mark)
    service_writes = [w for w in writes if w.resource.startswith("services")]
    assert service_writes == [], summary(service_writes)
    code, rep = doctor(cluster, NS)
    assert code == 0 and rep["findings"] == [], rep["findings"]
    report("legacy ConfigMap, MetalLB uninstalled first", before, writes, gaps(record, prefixes))
