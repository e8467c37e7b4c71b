"""New ``Local`` paths and kube-proxy: client traffic while a Local Service scales out to new
nodes, with the speaker waiting for kube-proxy (``speaker.proxyHoldSeconds: 10``, the
default) and without (``0``: announce as soon as the EndpointSlice has a ready pod, MetalLB's
behaviour), on the real lab cluster (``containerlab/k8s-bgp``; root).

Per round: one backend pod on n1 behind a Local Service; the client ``c`` opens 20 new
connections/s; one pod is added on n2 and one on n3; once r1 has the three paths, 2 s more of
traffic; then the two pods go again (not measured). Prints, per setting, the new connections
failed / total over the rounds, when the failures started relative to the path's arrival
at r1, and how long the speakers held the new paths (their ``exalb_speaker_proxy_hold_seconds``).

Usage: ``sudo .venv/bin/python bench/local_scale.py [--rounds 5] [--run NAME]`` (``--run``:
a cluster already up with ``scripts/lab up k8s-bgp --run NAME``, left up).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab import rollout  # noqa: E402
from lab.cluster.cluster import Cluster  # noqa: E402
from lab.cluster.workloads import backend_deployment, dump, load_balancer  # noqa: E402
from lab.nsnet import forbid_host_dials  # noqa: E402
from lab.promtext import metric_sum  # noqa: E402
from lab.rollout import NODE_IP, measured, wait_paths  # noqa: E402
from lab.runner import Lab, unavailable_reason  # noqa: E402
from lab.wait import wait_for  # noqa: E402

APP = "bench"
POD_LABELS = {"svc": "ls"}
NEW_NODES = ("n2", "n3")


def deploy(cluster: Cluster) -> str:
    """A Deployment per node (n1 with one pod, n2 and n3 with none) behind one Local
    Service; its IP."""
    image = cluster.images["backend"].ref
    cluster.apply(dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}},
        *(backend_deployment(f"ls-{n}", APP, image, 1 if n == "n1" else 0,
                             {"kubernetes.io/hostname": n}, pod_labels=POD_LABELS)
          for n in NODE_IP),
        load_balancer("ls", APP, local=True, selector_labels=POD_LABELS),
    ))  # fmt: skip
    return str(wait_for("ls: IP", lambda: rollout.ingress(cluster, APP, "ls"), 120, 0.2))


def scale(cluster: Cluster, replicas: int) -> None:
    for node in NEW_NODES:
        cluster.kubectl("scale", "-n", APP, f"deploy/ls-{node}", f"--replicas={replicas}")


def gone(cluster: Cluster) -> bool:
    return all(not cluster.get_json("pods", "-n", APP, "-l", f"app=ls-{n}")["items"]
               for n in NEW_NODES)  # fmt: skip


def hold_seconds(lab: Lab) -> tuple[float, float]:
    """The speakers' ``exalb_speaker_proxy_hold_seconds`` sum and count, over the nodes."""
    text = rollout.speakers_metrics(lab)
    name = "exalb_speaker_proxy_hold_seconds"
    return metric_sum(text, f"{name}_sum"), metric_sum(text, f"{name}_count")


def rounds(lab: Lab, cluster: Cluster, ip: str, hold: int, n: int) -> list[str]:
    """``n`` scale-outs with ``speaker.proxyHoldSeconds: hold``; the report's lines."""
    values: dict[str, Any] = rollout.release_values(cluster)
    values["speaker"]["proxyHoldSeconds"] = hold
    rollout.helm(cluster, "upgrade", values)
    wait_paths(lab, ip, {"n1"}, timeout=120)
    held_before = hold_seconds(lab)
    lost = rehashed = total = 0
    late: list[float] = []  # lost connections: seconds after the third path reached r1
    for i in range(n):
        with measured(lab, ip, f"round {i + 1}", long_lived=0) as outcome:
            outcome.mark("scale out")
            scale(cluster, 1)
            wait_paths(lab, ip, rollout.ALL_NODES, timeout=120)
        assert outcome.new is not None
        lost += len(outcome.lost)
        rehashed += len(outcome.rehashed)
        total += outcome.new.total
        arrived = next((t for t, nodes in outcome.fib if len(nodes) == 3), outcome.started)
        late += [a.started - arrived for a in outcome.lost]
        scale(cluster, 0)
        wait_paths(lab, ip, {"n1"}, timeout=120)
        wait_for("the pods on n2 and n3 gone", lambda: gone(cluster), 120, 0.5)
    held = [a - b for a, b in zip(hold_seconds(lab), held_before, strict=True)]
    lines = [f"proxyHoldSeconds {hold}: new connections lost {lost}/{total} over {n} "
             f"scale-outs to n2 and n3 ({rehashed} more re-hashed in flight by an ECMP "
             "change)"]  # fmt: skip
    if late:
        lines.append("  lost ones started " + ", ".join(f"{x:+.2f}" for x in sorted(late))
                     + " s from the third path's arrival at r1")  # fmt: skip
    if held[1]:
        lines.append(f"  new paths held {held[0] / held[1]:.2f} s on average ({int(held[1])} "
                     "paths, the speakers' histogram)")  # fmt: skip
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--run", help="use this running k8s-bgp lab (scripts/lab up) instead")
    args = ap.parse_args()
    forbid_host_dials()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    report: list[str] = []
    with rollout.k8s_bgp_lab(args.run) as (lab, cluster):
        rollout.helm(cluster, "install", rollout.release_values(cluster))
        ip = deploy(cluster)
        for hold in (10, 0):
            lines = rounds(lab, cluster, ip, hold, args.rounds)
            print("\n".join(lines), flush=True)
            report += lines
        cluster.kubectl("delete", "namespace", APP, "--wait=true", timeout=180)
        cluster.helm("uninstall", "exalb", "-n", rollout.NS, "--wait", check=False)
    print("\n== summary\n" + "\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
