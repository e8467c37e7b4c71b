"""Controller benchmark against a real kube-apiserver + etcd and the real controller process.

For N = 100, 1,000 and 5,000 Services: the time from creating them (8 client threads) until
every one has an IP in status, and the controller's peak RSS; then a cold start of a fresh
controller over the 5,000 assigned Services (restore, then a full reconcile that writes
nothing). Prints a table.

    python bench/controller_scale.py [N ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exalb.k8s.resources import SERVICES
from lab.binaries import find_controlplane_binaries
from lab.controlplane import ControlPlane
from lab.nsnet import forbid_host_dials
from tests.k8s.controller_env import Env, install_crds, wait_for


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def assigned(env: Env) -> int:
    return sum(bool(v) for v in env.all_ips().values())


def run_size(cp: ControlPlane, logdir: Path, n: int, cold_start: bool) -> dict[str, float]:
    env = Env(cp, logdir)
    try:
        env.pool("bench", "198.19.0.0/16")
        ctl = env.start_controller()
        names = [f"s{i:05d}" for i in range(n)]
        start = time.perf_counter()
        env.services(names)
        created = time.perf_counter() - start
        wait_for(f"{n} IPs", lambda: assigned(env) == n, timeout=max(120, n / 10), interval=0.25)
        total = time.perf_counter() - start
        row = {"n": n, "create": created, "all_ips": total, "rss": rss_peak_mib(ctl.proc.pid)}
        ctl.stop()
        if cold_start:
            before = {
                o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in env.kube.list(SERVICES, env.app_ns).items
            }
            start = time.perf_counter()
            cold = env.start_controller(ready=False)
            wait_for(
                "initial reconcile",
                lambda: any(e.get("event") == "initial reconcile complete" for e in cold.logs()),
                timeout=300,
                interval=0.1,
            )
            row["cold"] = time.perf_counter() - start
            restored = next(e for e in cold.logs() if e.get("event") == "restored assignments")
            row["restored"] = float(restored["services"])
            row["cold_rss"] = rss_peak_mib(cold.proc.pid)
            after = {
                o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in env.kube.list(SERVICES, env.app_ns).items
            }
            row["writes_on_restart"] = float(sum(before[k] != after[k] for k in before))
            cold.stop()
        return row
    finally:
        env.close()


def main(argv: list[str]) -> int:
    forbid_host_dials()  # the apiserver and the controller are reached on loopback only
    sizes = [int(a) for a in argv] or [100, 1_000, 5_000]
    with (
        tempfile.TemporaryDirectory() as tmp,
        ControlPlane(
            binaries=find_controlplane_binaries(),
            extra_apiserver_args=(
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
            ),
        ) as cp,
    ):
        install_crds(cp)
        rows = [run_size(cp, Path(tmp), n, n == max(sizes)) for n in sizes]
    print(
        f"{'N':>6} {'create (client)':>16} {'until all have an IP':>21} "
        f"{'per Service':>12} {'controller peak RSS':>20}"
    )
    for r in rows:
        print(
            f"{int(r['n']):>6,} {r['create']:>15.2f}s {r['all_ips']:>20.2f}s "
            f"{r['all_ips'] / r['n'] * 1000:>10.2f}ms {r['rss']:>17.1f} MiB"
        )
    last = rows[-1]
    if "cold" in last:
        print(
            f"cold start over {int(last['restored']):,} assigned Services: "
            f"{last['cold']:.2f}s to a complete reconcile; peak RSS {last['cold_rss']:.1f} MiB;"
            f" Services written during the restart: {int(last['writes_on_restart'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
