"""Outages in a recorded FIB (lab.fibwatch): what the migration test reports as the gap."""

from __future__ import annotations

from datetime import datetime

from lab.fibwatch import Change, Record, longest, outages, parse_monitor, span

A, B = "198.51.100.11", "198.51.100.12"


def record() -> Record:
    both = frozenset({A, B})
    return Record(
        started=0.0,
        initial={"p/32": both, "q/32": frozenset({A})},
        changes=[
            Change(1.0, "p/32", frozenset({B})),  # A's path goes
            Change(1.5, "q/32", frozenset()),  # q has no path at all
            Change(2.0, "q/32", frozenset({B})),
            Change(3.0, "p/32", both),  # A's path is back
            Change(4.0, "q/32", frozenset({A, B})),
        ],
        stopped=5.0,
    )


def test_prefix_outages_are_intervals_without_any_path() -> None:
    found = outages(record(), ["p/32", "q/32"])
    assert found == {"p/32": [], "q/32": [(1.5, 2.0)]}
    assert longest(found) == 0.5
    assert span(found) == (1.5, 2.0)


def test_gateway_outages_follow_one_node() -> None:
    found = outages(record(), ["p/32", "q/32"], gateway=A)
    assert found == {"p/32": [(1.0, 3.0)], "q/32": [(1.5, 4.0)]}
    assert longest(found) == 2.5
    # a prefix never seen, or one still down at the end, is down until the record stops
    assert outages(record(), ["r/32"]) == {"r/32": [(0.0, 5.0)]}
    assert longest({}) == 0.0 and span({"x": []}) is None


def test_parse_ip_monitor_lines() -> None:
    lines = [
        "[2026-11-29T12:01:53.977130] 203.0.113.222 proto bgp \\\tnexthop via 198.51.100.11 "
        "dev br0 weight 1 \\\tnexthop via 198.51.100.12 dev br0 weight 1 ",
        "[2026-11-29T12:01:53.980098] 203.0.113.222 via 198.51.100.12 dev br0 proto bgp ",
        "[2026-11-29T12:01:53.982069] Deleted 203.0.113.222 via 198.51.100.12 dev br0 proto bgp ",
        "[2026-11-29T12:01:54.000000] 198.51.100.0/24 dev br0 proto kernel scope link ",
    ]
    offset = datetime.fromisoformat("2026-11-29T12:01:53").timestamp()
    changes = parse_monitor(lines, offset)
    assert [(round(c.t, 6), c.prefix, sorted(c.gateways)) for c in changes] == [
        (0.97713, "203.0.113.222/32", [A, B]),
        (0.980098, "203.0.113.222/32", [B]),
        (0.982069, "203.0.113.222/32", []),
    ]
