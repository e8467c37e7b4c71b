"""Controller scenarios of ``vs_metallb.py``: one controller at a time on one apiserver.

Each scenario gets a fresh namespace for its Services and its own pools in the shared config
namespace, starts the controller under test in the controllers' namespace, measures through
the Service watch and the audit log (see ``vs_metallb_kube``), stops the controller and
deletes everything it made. The scenarios are the same code for both controllers; only the
command line differs (:class:`Impl`).
"""

from __future__ import annotations

import ipaddress
import json
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vs_metallb_kube import (
    Api,
    AuditLog,
    CtlNamespace,
    Proc,
    ServiceWatch,
    create_services,
    namespace,
    unique,
)

from lab.controlplane import ControlPlane

EXALB_CONTROLLER = Path(sys.executable).with_name("exalb-controller")
POOLS = "/apis/metallb.io/v1beta1/namespaces/{ns}/ipaddresspools"
METALLB_POD = "metallb-controller"


@dataclass
class Ctx:
    """What every scenario needs."""

    cp: ControlPlane
    api: Api
    ctl: CtlNamespace
    cfg_ns: str
    audit: AuditLog
    metallb_bin: Path


@dataclass(frozen=True)
class Impl:
    name: str

    def start(self, ctx: Ctx) -> Proc:
        kubeconfig = str(ctx.cp.kubeconfig)
        if self.name == "exalb":
            # A fresh Lease per start: what a first install finds (no holder to wait out).
            argv = [
                str(EXALB_CONTROLLER),
                "--kubeconfig", kubeconfig,
                "--namespace", ctx.cfg_ns,
                "--metrics-addr", "127.0.0.1:7472",
                "--lease-name", unique("exalb"),
            ]  # fmt: skip
            return Proc(ctx.ctl, unique("exalb-controller"), argv, {})
        argv = [
            str(ctx.metallb_bin / "controller"),
            "--namespace", ctx.cfg_ns,
            "--pod-name", METALLB_POD,
            "--webhook-mode=disabled",
            "--port=0",
            "--log-level=info",
        ]  # fmt: skip
        return Proc(ctx.ctl, unique("metallb-controller"), argv, {"KUBECONFIG": kubeconfig})


EXALB = Impl("exalb")
METALLB = Impl("MetalLB")


def prepare_config_namespace(api: Api) -> str:
    """The config namespace, with what MetalLB's controller insists on: a Pod object of its
    own name (owner of its ConfigurationState; never scheduled: no scheduler runs) and the
    ``default`` ServiceAccount that Pod admission looks up."""
    ns = unique("vsm-cfg")
    api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    api.ok("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}})
    api.ok(
        "POST",
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": METALLB_POD, "labels": {"app": "metallb"}},
            "spec": {"containers": [{"name": "controller", "image": "metallb/controller"}]},
        },
    )
    return ns


@contextmanager
def pools(ctx: Ctx, named: dict[str, list[str]], also: tuple[str, ...] = ()) -> Iterator[None]:
    """IPAddressPools that exist for the block; they and ``also`` (pools the block itself
    creates) are deleted afterwards, if still there."""
    path = POOLS.format(ns=ctx.cfg_ns)
    try:
        for name, addresses in named.items():
            set_pool(ctx, name, addresses)
        yield
    finally:
        for name in (*named, *also):
            ctx.api.call("DELETE", f"{path}/{name}")


def set_pool(ctx: Ctx, name: str, addresses: list[str]) -> None:
    path = POOLS.format(ns=ctx.cfg_ns)
    status, _ = ctx.api.call("GET", f"{path}/{name}")
    if status == 200:
        ctx.api.ok(
            "PATCH",
            f"{path}/{name}",
            {"spec": {"addresses": addresses}},
            content_type="application/merge-patch+json",
        )
    else:
        ctx.api.ok(
            "POST",
            path,
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": name},
                "spec": {"addresses": addresses},
            },
        )


def _check(proc: Proc, what: str) -> None:
    if not proc.alive():
        raise RuntimeError(f"{proc.name} exited during {what}:\n{proc.log_tail()}")


def _wait(watch: ServiceWatch, proc: Proc, what: str, pred: object, timeout: float) -> None:
    try:
        watch.wait_for(what, pred, timeout)  # type: ignore[arg-type]
    except TimeoutError:
        _check(proc, what)
        raise RuntimeError(f"{proc.name}: {what} timed out; log tail:\n{proc.log_tail()}") from None


def _settle(
    ctx: Ctx, watch: ServiceWatch, ns: str, mark: int, at_least: float, quiet: float = 3.0
) -> Counter[str]:
    """Wait until the Services are quiet: no change on the watch and no write request in the
    audit log for ``quiet`` s (and ``at_least`` s passed). Both, since a no-op update bumps
    no resourceVersion (the watch cannot see it) yet shows that the controller is still
    working through its queue. Returns the write requests since ``mark``."""
    start = time.monotonic()
    state, last_change = (ctx.audit.writes(mark, ns), watch.modified), start
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        cur = (ctx.audit.writes(mark, ns), watch.modified)
        if cur != state:
            state, last_change = cur, now
        if now - start >= at_least and now - last_change >= quiet:
            return cur[0]
        if now - start > 600:
            raise TimeoutError("Services still changing after 600 s")


