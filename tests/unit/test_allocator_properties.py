"""Property tests: the allocator's invariants hold for any sequence of operations."""

from __future__ import annotations

import ipaddress
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.addrspace import AddressSpace
from controller.allocator import Allocator, claim_of, families_of
from controller.freespace import FreeSpace
from exalb.views import ServiceView
from tests.unit.helpers import config, pool, svc

SMALL_POOLS = st.lists(
    st.sampled_from(
        [
            ("a", ("198.18.0.0/30",), False),
            ("b", ("198.18.0.252/30", "198.51.100.0/31"), True),
            ("c", ("2001:db8::/126",), False),
            ("d", ("198.51.100.128/31", "2001:db8:1::/127"), False),
            ("e", ("203.0.113.0/29",), True),
        ]
    ),
    unique_by=lambda t: t[0],
    max_size=4,
).map(lambda ps: config(*(pool(n, *c, avoid_buggy_ips=b) for n, c, b in ps)))

SERVICES = st.builds(
    lambda i, key, port, proto, local, sel, fam: svc(
        f"s{i}",
        sharing_key=key,
        ports=[(proto, port)],
        traffic_policy="Local" if local else "Cluster",
        selector=(("app", sel),),
        cluster_ip_families=fam,
        family_policy="PreferDualStack" if len(fam) == 2 else "SingleStack",
    ),
    st.integers(0, 11),
    st.sampled_from([None, "k1", "k2"]),
    st.sampled_from([80, 443]),
    st.sampled_from(["TCP", "UDP"]),
    st.booleans(),
    st.sampled_from(["x", "y"]),
    st.sampled_from([(4,), (6,), (4, 6)]),
)
OPS = st.lists(st.tuples(st.sampled_from(["assign", "release"]), SERVICES), max_size=40)


def check_no_forbidden_sharing(al: Allocator, views: dict[str, ServiceView]) -> None:
    by_ip: dict[object, list[str]] = {}
    for key in al.services():
        for ip in al.assigned(key):
            by_ip.setdefault(ip, []).append(key)
    for holders in by_ip.values():
        for a, b in combinations(holders, 2):
            assert claim_of(views[a]).compatible(claim_of(views[b])), (a, b)


@settings(max_examples=150, deadline=None)
@given(SMALL_POOLS, OPS)
def test_no_ip_is_given_to_services_that_may_not_share(cfg, ops) -> None:  # type: ignore[no-untyped-def]
    al = Allocator(cfg)
    views: dict[str, ServiceView] = {}
    for op, s in ops:
        if op == "release":
            al.release(s.key)
            views.pop(s.key, None)
            continue
        current = al.assigned(s.key)
        s = ServiceView(**{**s.__dict__, "assigned_ips": current})
        d = al.assign(s)
        if al.assigned(s.key) and d.reason != "IPConflict":
            views[s.key] = s  # a refused sharing change keeps the old claim
        assert d.ips == al.assigned(s.key) or d.reason == "IPConflict"
    check_no_forbidden_sharing(al, views)


@settings(max_examples=100, deadline=None)
@given(SMALL_POOLS, OPS, SMALL_POOLS)
def test_pool_edits_never_move_an_assigned_ip(cfg, ops, new_cfg) -> None:  # type: ignore[no-untyped-def]
    """A config change never takes an IP away from a Service, nor gives it another of a
    family it already has. The one change allowed is *completing* a dual-stack Service that
    holds one family, from the same pool: MetalLB does that too (controller/service.go,
    convergeBalancer: PreferDualStack with one IP tries AllocateFromPoolForAdditionalFamily),
    and it moves nothing. Each Service is re-converged as it looks now (its latest view)."""
    al = Allocator(cfg)
    latest: dict[str, ServiceView] = {}
    for _op, s in ops:
        al.assign(ServiceView(**{**s.__dict__, "assigned_ips": al.assigned(s.key)}))
        latest[s.key] = s
    before = {k: al.assigned(k) for k in al.services()}
    al.set_config(new_cfg)
    for key, ips in before.items():
        s = latest[key]
        d = al.assign(ServiceView(**{**s.__dict__, "assigned_ips": ips}))
        assert set(ips) <= set(d.ips), (ips, d)
        added = set(d.ips) - set(ips)
        if added:
            assert families_of(s) == {4, 6}
            assert len(ips) == 1 and len(added) == 1
            assert {a.version for a in added} != {ips[0].version}
            assert d.pool == al.config.pool_of(ips[0]).name  # type: ignore[union-attr]
        assert al.assigned(key) == d.ips


