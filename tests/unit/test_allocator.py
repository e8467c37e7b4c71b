"""Table tests of MetalLB's allocation order and sharing rules, and of exalb's no-churn rules."""

from __future__ import annotations

import pytest

from controller.allocator import (
    ALLOCATION_FAILED,
    IP_ALLOCATED,
    IP_CONFLICT,
    IP_MIGRATED,
    IP_OUT_OF_POOL,
    LOAD_BALANCER_FAILED,
    NOT_ENOUGH_CLUSTER_IPS,
    Allocator,
)
from exalb.config.model import LabelSelector, ServiceAllocation
from tests.unit.helpers import config, ips, pool, svc

V4 = pool("v4", "198.18.0.0/30")
V6 = pool("v6", "2001:db8::/126")
DUAL = pool("dual", "198.51.100.0/31", "2001:db8:1::/127")


def test_first_free_in_cidr_order_and_network_address_is_allocatable() -> None:
    al = Allocator(config(pool("p", "198.51.100.8/31", "198.18.0.0/31")))
    got = [al.assign(svc(f"s{i}")).ips for i in range(4)]
    assert got == [ips("198.51.100.8"), ips("198.51.100.9"), ips("198.18.0.0"), ips("198.18.0.1")]
    assert al.assign(svc("s4")).reason == ALLOCATION_FAILED


def test_avoid_buggy_ips_skips_dot0_and_dot255() -> None:
    al = Allocator(config(pool("p", "198.18.0.255/32", "198.51.100.0/31", avoid_buggy_ips=True)))
    assert al.assign(svc("a")).ips == ips("198.51.100.1")
    assert al.assign(svc("b")).pending
    d = al.assign(svc("c", requested_ips=["198.51.100.0"]))
    assert d.reason == ALLOCATION_FAILED and "avoidBuggyIPs" in d.message


def test_released_ip_is_reused_first() -> None:
    al = Allocator(config(V4))
    for i in range(3):
        al.assign(svc(f"s{i}"))
    al.release("default/s0")
    assert al.assign(svc("new")).ips == ips("198.18.0.0")


SHARE_CASES = [
    # (first service kwargs, second service kwargs, may share)
    (
        {"sharing_key": "k", "ports": [("TCP", 80)]},
        {"sharing_key": "k", "ports": [("TCP", 443)]},
        True,
    ),
    (
        {"sharing_key": "k", "ports": [("TCP", 53)]},
        {"sharing_key": "k", "ports": [("UDP", 53)]},
        True,
    ),
    (
        {"sharing_key": "k", "ports": [("TCP", 80)]},
        {"sharing_key": "k", "ports": [("TCP", 80)]},
        False,
    ),
    (
        {"sharing_key": "k", "ports": [("TCP", 80)]},
        {"sharing_key": "j", "ports": [("TCP", 81)]},
        False,
    ),
    ({"sharing_key": "k", "ports": [("TCP", 80)]}, {"ports": [("TCP", 81)]}, False),
    ({"ports": [("TCP", 80)]}, {"ports": [("TCP", 81)]}, False),
    (
        {
            "sharing_key": "k",
            "ports": [("TCP", 80)],
            "traffic_policy": "Local",
            "selector": (("app", "a"),),
        },
        {
            "sharing_key": "k",
            "ports": [("TCP", 81)],
            "traffic_policy": "Local",
            "selector": (("app", "a"),),
        },
        True,
    ),
    (
        {
            "sharing_key": "k",
            "ports": [("TCP", 80)],
            "traffic_policy": "Local",
            "selector": (("app", "a"),),
        },
        {
            "sharing_key": "k",
            "ports": [("TCP", 81)],
            "traffic_policy": "Local",
            "selector": (("app", "b"),),
        },
        False,
    ),
    (
        {
            "sharing_key": "k",
            "ports": [("TCP", 80)],
            "traffic_policy": "Local",
            "selector": (("app", "a"),),
        },
        {"sharing_key": "k", "ports": [("TCP", 81)]},
        False,
    ),
]