# --------------------------------------------------------------------------- scenarios


def cold_start(ctx: Ctx, impl: Impl, n: int, restart: bool) -> dict[str, float]:
    """``n`` Services exist, the controller starts: until the first and the last has an IP;
    its CPU until then; the writes per Service; then (``restart``) a second start over the
    assigned Services: writes and IP changes."""
    row: dict[str, float] = {}
    with namespace(ctx.api, "vsm") as ns, pools(ctx, {"bench": ["198.18.0.0/15"]}):
        watch = ServiceWatch(ctx.api, ns).start()
        try:
            create_services(ctx.api, ns, [f"s{i:05d}" for i in range(n)])
            watch.wait_for("Services seen", lambda w: len(w.services) == n, 120)
            mark, mod0 = ctx.audit.mark(), watch.modified
            proc = impl.start(ctx)
            try:
                _wait(watch, proc, "first IP", lambda w: w.assigned >= 1, 120)
                row["first"] = (
                    min(s.first_ip for s in watch.services.values() if s.first_ip is not None)
                    - proc.started
                )
                _wait(watch, proc, f"{n} IPs", lambda w: w.assigned == n, max(300, n * 0.2))
                row["cpu"] = proc.cpu_seconds()
                row["all"] = watch.last_assigned - proc.started
                row["rss"] = proc.rss_peak_mib()
                writes = _settle(ctx, watch, ns, mark, at_least=1.0)
                row["writes"] = sum(writes.values()) / n
                row.update({f"w:{k}": v / n for k, v in writes.items()})
                row["rv_bumps"] = (watch.modified - mod0) / n
                if impl is EXALB:
                    row.update({f"phase:{k}": v for k, v in phases(proc).items()})
                if restart:
                    proc.stop()
                    before = watch.snapshot()
                    mark, mod0 = ctx.audit.mark(), watch.modified
                    proc = impl.start(ctx)
                    writes = _settle(ctx, watch, ns, mark, at_least=max(5.0, 1.5 * row["all"]))
                    _check(proc, "restart")
                    after = watch.snapshot()
                    row["restart_writes"] = sum(writes.values())
                    row.update({f"rw:{k}": float(v) for k, v in writes.items()})
                    row["restart_rv_bumps"] = watch.modified - mod0
                    row["restart_ip_changes"] = sum(before[k] != after.get(k) for k in before)
            finally:
                proc.stop()
        finally:
            watch.stop()
    return row


