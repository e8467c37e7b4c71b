"""exalb side by side with the real MetalLB (controller and native BGP speaker).

MetalLB's ``controller`` and ``speaker`` are built from the Go module proxy by
``lab/metallb/build.sh`` (cached under ~/.cache/exalb/metallb/). One kube-apiserver + etcd
serves both; one controller (or one set of speakers) runs at a time, the order alternating
per repetition; the table shows medians and exalb/MetalLB.

Controllers (``vs_metallb_controllers``), each run in a namespace of its own behind a
loopback relay, measured by a Service watch and the apiserver's audit log:

* cold start over N Services (default 1,000, and ``--big`` 5,000 once): until all have an
  IP; write requests (audit log: update/patch on services and services/status) and
  resourceVersion bumps (watch MODIFIED events) per Service; CPU of the controller process
  until all are assigned;
* cold start over ``--small`` (30) Services: to the first IP and to all;
* warm burst of ``--burst`` (300) Services, 8 client threads: creation → IP p50, first
  create → last IP;
* restart over the N assigned Services: write requests / resourceVersion bumps / IP changes;
* pool shrunk below 100 of the burst's IPs / that pool deleted (another exists) / all pools
  deleted: IPs of the burst's Services moved or lost.

Speakers (``vs_metallb_speakers``, the ``bgp-ecmp`` lab; root): ``--speaker-services``
Services one after another, status write → /32 in r1's FIB (first path p50/p95, all 3 paths
p50), sessions dropped at r1, resident memory per node (all of an implementation's
processes on the node), and the bare-ExaBGP floor of the same lab run (the bench writes the
``announce`` line into ExaBGP's API process itself).

``--profile DIR`` adds two extra warm bursts of exalb's controller under py-spy (on-CPU, and
with idle frames) and prints where the samples fall.

Usage (repo root, root for the lab):
``sudo .venv/bin/python bench/vs_metallb.py [--reps 3] [--services 1000] [--big 5000] ...``
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vs_metallb_controllers import (  # noqa: E402
    EXALB,
    METALLB,
    Ctx,
    Impl,
    burst,
    cold_start,
    prepare_config_namespace,
    summarize_profile,
)
from vs_metallb_kube import (  # noqa: E402
    Api,
    AuditLog,
    CtlNamespace,
    audit_args,
    build_metallb,
    install_metallb_crds,
    metallb_version,
)
from vs_metallb_speakers import (  # noqa: E402
    per_process,
    run_exalb,
    run_floor,
    run_metallb,
    summary,
)

from lab.controlplane import ControlPlane, find_controlplane_binaries  # noqa: E402
from lab.nsnet import forbid_host_dials  # noqa: E402
from lab.runner import Lab, unavailable_reason  # noqa: E402
from lab.topology import topology_path  # noqa: E402
from tests.lab.speaker_lab import install_crds  # noqa: E402

Row = tuple[str, str, str, str]
Runs = dict[str, list[dict[str, float]]]


def order(rep: int) -> list[Impl]:
    return [METALLB, EXALB] if rep % 2 == 0 else [EXALB, METALLB]


def med(runs: list[dict[str, float]], key: str) -> float:
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else float("nan")


def ratio(ex: float, ml: float) -> str:
    return f"{ex / ml:.2f}" if ml else "—"


def num_row(label: str, runs: Runs, key: str, fmt: Callable[[float], str]) -> Row:
    ml, ex = med(runs["MetalLB"], key), med(runs["exalb"], key)
    return (label, fmt(ml), fmt(ex), ratio(ex, ml))


def secs(v: float) -> str:
    return f"{v:.2f} s"


def msecs(v: float) -> str:
    return f"{v * 1000:,.0f} ms"


def plain(v: float) -> str:
    return f"{v:.2f}"


def triple(runs: list[dict[str, float]], keys: list[str]) -> str:
    return " / ".join(f"{med(runs, k):.0f}" for k in keys)


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- controllers


def profile_burst(ctx: Ctx, size: int, prof_dir: Path) -> None:
    """exalb's warm burst under py-spy, GIL-held then wall time, each summarized."""
    for idle in (False, True):
        out = prof_dir / f"burst{'-idle' if idle else ''}.txt"
        progress(f"exalb: warm burst {size} under py-spy -> {out}")
        r = burst(ctx, EXALB, size, pool_rows=False, profile=out, idle=idle)
        progress(f"  (profiled run, slower) {fmt_run(r)}")
        print(
            f"\nprofile of exalb's controller, warm burst, "
            f"{'wall time, all threads' if idle else 'GIL held (Python CPU)'}:"
        )
        print("\n".join(summarize_profile(out)), flush=True)