@pytest.mark.parametrize(("first", "second", "shareable"), SHARE_CASES)
def test_sharing_rules_for_requested_ip(first: dict, second: dict, shareable: bool) -> None:
    al = Allocator(config(V4))
    assert al.assign(svc("a", requested_ips=["198.18.0.1"], **first)).ips == ips("198.18.0.1")
    d = al.assign(svc("b", requested_ips=["198.18.0.1"], **second))
    assert (d.ips == ips("198.18.0.1")) is shareable
    if not shareable:
        assert d.reason == ALLOCATION_FAILED and "in use by default/a" in d.message


@pytest.mark.parametrize(("first", "second", "shareable"), SHARE_CASES)
def test_sharing_rules_for_automatic_allocation(first: dict, second: dict, shareable: bool) -> None:
    al = Allocator(config(V4))
    a = al.assign(svc("a", **first))
    b = al.assign(svc("b", **second))
    assert (a.ips == b.ips) is shareable


def test_sole_user_may_change_its_sharing_key_in_place() -> None:
    al = Allocator(config(V4))
    a = al.assign(svc("a", sharing_key="k", ports=[("TCP", 80)]))
    again = al.assign(
        svc("a", sharing_key="other", ports=[("TCP", 80)], assigned_ips=[str(a.ips[0])])
    )
    assert again.ips == a.ips and not again.changed and again.reason == ""


def test_sharing_break_on_a_shared_ip_keeps_the_ip_and_flags_it() -> None:
    al = Allocator(config(V4))
    a = al.assign(svc("a", sharing_key="k", ports=[("TCP", 80)]))
    al.assign(svc("b", sharing_key="k", ports=[("TCP", 81)]))
    d = al.assign(svc("b", sharing_key="k", ports=[("TCP", 80)], assigned_ips=[str(a.ips[0])]))
    assert d.ips == a.ips and d.reason == IP_CONFLICT and d.warning


def test_pool_order_pinned_priority_then_name_then_unpinned() -> None:
    p_low = pool(
        "z-prio1",
        "198.18.0.0/32",
        service_allocation=ServiceAllocation(priority=1, namespaces=("prod",)),
    )
    p_zero = pool(
        "a-prio0", "198.18.0.1/32", service_allocation=ServiceAllocation(namespaces=("prod",))
    )
    p_two = pool(
        "b-prio2",
        "198.18.0.2/32",
        service_allocation=ServiceAllocation(priority=2, namespaces=("prod",)),
    )
    p_free_b = pool("free-b", "198.51.100.0/32")
    p_free_a = pool("free-a", "198.51.100.1/32")
    al = Allocator(config(p_low, p_zero, p_two, p_free_a, p_free_b))
    order = [al.assign(svc(f"s{i}", ns="prod")).pool for i in range(5)]
    assert order == ["z-prio1", "b-prio2", "a-prio0", "free-a", "free-b"]
    # Other namespaces never get pinned pools.
    al2 = Allocator(config(p_low, p_free_a))
    assert al2.assign(svc("x", ns="dev")).pool == "free-a"
    assert al2.assign(svc("y", ns="dev")).reason == ALLOCATION_FAILED


def test_service_allocation_selectors() -> None:
    sel = LabelSelector(match_labels=(("tier", "web"),))
    ns_sel = LabelSelector(match_labels=(("team", "a"),))
    p = pool(
        "pinned",
        "198.18.0.0/32",
        service_allocation=ServiceAllocation(
            namespace_selectors=(ns_sel,), service_selectors=(sel,)
        ),
    )
    al = Allocator(config(p))
    assert al.assign(svc("x", labels=(("tier", "web"),)), {"team": "a"}).pool == "pinned"
    al2 = Allocator(config(p))
    assert al2.assign(svc("x", labels=(("tier", "db"),)), {"team": "a"}).pending
    assert al2.assign(svc("y", labels=(("tier", "web"),)), {"team": "b"}).pending