@settings(max_examples=100, deadline=None)
@given(SMALL_POOLS, OPS)
def test_restore_is_idempotent_and_reproduces_state(cfg, ops) -> None:  # type: ignore[no-untyped-def]
    al = Allocator(cfg)
    latest: dict[str, ServiceView] = {}
    for _op, s in ops:
        d = al.assign(ServiceView(**{**s.__dict__, "assigned_ips": al.assigned(s.key)}))
        if d.reason != "IPConflict":
            latest[s.key] = s
    statuses = [
        ServiceView(**{**latest[k].__dict__, "assigned_ips": al.assigned(k)}) for k in al.services()
    ]
    fresh = Allocator(cfg)
    first = fresh.restore_all(statuses)
    state = {k: fresh.assigned(k) for k in fresh.services()}
    second = fresh.restore_all(statuses)
    assert first == second
    assert state == {k: fresh.assigned(k) for k in fresh.services()}
    assert state == {k: al.assigned(k) for k in al.services()}
    assert fresh.usage() == al.usage()


@settings(max_examples=100, deadline=None)
@given(SMALL_POOLS, OPS)
def test_capacity_and_usage_equal_the_truth(cfg, ops) -> None:  # type: ignore[no-untyped-def]
    al = Allocator(cfg)
    for op, s in ops:
        if op == "release":
            al.release(s.key)
        else:
            al.assign(ServiceView(**{**s.__dict__, "assigned_ips": al.assigned(s.key)}))
    used = {ip for k in al.services() for ip in al.assigned(k)}
    for u in al.usage():
        p = cfg.pool(u.pool)
        assert p is not None
        addrs = [
            ip
            for c in p.cidrs_of(u.family)
            for ip in c
            if not (p.avoid_buggy_ips and ip.version == 4 and int(ip) % 256 in (0, 255))
        ]
        assert u.capacity == len(addrs) == p.capacity(u.family)
        assert u.in_use == len(used & set(addrs))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "198.18.0.0/24",
                "198.51.100.250/31",
                "203.0.113.255/32",
                "198.51.100.0/25",
                "2001:db8::/125",
                "198.18.0.0/23",
            ]
        ),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    st.booleans(),
)
def test_address_space_is_a_bijection_in_cidr_order(cidrs, avoid) -> None:  # type: ignore[no-untyped-def]
    nets = [ipaddress.ip_network(c) for c in cidrs]
    for fam in (4, 6):
        mine = tuple(n for n in nets if n.version == fam)
        space = AddressSpace(mine, fam, avoid)  # type: ignore[arg-type]
        expected = [
            ip for n in mine for ip in n if not (avoid and fam == 4 and int(ip) % 256 in (0, 255))
        ]
        if len(set(expected)) != len(expected):
            continue  # overlapping CIDRs are refused by the config parser
        assert space.size == len(expected)
        for pos, ip in enumerate(expected):
            assert space.address(pos) == ip
            assert space.position(ip) == pos


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.lists(st.tuples(st.booleans(), st.integers(0, 63)), max_size=80))
def test_free_space_matches_a_naive_set(size, ops) -> None:  # type: ignore[no-untyped-def]
    fs = FreeSpace(size)
    used: set[int] = set()
    for take, pos in ops:
        pos %= size
        if take and pos not in used:
            fs.take(pos)
            used.add(pos)
        elif not take and pos in used:
            fs.release(pos)
            used.discard(pos)
        for start in (0, pos):
            naive = next((p for p in range(start, size) if p not in used), None)
            assert fs.first_free(start) == naive
        assert fs.used == len(used)