def controllers(  # size: the runs, then their table row by row
    ctx: Ctx, args: argparse.Namespace, prof_dir: Path | None
) -> list[Row]:
    cold: Runs = {"MetalLB": [], "exalb": []}
    small: Runs = {"MetalLB": [], "exalb": []}
    bursts: Runs = {"MetalLB": [], "exalb": []}
    big: Runs = {"MetalLB": [], "exalb": []}
    for rep in range(args.reps):
        for impl in order(rep):
            progress(f"rep {rep + 1}/{args.reps} {impl.name}: cold start {args.services:,}")
            cold[impl.name].append(cold_start(ctx, impl, args.services, restart=True))
            progress(f"  {fmt_run(cold[impl.name][-1])}")
            progress(f"rep {rep + 1}/{args.reps} {impl.name}: cold start {args.small}")
            small[impl.name].append(cold_start(ctx, impl, args.small, restart=False))
            progress(f"  {fmt_run(small[impl.name][-1])}")
            progress(f"rep {rep + 1}/{args.reps} {impl.name}: warm burst {args.burst} + pools")
            bursts[impl.name].append(burst(ctx, impl, args.burst, pool_rows=True))
            progress(f"  {fmt_run(bursts[impl.name][-1])}")
    if args.big:
        for impl in order(args.reps):
            progress(f"{impl.name}: cold start {args.big:,} (once)")
            big[impl.name].append(cold_start(ctx, impl, args.big, restart=False))
            progress(f"  {fmt_run(big[impl.name][-1])}")
    if prof_dir is not None:
        profile_burst(ctx, args.burst, prof_dir)
    if not args.reps:
        return []
    n, s, b = args.services, args.small, args.burst
    rows: list[Row] = [
        num_row(f"cold start, {n:,} Services: all have an IP", cold, "all", secs),
    ]
    if args.big:
        rows.append(
            num_row(f"cold start, {args.big:,} Services: all have an IP (1 run)", big, "all", secs)
        )
    rows += [
        num_row(f"Service write requests per Service (audit log), cold {n:,}", cold, "writes",
                plain),
        num_row(f"Service resourceVersion bumps per Service, cold {n:,}", cold, "rv_bumps", plain),
        num_row(f"controller CPU until all assigned ({n:,})", cold, "cpu", secs),
        num_row(f"controller peak RSS, cold {n:,}", cold, "rss", lambda v: f"{v:.0f} MiB"),
        num_row(f"cold start, {s} Services: first IP", small, "first", secs),
        num_row(f"cold start, {s} Services: all have an IP", small, "all", secs),
        num_row(f"warm burst of {b}: creation → IP p50", bursts, "p50", msecs),
        num_row(f"warm burst of {b}: first create → last IP", bursts, "last", secs),
        num_row(f"warm burst of {b}: controller CPU", bursts, "cpu", secs),
    ]  # fmt: skip
    rows.append(("  write requests per Service by kind", kinds(cold["MetalLB"], "w:"),
                 kinds(cold["exalb"], "w:"), ""))  # fmt: skip
    keys = ["restart_writes", "restart_rv_bumps", "restart_ip_changes"]
    rows.append(
        (
            f"restart over {n:,} assigned: write requests / RV bumps / IP changes",
            triple(cold["MetalLB"], keys),
            triple(cold["exalb"], keys),
            "—",
        )
    )
    rows.append(("  restart write requests by kind", kinds(cold["MetalLB"], "rw:"),
                 kinds(cold["exalb"], "rw:"), ""))  # fmt: skip
    for what in ("moved", "lost"):
        keys = [f"shrunk_{what}", f"deleted_{what}", f"alldeleted_{what}"]
        rows.append(
            (
                f"pool shrunk / deleted / all deleted: burst IPs {what}",
                triple(bursts["MetalLB"], keys),
                triple(bursts["exalb"], keys),
                "—",
            )
        )
    phases = sorted(
        {k for r in small["exalb"] for k in r if k.startswith("phase:")},
        key=lambda k: med(small["exalb"], k),
    )
    for k in phases:
        rows.append(
            (
                f"  exalb start-up ({s} Services), process start → {k[6:]}",
                "",
                secs(med(small["exalb"], k)),
                "",
            )
        )
    return rows