def test_auto_assign_false_only_by_name_or_request() -> None:
    manual = pool("manual", "198.18.0.0/31", auto_assign=False)
    al = Allocator(config(manual))
    assert al.assign(svc("auto")).reason == ALLOCATION_FAILED
    assert al.assign(svc("named", requested_pool="manual")).ips == ips("198.18.0.0")
    assert al.assign(svc("req", requested_ips=["198.18.0.1"])).ips == ips("198.18.0.1")


def test_requested_ip_must_match_pool_annotation_and_selectors() -> None:
    pinned = pool(
        "pinned", "198.18.0.0/31", service_allocation=ServiceAllocation(namespaces=("prod",))
    )
    al = Allocator(config(pinned, V6))
    d = al.assign(svc("a", ns="dev", requested_ips=["198.18.0.0"]))
    assert d.reason == ALLOCATION_FAILED and "serviceAllocation" in d.message
    d = al.assign(svc("b", ns="prod", requested_ips=["198.18.0.0"], requested_pool="v6"))
    assert "not in the annotated pool v6" in d.message
    d = al.assign(svc("c", requested_ips=["203.0.113.1"]))
    assert "not in any IPAddressPool" in d.message


def test_requested_ip_family_must_match() -> None:
    al = Allocator(config(V4, V6))
    d = al.assign(svc("a", requested_ips=["2001:db8::1"]))
    assert d.reason == ALLOCATION_FAILED and "does not match the ipFamily" in d.message
    d = al.assign(svc("b", requested_ips=["2001:db8::1"], cluster_ip_families=(6,)))
    assert d.ips == ips("2001:db8::1")


def test_named_pool_missing() -> None:
    al = Allocator(config(V4))
    d = al.assign(svc("a", requested_pool="nope"))
    assert d.reason == ALLOCATION_FAILED and "'nope' does not exist" in d.message


def test_invalid_annotations_are_load_balancer_failed() -> None:
    al = Allocator(config(V4))
    d = al.assign(svc("a", errors=("requested IP 'x' is not a valid IP address",)))
    assert d.reason == LOAD_BALANCER_FAILED and d.pending


def test_require_dual_stack_needs_two_cluster_ips_and_one_pool() -> None:
    al = Allocator(config(V4, V6, DUAL))
    assert al.assign(svc("a", family_policy="RequireDualStack")).reason == NOT_ENOUGH_CLUSTER_IPS
    d = al.assign(svc("b", family_policy="RequireDualStack", cluster_ip_families=(4, 6)))
    assert d.pool == "dual" and d.ips == ips("198.51.100.0", "2001:db8:1::")
    d = al.assign(
        svc("c", family_policy="RequireDualStack", cluster_ip_families=(6, 4), ip_families=(6, 4))
    )
    assert d.ips == ips("2001:db8:1::1", "198.51.100.1")
    # Separate v4 and v6 pools cannot serve one dual-stack Service.
    assert (
        al.assign(svc("d", family_policy="RequireDualStack", cluster_ip_families=(4, 6))).reason
        == ALLOCATION_FAILED
    )


def test_prefer_dual_stack_falls_back_to_primary_then_other() -> None:
    al = Allocator(config(V4))
    d = al.assign(svc("a", family_policy="PreferDualStack", cluster_ip_families=(4, 6)))
    assert d.ips == ips("198.18.0.0")
    al6 = Allocator(config(V6))
    d = al6.assign(svc("a", family_policy="PreferDualStack", cluster_ip_families=(4, 6)))
    assert d.ips == ips("2001:db8::")


def test_prefer_dual_stack_adds_missing_family_later_from_same_pool() -> None:
    small = pool("dual", "198.51.100.0/32", "2001:db8:1::/128")
    al = Allocator(config(small))
    al.assign(svc("taker", cluster_ip_families=(6,)))  # takes the only v6
    d = al.assign(svc("a", family_policy="PreferDualStack", cluster_ip_families=(4, 6)))
    assert d.ips == ips("198.51.100.0")
    al.release("default/taker")
    d = al.assign(
        svc(
            "a",
            family_policy="PreferDualStack",
            cluster_ip_families=(4, 6),
            assigned_ips=["198.51.100.0"],
        )
    )
    assert d.ips == ips("198.51.100.0", "2001:db8:1::") and d.changed
    assert d.reason == IP_ALLOCATED


