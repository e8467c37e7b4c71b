"""Hostile configs: the time and peak memory each costs, and what became of it.

Each case runs in its own process, capped at ``--mem`` MiB of address space and
``--timeout`` seconds, through the two ways config reaches exalb: ``parse_documents`` (what
the controller and the speaker run on the objects the API server sends; a legacy ConfigMap's
``config`` value is YAML parsed by exalb) and ``exalbctl config check FILE`` (YAML files).
The outcome is ``refused`` (a config error, the last good config stays), ``accepted``, or
what went wrong: an exception escaping the parser (the controller would exit, the CLI print
a traceback), the memory cap, the time limit. Seconds and memory are the case's own: the
modules are imported first; "grew" is the peak RSS above the process's size before the case
(a case killed at the time limit or the memory cap has no figure).

    python bench/config_bombs.py [--mem MiB] [--timeout S] [CASE ...]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exalb.config.documents import parse_documents
from exalbctl.main import main as exalbctl


def alias_bomb(levels: int = 9, width: int = 9) -> tuple[str, str]:
    """YAML anchors, each a list of ``width`` aliases of the one before: ``width**levels``
    leaves from about a kilobyte of text. Returns (anchor lines, the last anchor's name)."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * width)}]")
    return "\n".join(lines), names[-1]


def legacy_cm(config: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config", "namespace": "metallb-system"},
        "data": {"config": config},
    }


PEER = "peers:\n- peer-address: 198.51.100.1\n  peer-asn: 64500\n  my-asn: 64512\n"
POOL = "address-pools:\n- name: p\n  protocol: bgp\n  addresses: [198.51.100.0/28]\n"


def legacy_alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The anchors are the entries of ``addresses``: each is refused with a message that,
    written naively, spells out the whole entry (``width**levels`` strings)."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = ["address-pools:", "- name: p", "  protocol: bgp", "  addresses:"]
    lines.append(f"  - &{names[0]} [{', '.join(['lol'] * width)}]")
    for prev, name in itertools.pairwise(names):
        lines.append(f"  - &{name} [{', '.join([f'*{prev}'] * width)}]")
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def labels_bomb_file() -> str:
    anchors, last = alias_bomb()
    return (
        f"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: p\n"
        f"  annotations:\n{_indent(_indent(anchors))}\n  labels:\n    x: *{last}\n"
        "spec:\n  addresses: [198.51.100.0/28]\n"
    )


def deep(n: int = 5000) -> str:
    return "address-pools: " + "[" * n + "]" * n + "\n"


# name -> (how it is fed, the YAML text)
CASES: dict[str, tuple[str, str]] = {
    "alias-bomb-legacy": ("configmap", legacy_alias_bomb()),
    "alias-bomb-labels": ("file", labels_bomb_file()),
    "holdtime-400-digits": ("configmap", PEER + f"  hold-time: {'9' * 400}s\n" + POOL),
    "asn-5000-digits": ("configmap", PEER.replace("64500", "9" * 5000) + POOL),
    "nesting-5000": ("configmap", deep()),
    "nesting-5000-file": ("file", deep()),
    "duplicate-key": ("configmap", POOL + POOL.replace("name: p", "name: q")),
    "list-items-5": ("file", "apiVersion: v1\nkind: List\nitems: 5\n"),
    "configmap-metadata-str": ("file", 'apiVersion: v1\nkind: ConfigMap\nmetadata: "x"\n'),
    "text-64MiB": ("configmap", "# " + "x" * (64 << 20) + "\n" + POOL),
}


def run_case(how: str, text: str) -> dict[str, Any]:
    """In the child: run one case and report what happened."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    outcome = "?"
    if how == "configmap":
        try:
            result = parse_documents([("cm", legacy_cm(text))])
            outcome = "accepted" if result.ok else "refused"
            detail = "; ".join(str(p) for p in result.errors)[:160]
        except BaseException as exc:  # noqa: BLE001 (the bench reports what a component would die of)
            outcome, detail = f"raised {type(exc).__name__}", str(exc)[:160]
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
            fh.write(text)
            fh.flush()
            out = io.StringIO()
            try:
                code = exalbctl(["config", "check", fh.name], out)
                outcome = {0: "accepted", 1: "refused"}.get(code, f"exit {code}")
                detail = out.getvalue().strip().splitlines()[0][:160] if out.getvalue() else ""
            except BaseException as exc:  # noqa: BLE001 (reported, as a user would see it)
                outcome, detail = f"traceback {type(exc).__name__}", str(exc)[:160]
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"outcome": outcome, "seconds": seconds, "rss_mib": rss, "grew_mib": rss - baseline,
            "detail": detail}  # fmt: skip


def child(name: str, mem_mib: int) -> None:
    limit = mem_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    how, text = CASES[name]
    print(json.dumps(run_case(how, text)))


def measure(name: str, mem_mib: int, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--mem", str(mem_mib)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": f"> {timeout:.0f} s (killed)", "seconds": timeout, "rss_mib": None}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        died = "memory cap" if "MemoryError" in proc.stderr else f"died: {err[:60]}"
        return {"outcome": died, "seconds": time.perf_counter() - start, "rss_mib": None}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=list(CASES))
    ap.add_argument("--mem", type=int, default=3072, help="address-space cap per case, MiB")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true", help="print the error text too")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.mem)
        return
    print(f"{'case':<24} {'bytes':>9} {'seconds':>8} {'peak RSS MiB':>13} {'grew MiB':>9}  outcome")
    for name in args.cases:
        r = measure(name, args.mem, args.timeout)
        rss = "-" if r.get("rss_mib") is None else f"{r['rss_mib']:.0f}"
        grew = "-" if r.get("grew_mib") is None else f"{r['grew_mib']:.0f}"
        size = len(CASES[name][1].encode())
        print(
            f"{name:<24} {size:>9} {r['seconds']:>8.2f} {rss:>13} {grew:>9}  {r['outcome']}",
            flush=True,
        )
        if args.verbose and r.get("detail"):
            print(f"    {r['detail']}")


if __name__ == "__main__":
    main()
