"""Outages in a recorded FIB (lab.fibwatch): what the migration test reports as the gap."""

from __future__ import annotations

from lab.fibwatch import Change, Record, longest, outages, span

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