def kinds(runs: list[dict[str, float]], prefix: str) -> str:
    """Median per kind of write (``verb resource``), e.g. ``patch services/status 1.00``."""
    keys = sorted({k for r in runs for k in r if k.startswith(prefix)})
    return ", ".join(f"{k[len(prefix) :]} {med(runs, k):.2f}" for k in keys) or "none"


def fmt_run(r: dict[str, float]) -> str:
    return ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in r.items()
        if not k.startswith("phase:")
    )


# --------------------------------------------------------------------------- speakers


def speakers(cp: ControlPlane, args: argparse.Namespace, metallb_bin: Path) -> list[Row]:
    runs: dict[str, list[Any]] = {"MetalLB": [], "exalb": [], "floor": []}
    n, routes = args.speaker_services, args.speaker_routes
    with Lab.up(topology_path("bgp-ecmp")) as lab:
        for rep in range(args.speaker_reps):
            for impl in order(rep):
                progress(f"speakers rep {rep + 1}/{args.speaker_reps}: {impl.name}, {n} Services"
                         f" then {routes:,} routes")  # fmt: skip
                if impl is EXALB:
                    runs["exalb"].append(run_exalb(lab, cp, n, routes))
                else:
                    runs["MetalLB"].append(run_metallb(lab, cp, n, routes, metallb_bin / "speaker"))
                progress(f"  {summary(runs[impl.name][-1:])}")
            progress(f"speakers rep {rep + 1}/{args.speaker_reps}: bare ExaBGP floor")
            runs["floor"].append(run_floor(lab, n, rep))
    ml, ex, fl = (summary(runs[k]) for k in ("MetalLB", "exalb", "floor"))

    def pair(d: dict[str, float]) -> str:
        return f"{d['first_p50']:.0f} / {d['first_p95']:.0f} ms"

    def mib(key: str) -> tuple[str, str, str]:
        return (f"{ml[key]:.0f} MiB", f"{ex[key]:.0f} MiB", ratio(ex[key], ml[key]))

    rows: list[Row] = [
        ("IP in status → /32 in r1's FIB, p50 / p95", pair(ml), pair(ex),
         f"{ex['first_p50'] / ml['first_p50']:.2f} / {ex['first_p95'] / ml['first_p95']:.2f}"),
        ("IP in status → all 3 paths in r1's FIB, p50", f"{ml['all_p50']:.0f} ms",
         f"{ex['all_p50']:.0f} ms", ratio(ex["all_p50"], ml["all_p50"])),
        ("session resets at r1 during the run", f"{ml['resets']:.0f}", f"{ex['resets']:.0f}", "—"),
        ("  warm-up Service: extra events needed before it was announced (all rounds)",
         f"{ml['kicks']:.0f}", f"{ex['kicks']:.0f}", ""),
        (f"memory per node, idle with {n} Services (distinct resident pages)", *mib("node")),
        ("  the same, RSS summed over the processes", *mib("rss")),
    ]  # fmt: skip
    if routes:
        rows += [
            (f"memory per node with {routes:,} more routes (distinct pages)", *mib("bulk_node")),
            ("  the same, RSS summed over the processes", *mib("bulk_rss")),
            (f"{routes:,} Services written → all at r1 (8 writers)",
             f"{ml['bulk_seconds']:.1f} s", f"{ex['bulk_seconds']:.1f} s",
             ratio(ex["bulk_seconds"], ml["bulk_seconds"])),
            (f"  of the {routes:,}: Services announced only after a second event (all rounds)",
             f"{ml['bulk_kicks']:.0f}", f"{ex['bulk_kicks']:.0f}", ""),
        ]  # fmt: skip
    for name, rss in per_process(runs["exalb"]).items():
        rows.append((f"  exalb {name}: RSS", "", f"{rss:.1f} MiB", ""))
    rows += [
        ("  floor: bare ExaBGP, API line → /32 in FIB, p50 / p95", "", pair(fl), ""),
        ("  floor: bare ExaBGP, API line → all 3 paths, p50", "", f"{fl['all_p50']:.0f} ms", ""),
        ("  status write → FIB p50 / floor p50 (first path; all 3)",
         f"{ml['first_p50'] / fl['first_p50']:.2f}; {ml['all_p50'] / fl['all_p50']:.2f}",
         f"{ex['first_p50'] / fl['first_p50']:.2f}; {ex['all_p50'] / fl['all_p50']:.2f}", ""),
        ("  floor: bare ExaBGP + feeder memory per node, distinct pages / RSS", "",
         f"{fl['node']:.0f} / {fl['rss']:.0f} MiB", ""),
    ]  # fmt: skip
    return rows


