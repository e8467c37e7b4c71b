"""Every containerlab topology parses, is complete, and stays inside documentation ranges.

CI check for ``containerlab/**/*.clab.yml``: the netns runner (and containerlab) would fail
on a missing bind file or a dangling link endpoint; a typo in an address would put a
non-documentation address on an interface. TEST-NET-1 (192.0.2/24) is not allowed either:
the machines that run the lab have their own uplink there. Also the parser's refusals, on
small files.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.exabgp_static import render_static_config
from lab.execlines import parse_exec_addresses
from lab.frrconf import parse_daemons, parse_frr_addresses
from lab.runner import needs_bgp
from lab.topology import MAX_IFNAME, Endpoint, Role, TopologyError, namespace_name, topology_path
from lab.topology_load import load_topology

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = sorted((ROOT / "containerlab").glob("**/*.clab.yml"))
ALLOWED = [
    ipaddress.ip_network(n)
    for n in (
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "2001:db8::/32",
        "127.0.0.0/8",  # FRR's vty bind address in daemons files; never on a link
    )
]
SERVICE_RANGES = [
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("2001:db8:ffff::/64"),
]
DOC_ASNS = range(64496, 64512)  # RFC 5398
LONGEST_RUN = "x" * 24
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the NUL


def _allowed(address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> bool:
    """The whole prefix (not only the address) lies in one allowed range."""
    first, last = address.network.network_address, address.network.broadcast_address
    return any(first in net and last in net for net in ALLOWED)


def _ids(paths: list[Path]) -> list[str]:
    return [p.parent.name for p in paths]


def _ip_tokens(text: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """Every token that parses as an address or prefix."""
    out = []
    for token in re.split(r"[\s\"',\[\]{}=;@>]+", text):
        if ("." in token or ":" in token) and re.fullmatch(r"[0-9a-fA-F.:/]+", token):
            try:
                out.append(ipaddress.ip_interface(token))
            except ValueError:
                continue
    return out


def test_there_are_topologies() -> None:
    assert {p.parent.name for p in TOPOLOGIES} >= {"bgp-ecmp", "two-leaf"}
    assert {p.parent.name for p in TOPOLOGIES} >= {"bgp-driver", "l2-segment"}
    assert all(topology_path(p.parent.name) == p for p in TOPOLOGIES)


@pytest.mark.parametrize("path", TOPOLOGIES, ids=_ids(TOPOLOGIES))
def test_topology_loads_and_is_complete(path: Path) -> None:
    topo = load_topology(path)  # validates binds, endpoints, BGP peers against frr.conf
    if needs_bgp(topo):
        assert topo.by_role(Role.ROUTER), "a topology needs a router"
    else:  # an L2 topology: its nodes and client share a segment instead
        assert topo.by_role(Role.SWITCH), "an L2 topology needs a switch"
    assert topo.by_role(Role.NODE), "a topology needs Kubernetes nodes"
    for node in topo.nodes:
        for bind in node.binds:
            assert bind.source.is_file()
        assert len(namespace_name(LONGEST_RUN, node.name)) < 64
        socket = f"/run/exalb-lab/{LONGEST_RUN}/{node.name}/frr/run/zserv.api"
        assert len(socket) <= SOCKET_PATH_MAX
    for link in topo.links:
        for end in (link.a, link.b):
            assert len(end.interface) <= MAX_IFNAME
            assert end.interface in topo.interfaces(end.node)


@pytest.mark.parametrize("path", TOPOLOGIES, ids=_ids(TOPOLOGIES))
def test_only_documentation_addresses_and_asns(path: Path) -> None:
    topo = load_topology(path)
    files = [path, *(b.source for n in topo.nodes for b in n.binds)]
    for file in files:
        text = file.read_text()
        found = _ip_tokens(text)
        bad = [str(a) for a in found if not _allowed(a)]
        assert not bad, f"{file}: non-documentation addresses {bad}"
        for asn in re.findall(r"(?:remote-as|router bgp)\s+(\d+)", text):
            assert int(asn) in DOC_ASNS, f"{file}: AS {asn} outside RFC 5398"
    for node in topo.by_role(Role.NODE):
        if needs_bgp(topo):  # an L2-only node has nothing to peer with, and no AS
            assert node.bgp is not None
            assert node.bgp.asn in DOC_ASNS
            assert all(p.asn in DOC_ASNS for p in node.bgp.peers)
        for _, iface in node.addresses:
            assert not any(iface.ip in s for s in SERVICE_RANGES), "Service IPs are not links"


@pytest.mark.parametrize("path", TOPOLOGIES, ids=_ids(TOPOLOGIES))
def test_static_exabgp_config_validates(path: Path, tmp_path: Path) -> None:
    exabgp = Path(sys.executable).with_name("exabgp")
    if not exabgp.exists():
        pytest.skip("exabgp not installed next to the interpreter")
    topo = load_topology(path)
    for node in topo.by_role(Role.NODE):
        if node.bgp is None:
            continue  # an L2-only node runs no ExaBGP
        conf = tmp_path / f"{node.name}.conf"
        conf.write_text(render_static_config(node, ["203.0.113.10/32", "2001:db8:ffff::10/128"]))
        proc = subprocess.run(
            [str(exabgp), "validate", str(conf)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


# --- parser refusals on small files ---------------------------------------------------

ROUTER_CONF = """\
interface eth1
 ip address 198.18.0.1/30
exit
router bgp 64500
 neighbor 198.18.0.2 remote-as 64501