def phases(proc: Proc) -> dict[str, float]:
    """exalb's start-up from its own JSON log: seconds from process start to each phase."""
    out: dict[str, float] = {}
    wanted = {
        "started": "interpreter + imports + client",
        "became leader": "leader elected",
        "restored assignments": "caches synced, assignments restored",
    }
    for line in proc.log_path.read_text(errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        label = wanted.get(str(ev.get("event")))
        if label and label not in out and "timestamp" in ev:
            ts = datetime.fromisoformat(str(ev["timestamp"]).replace("Z", "+00:00"))
            out[label] = ts.timestamp() - proc.started_wall
    return out


def burst(ctx: Ctx, impl: Impl, n: int, pool_rows: bool, profile: Path | None = None,
          idle: bool = False) -> dict[str, float]:  # fmt: skip
    """A running, warmed-up controller; ``n`` Services created as fast as 8 client threads
    can: creation → IP per Service, first create → last IP. Then (``pool_rows``) the pool
    is shrunk below 100 of them, deleted (another pool exists) and the last pool deleted:
    how many of the ``n`` Services changed or lost their IP at each step."""
    row: dict[str, float] = {}
    with namespace(ctx.api, "vsm") as ns, pools(ctx, {"a": ["198.18.0.0/23"]}, also=("b",)):
        watch = ServiceWatch(ctx.api, ns).start()
        proc = impl.start(ctx)
        spy: subprocess.Popen[bytes] | None = None
        try:
            create_services(ctx.api, ns, ["warm"], workers=1)
            _wait(watch, proc, "warm-up IP", lambda w: w.assigned == 1, 120)
            if profile is not None:
                spy = start_py_spy(proc, profile, idle)
            names = [f"b{i:04d}" for i in range(n)]
            cpu0 = proc.cpu_seconds()
            sent = create_services(ctx.api, ns, names)
            _wait(watch, proc, f"{n} IPs", lambda w: w.assigned == n + 1, max(120, n * 0.5))
            row["cpu"] = proc.cpu_seconds() - cpu0
            if spy is not None:
                stop_py_spy(spy)
                spy = None
            lat = [watch.services[k].first_ip - sent[k] for k in names]  # type: ignore[operator]
            row["p50"] = statistics.median(lat)
            row["last"] = max(watch.services[k].first_ip or 0 for k in names) - min(sent.values())
            if pool_rows:
                row.update(pool_changes(ctx, watch, ns, names))
        finally:
            if spy is not None:
                stop_py_spy(spy)
            proc.stop()
            watch.stop()
    return row


def pool_changes(ctx: Ctx, watch: ServiceWatch, ns: str, names: list[str]) -> dict[str, float]:
    def snap() -> dict[str, tuple[str, ...]]:
        s = watch.snapshot()
        return {k: s.get(k, ()) for k in names}

    def changed(a: dict[str, tuple[str, ...]], b: dict[str, tuple[str, ...]]) -> tuple[int, int]:
        moved = sum(bool(b[k]) and a[k] != b[k] for k in names)
        lost = sum(bool(a[k]) and not b[k] for k in names)
        return moved, lost

    def after(change: Callable[[], object]) -> dict[str, tuple[str, ...]]:
        mark = ctx.audit.mark()
        change()
        _settle(ctx, watch, ns, mark, at_least=3.0)
        return snap()

    pools = POOLS.format(ns=ctx.cfg_ns)
    out: dict[str, float] = {}
    s0 = after(lambda: set_pool(ctx, "b", ["198.19.0.0/23"]))
    held = sorted(ipaddress.ip_address(v[0]) for v in s0.values() if v)
    cutoff = held[-101]  # the 100 highest IPs of the burst leave the pool
    s1 = after(lambda: set_pool(ctx, "a", [f"198.18.0.0-{cutoff}"]))
    out["shrunk_moved"], out["shrunk_lost"] = changed(s0, s1)
    s2 = after(lambda: ctx.api.ok("DELETE", f"{pools}/a"))
    out["deleted_moved"], out["deleted_lost"] = changed(s1, s2)
    s3 = after(lambda: ctx.api.ok("DELETE", f"{pools}/b"))
    out["alldeleted_moved"], out["alldeleted_lost"] = changed(s2, s3)
    return out


# --------------------------------------------------------------------------- profiling


#: Where exalb's own frames live (py-spy shows them relative to the checkout).
OWN_CODE = ("controller/", "exalb/", "speaker/")


def start_py_spy(proc: Proc, out: Path, idle: bool) -> subprocess.Popen[bytes]:
    spy = str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--pid", str(proc.pid), "--rate", "200", "--threads",
            "--format", "raw", "--output", str(out)]  # fmt: skip
    # --idle: every thread all the time (where wall time goes); --gil: only the thread
    # holding the GIL (where Python CPU goes: a thread blocked in an SSL read is not idle
    # to py-spy, so without either flag the two are mixed).
    argv.append("--idle" if idle else "--gil")
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches and starts sampling
    if p.poll() is not None:
        err = p.stderr.read().decode() if p.stderr else ""
        raise RuntimeError(f"py-spy failed: {err}")
    return p


def stop_py_spy(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def summarize_profile(path: Path, top: int = 12, per_thread: int = 8) -> list[str]:
    """Share of samples per thread (a pool's threads together), the heaviest functions
    (inclusive) per thread and overall, and the heaviest leaves (self)."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_thread: dict[str, Counter[str]] = {}
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        # "thread (<tid>): <name>" first; a pool's threads grouped by their name prefix
        name = frames[0].split(": ", 1)[-1]
        name = name.rstrip("0123456789_-") or name
        threads[name] += c
        total += c
        seen = set()
        for f in frames[1:]:
            fn, _, where = f.partition(" (")
            if where.startswith("threading.py"):
                continue
            key = f"{fn} ({where.rstrip(')').rsplit(':', 1)[0].split('site-packages/')[-1]})"
            if key not in seen:
                inclusive[key] += c
                if where.startswith(OWN_CODE):
                    by_thread.setdefault(name, Counter())[key] += c
                seen.add(key)
        if len(frames) > 1:
            fn, _, where = frames[-1].partition(" (")
            leaf[f"{fn} ({where.rstrip(')').split('site-packages/')[-1]})"] += c
    if not total:
        return ["(no samples)"]
    out = [f"samples: {total}"]
    for name, v in threads.most_common(6):
        out.append(f"  thread {name}: {v / total:.0%} of samples; exalb's heaviest frames in it:")
        out += [
            f"      {w / total:5.1%}  {k}"
            for k, w in by_thread.get(name, Counter()).most_common(per_thread)
        ]
    out.append("  heaviest functions overall (inclusive):")
    out += [f"    {v / total:5.1%}  {k}" for k, v in inclusive.most_common(top)]
    out.append("  heaviest leaves (self):")
    out += [f"    {v / total:5.1%}  {k}" for k, v in leaf.most_common(top)]
    return out