def test_restore_keeps_status_ips_even_outside_pools() -> None:
    al = Allocator(config(V4))
    ds = al.restore_all(
        [
            svc("b", assigned_ips=["198.18.0.3"], creation_timestamp="2026-01-02T00:00:00Z"),
            svc("a", assigned_ips=["203.0.113.5"], creation_timestamp="2026-01-01T00:00:00Z"),
        ]
    )
    assert ds["default/b"].ips == ips("198.18.0.3") and ds["default/b"].reason == ""
    assert ds["default/a"].reason == IP_OUT_OF_POOL
    assert al.assign(svc("new")).ips == ips("198.18.0.0")


def test_restore_conflict_older_service_wins_and_newer_is_flagged_not_moved() -> None:
    al = Allocator(config(V4))
    ds = al.restore_all(
        [
            svc("young", assigned_ips=["198.18.0.1"], creation_timestamp="2026-05-01T00:00:00Z"),
            svc("old", assigned_ips=["198.18.0.1"], creation_timestamp="2026-01-01T00:00:00Z"),
        ]
    )
    assert ds["default/old"].reason == ""
    assert ds["default/young"].reason == IP_CONFLICT
    assert ds["default/young"].ips == ips("198.18.0.1")
    assert al.holders(ips("198.18.0.1")[0]) == ("default/old",)


def test_pool_deleted_keeps_ip_and_flags_until_migrated() -> None:
    al = Allocator(config(V4))
    a = al.assign(svc("a"))
    changed = al.set_config(config(pool("new", "198.51.100.0/30")))
    assert changed == ("default/a",)
    d = al.assign(svc("a", assigned_ips=[str(a.ips[0])]))
    assert d.ips == a.ips and d.reason == IP_OUT_OF_POOL and d.out_of_pool == a.ips
    # An out-of-pool IP is not handed to anyone else either.
    al.set_config(config(V4))
    assert al.assign(svc("b")).ips != a.ips
    al.set_config(config(pool("new", "198.51.100.0/30")))
    d = al.assign(svc("a", assigned_ips=[str(a.ips[0])], migrate=True))
    assert d.reason == IP_MIGRATED and d.ips == ips("198.51.100.0") and d.changed


def test_no_pools_at_all_keeps_everything() -> None:
    al = Allocator(config(V4))
    a = al.assign(svc("a"))
    al.set_config(config())
    d = al.assign(svc("a", assigned_ips=[str(a.ips[0])]))
    assert d.ips == a.ips and d.reason == IP_OUT_OF_POOL
    assert al.assign(svc("b")).reason == ALLOCATION_FAILED


def test_changing_requested_ip_moves_only_when_new_ip_is_available() -> None:
    al = Allocator(config(V4))
    al.assign(svc("other", requested_ips=["198.18.0.2"]))
    a = al.assign(svc("a", requested_ips=["198.18.0.1"]))
    d = al.assign(svc("a", requested_ips=["198.18.0.2"], assigned_ips=["198.18.0.1"]))
    assert d.ips == a.ips and d.reason == ALLOCATION_FAILED and "kept" in d.message
    d = al.assign(svc("a", requested_ips=["198.18.0.3"], assigned_ips=["198.18.0.1"]))
    assert d.ips == ips("198.18.0.3") and d.changed
    assert al.holders(ips("198.18.0.1")[0]) == ()


def test_usage_counts_are_exact_for_huge_pools() -> None:
    big = pool("big", "2001:db8::/64", "10.0.0.0/8", avoid_buggy_ips=True)
    al = Allocator(config(big))
    for i in range(3):
        al.assign(svc(f"s{i}"))
    usage = {(u.pool, u.family): u for u in al.usage()}
    assert usage[("big", 6)].capacity == 2**64
    assert usage[("big", 4)].capacity == 2**24 - 2 * 2**16
    assert usage[("big", 4)].in_use == 3