"""


def _write(tmp_path: Path, clab: str, frr_conf: str = ROUTER_CONF) -> Path:
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "frr.conf").write_text(frr_conf)
    (tmp_path / "r1" / "daemons").write_text("bgpd=yes\n")
    path = tmp_path / "t.clab.yml"
    path.write_text(clab)
    return path


def _clab(
    peers: str = "198.18.0.1@64500", endpoint: str = "n1:eth1", binds: str = "r1/frr.conf"
) -> str:
    return f"""
name: t
topology:
  nodes:
    r1:
      kind: linux
      labels: {{exalb.role: router}}
      binds: [{binds}:/etc/frr/frr.conf, r1/daemons:/etc/frr/daemons]
    n1:
      kind: linux
      labels:
        exalb.role: node
        exalb.bgp.asn: "64501"
        exalb.bgp.router-id: 198.18.0.2
        exalb.bgp.peers: {peers}
      exec: [ip addr add 198.18.0.2/30 dev eth1]
  links:
    - endpoints: ["r1:eth1", "{endpoint}"]
"""


def test_minimal_topology_loads(tmp_path: Path) -> None:
    topo = load_topology(_write(tmp_path, _clab()))
    n1 = topo.node("n1")
    assert n1.bgp is not None
    assert str(n1.local_address_for(n1.bgp.peers[0].address)) == "198.18.0.2"


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"binds": "r1/missing.conf"}, "is not a file"),
        ({"endpoint": "n9:eth1"}, "no node n9"),
        ({"endpoint": "n1:averyveryverylongname"}, "longer than 15"),
        ({"endpoint": "n1:eth0"}, "reserved"),
        ({"peers": "198.18.0.1@64999"}, "but r1 is AS 64500"),
        ({"peers": "198.18.0.5@64500"}, "is no router's address"),
        ({"peers": "198.18.0.1"}, "not <address>@<asn>"),
    ],
)
def test_broken_topologies_are_refused(
    tmp_path: Path, kwargs: dict[str, str], problem: str
) -> None:
    with pytest.raises(TopologyError) as err:
        load_topology(_write(tmp_path, _clab(**kwargs)))
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_peer_asn_must_match_router_conf(tmp_path: Path) -> None:
    conf = ROUTER_CONF.replace("remote-as 64501", "remote-as 64502")
    with pytest.raises(TopologyError, match="remote-as 64501"):
        load_topology(_write(tmp_path, _clab(), conf))


def test_missing_role_label_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"exalb\.role"):
        load_topology(_write(tmp_path, _clab().replace("exalb.role: node", "other: x")))


def test_small_parsers() -> None:
    assert parse_daemons('bgpd=yes\nospfd=no\nstaticd="yes"\nvtysh_enable=yes\n') == (
        "bgpd",
        "staticd",
    )
    lines = ["ip -6 addr add 2001:db8::2/64 dev eth1 nodad", "ip route add 198.18.0.0/24 via x"]
    assert [(i, str(a)) for i, a in parse_exec_addresses(lines)] == [("eth1", "2001:db8::2/64")]
    conf = "interface eth2\n ipv6 address 2001:db8::1/64\nexit\nrouter bgp 1\n ip address x\n"
    assert [(i, str(a)) for i, a in parse_frr_addresses(conf)] == [("eth2", "2001:db8::1/64")]


L2_CLAB = """
name: l2
topology:
  defaults: {kind: linux}
  nodes:
    sw:
      labels: {exalb.role: switch}
      exec: [ip link add br0 type bridge, ip link set eth1 master br0]
    n1:
      labels: {exalb.role: node}
      sysctls: {net.ipv4.conf.all.arp_ignore: 1}
      exec: [ip addr add 198.51.100.11/24 dev eth1, ip addr add 198.51.100.50/32 dev lo]
  links:
    - endpoints: ["sw:eth1", "n1:eth1"]
"""


def test_l2_topology_switch_sysctls_and_nodes_without_bgp(tmp_path: Path) -> None:
    path = tmp_path / "l2.clab.yml"
    path.write_text(L2_CLAB)
    topo = load_topology(path)
    n1 = topo.node("n1")
    assert n1.role is Role.NODE and n1.bgp is None  # no exalb.bgp.* label: an L2-only node
    assert n1.sysctls == {"net.ipv4.conf.all.arp_ignore": "1"}
    assert topo.node("sw").role is Role.SWITCH
    assert topo.peer_of("n1", "eth1") == Endpoint("sw", "eth1")
    assert topo.peer_of("sw", "eth1") == Endpoint("n1", "eth1")
    assert str(n1.address_on("lo", 4)) == "198.51.100.50/32"
    assert n1.address_on("eth1", 6) is None
    assert not needs_bgp(topo)
    assert needs_bgp(load_topology(topology_path("bgp-ecmp")))


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("net.ipv4.conf.all.arp_ignore: 1", "kernel.pid_max: 9", "not per-namespace"),
        ("labels: {exalb.role: node}", 'labels: {exalb.role: node, exalb.bgp.asn: "1"}', "needs"),
        ("sysctls: {net.ipv4.conf.all.arp_ignore: 1}", "sysctls: [x]", "must be a mapping"),
        ("exalb.role: switch", "exalb.role: hub", "router/node/client/switch"),
    ],
    ids=["host-wide sysctl", "some bgp labels", "sysctls not a mapping", "unknown role"],
)
def test_broken_l2_topologies_are_refused(tmp_path: Path, old: str, new: str, problem: str) -> None:
    path = tmp_path / "l2.clab.yml"
    assert old in L2_CLAB
    path.write_text(L2_CLAB.replace(old, new))
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    assert any(problem in p for p in err.value.problems), err.value.problems