# --------------------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    head: Row = ("measurement", "MetalLB", "exalb", "exalb/MetalLB")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def _stop_cleanly(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGINT (also when inherited as ignored) unwind through every ``finally``:
    controllers, speakers, namespaces, the control plane and temp dirs go with the run. A
    second signal is ignored so that it cannot cut the clean-up short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main() -> int:  # size: the options, then the two halves in turn
    forbid_host_dials()  # lab addresses are reached from inside the namespaces only
    signal.signal(signal.SIGTERM, _stop_cleanly)
    signal.signal(signal.SIGINT, _stop_cleanly)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each controller row")
    ap.add_argument("--services", type=int, default=1_000, help="cold start / restart size")
    ap.add_argument("--big", type=int, default=5_000, help="one cold start of this size (0: none)")
    ap.add_argument("--small", type=int, default=30)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--speaker-services", type=int, default=50)
    ap.add_argument("--speaker-reps", type=int, default=2)
    ap.add_argument("--speaker-routes", type=int, default=10_000,
                    help="Services (routes) added for the loaded memory row (0: none)")  # fmt: skip
    ap.add_argument("--skip-controllers", action="store_true")
    ap.add_argument("--skip-speakers", action="store_true")
    ap.add_argument("--profile", type=Path, help="directory for py-spy profiles of exalb")
    args = ap.parse_args()
    if args.burst < 101:
        ap.error("--burst must be at least 101 (the pool row moves 100 IPs out)")
    if not args.skip_speakers and (reason := unavailable_reason()):
        print(f"cannot run the speaker lab: {reason} (or pass --skip-speakers)", file=sys.stderr)
        return 2
    progress(f"building MetalLB {metallb_version()} (lab/metallb/build.sh, cached)")
    metallb_bin, took = build_metallb()
    progress(f"MetalLB binaries: {metallb_bin} ({took:.1f} s)")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vs-metallb-") as tmp:
        audit_flags, audit_log = audit_args(Path(tmp))
        with ControlPlane(
            binaries=find_controlplane_binaries(),
            extra_apiserver_args=(
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
                *audit_flags,
            ),
        ) as cp:
            install_crds(cp)
            install_metallb_crds(cp)
            progress(f"control plane up ({cp.version().get('gitVersion')})")
            api = Api(cp)
            try:
                if not args.skip_controllers:
                    ctl = CtlNamespace(cp, Path(tmp))
                    try:
                        ctx = Ctx(cp, api, ctl, prepare_config_namespace(api),
                                  AuditLog(audit_log), metallb_bin)  # fmt: skip
                        if args.profile is not None:
                            args.profile.mkdir(parents=True, exist_ok=True)
                        rows += controllers(ctx, args, args.profile)
                        if rows:  # printed now too: a later failure must not lose them
                            print_table(rows)
                    finally:
                        ctl.close()
                if not args.skip_speakers:
                    rows += speakers(cp, args, metallb_bin)
            finally:
                api.close()
    print(
        f"\nexalb vs MetalLB {metallb_version()}: medians of {args.reps} runs (controllers), "
        f"{args.speaker_reps} rounds of {args.speaker_services} Services (speakers)\n"
    )
    print_table(rows)
    print(
        "\nwrite requests: update/patch on services and services/status in the apiserver's "
        "audit log;\nRV bumps: MODIFIED events on a watch of the Services (a no-op update "
        "bumps nothing)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
