"""The L2 lab: ``containerlab/l2-segment/`` with the real ``exalb-garp`` sidecars on n1..n3,
seen from the client c.

Shared by ``tests/lab/test_l2.py``, ``tests/lab/l2_speaker_lab.py`` and ``bench/l2.py``.
The namespaces, the segment (a bridge inside the switch node ``sw``), the addresses, the
Service IPs on every node's ``lo`` and the ARP sysctls all come from the topology file, built
by the one runner (``lab.runner.Lab``), which records every process and stops it by PID.
This module adds what only the L2 tests need:

* a UDP responder per node on the Service IPs (:data:`VIP4`, :data:`VIP6`) that answers with
  the node's name, so the client can tell which node its traffic reaches;
* the desired state each sidecar reads, computed with the product's own election
  (:mod:`speaker.l2.election`) and written with the product's atomic writer, exactly as the
  speaker would (:meth:`L2Lab.apply`);
* the client's view: who answers one ARP request / NS, its neighbour table, UDP traffic,
  ping and arping.

A second Service IP pair (:data:`PING4`, :data:`PING6`) is on no interface, for the
sidecar's user-space echo replies.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from exalb.config.model import Config, L2Advertisement, Pool
from exalb.contracts.l2_state import decode_status, encode
from exalb.filechannel import write_atomic
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView
from garp import packets as pk
from lab import netns
from lab.nsnet import in_netns
from lab.router_views import LabError
from lab.runner import Lab
from lab.topology import IPAddress, Role, Topology, topology_path
from lab.topology_load import load_topology
from lab.wait import wait_for
from speaker.l2.election import IPElection, elect
from speaker.l2.publisher import desired_state

GARP = str(Path(sys.executable).with_name("exalb-garp"))
TOPOLOGY_NAME = "l2-segment"
TOPOLOGY = load_topology(topology_path(TOPOLOGY_NAME))
#: Every node and the client sit on the segment with this one interface.
IFACE = "eth1"
SWITCH = TOPOLOGY.by_role(Role.SWITCH)[0].name
CLIENT = TOPOLOGY.by_role(Role.CLIENT)[0].name
NODES = tuple(n.name for n in TOPOLOGY.by_role(Role.NODE))


def _address(topology: Topology, node: str, interface: str, version: int) -> Any:
    found = topology.node(node).address_on(interface, version)
    assert found is not None, f"{node} has no IPv{version} address on {interface}"
    return found.ip


NODE_IP4: dict[str, ipaddress.IPv4Address] = {n: _address(TOPOLOGY, n, IFACE, 4) for n in NODES}
NODE_IP6: dict[str, ipaddress.IPv6Address] = {n: _address(TOPOLOGY, n, IFACE, 6) for n in NODES}
CLIENT_IP4: ipaddress.IPv4Address = _address(TOPOLOGY, CLIENT, IFACE, 4)
CLIENT_IP6: ipaddress.IPv6Address = _address(TOPOLOGY, CLIENT, IFACE, 6)
#: The Service IPs every node holds on lo (the kernel accepts, only the sidecar answers).
VIP4: ipaddress.IPv4Address = _address(TOPOLOGY, NODES[0], "lo", 4)
VIP6: ipaddress.IPv6Address = _address(TOPOLOGY, NODES[0], "lo", 6)
PING4 = ipaddress.IPv4Address("198.51.100.51")  # on no interface: sidecar echo only
PING6 = ipaddress.IPv6Address("2001:db8:50::51")
UDP_PORT = 9999
PROBE_PORT = 7947
METRICS_PORT = 7473

POOL = Pool("lab", cidrs=(ipaddress.ip_network("198.51.100.48/29"),
                          ipaddress.ip_network("2001:db8:50::50/124")))  # fmt: skip
CONFIG = Config(
    pools=(POOL,), l2_advertisements=(L2Advertisement("lab", pools=("lab",)),), source="crd"
)


def service(
    endpoints_on: Sequence[str] = NODES,
    policy: str = "Cluster",
    ips: Sequence[IPAddress] = (VIP4, VIP6),
    name: str = "web",
) -> tuple[ServiceView, EndpointsView]:
    """A LoadBalancer Service with serving endpoints on ``endpoints_on``."""
    svc = ServiceView(
        namespace="default",
        name=name,
        traffic_policy="Local" if policy == "Local" else "Cluster",
        assigned_ips=tuple(ips),
        ip_families=(4, 6),
    )
    eps = EndpointsView(
        "default",
        name,
        tuple(Endpoint((f"10.0.0.{i + 1}",), n, ready=True) for i, n in enumerate(endpoints_on)),
    )
    return svc, eps


def node_views() -> tuple[NodeView, ...]:
    return tuple(NodeView(n, addresses=(NODE_IP4[n], NODE_IP6[n])) for n in NODES)


class L2Lab:
    """The running ``l2-segment`` lab plus the sidecars' desired state and the client's view."""

    def __init__(self, lab: Lab) -> None:
        if not Path(GARP).exists():
            raise LabError(f"{GARP} missing (pip install -e .)")
        self.lab = lab
        self.mac = {n: pk.mac_bytes(netns.link_mac(lab.ns(n), IFACE)) for n in NODES}
        self.client_mac = pk.mac_bytes(netns.link_mac(lab.ns(CLIENT), IFACE))
        self.sidecars: dict[str, subprocess.Popen[bytes]] = {}
        # the probe key every sidecar holds, as the chart's Secret mounts it
        self.key_dir = lab.directory / "garp-key"
        self.key_dir.mkdir(mode=0o700, exist_ok=True)
        (self.key_dir / "key").write_text(secrets.token_urlsafe(48))
        self.generation = 0
        self.elections: tuple[IPElection, ...] = ()
        for n in NODES:
            lab.start_responder(n, (VIP4, VIP6), UDP_PORT, udp=True)

    # --- desired state and sidecars ------------------------------------------------------

    def state_path(self, n: str) -> Path:
        return self.lab.node_dir(n) / "l2-state.json"

    def apply(
        self,
        *services: tuple[ServiceView, EndpointsView],
        ping: bool = False,
        config: Config = CONFIG,
    ) -> None:
        """Elect like every speaker would and write each node's desired state."""
        self.elections = elect(config, services or (service(),), node_views())
        self.generation += 1
        for n in NODES:
            doc = desired_state(
                n, self.elections, node_views(), generation=self.generation, ping=ping
            )
            write_atomic(self.state_path(n), encode(doc))

    def ranking(self, ip: IPAddress = VIP4) -> tuple[str, ...]:
        for e in self.elections:
            if e.ip == ip:
                return e.candidates
        return ()

    def start_sidecar(self, n: str, *extra: str) -> subprocess.Popen[bytes]:
        argv = [GARP, "--state", str(self.state_path(n)), "--node", n,
                "--metrics-port", str(METRICS_PORT), "--key-dir", str(self.key_dir),
                *extra]  # fmt: skip
        proc = self.lab.popen(n, argv, name="garp")
        self.sidecars[n] = proc
        return proc

    def stop_sidecar(self, n: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """``sig`` (SIGTERM: a graceful hand-over; SIGKILL: a crash), SIGKILL after 3 s."""
        proc = self.sidecars.pop(n, None)
        if proc is not None:
            self.lab.stop_process(n, proc, grace=3.0, first=sig)

    def status(self, n: str) -> Any:
        path = Path(f"{self.state_path(n)}.status")
        try:
            return decode_status(path.read_bytes())
        except (OSError, ValueError):
            return None

    def log(self, n: str) -> str:
        return (self.lab.node_dir(n) / "garp.log").read_text(errors="replace")

    def switch_port(self, n: str) -> str:
        """The switch's interface that a node's segment link plugs into."""
        return TOPOLOGY.peer_of(n, IFACE).interface

    def set_link(self, n: str, up: bool) -> None:
        """Partition a node by taking its switch port down (its eth1 loses carrier)."""
        netns.set_link(self.lab.ns(SWITCH), self.switch_port(n), up)

    # --- the client's view ---------------------------------------------------------------

    def neigh(self, ip: IPAddress) -> bytes | None:
        fam = "-4" if ip.version == 4 else "-6"
        out = self.lab.exec(CLIENT, ["ip", fam, "-j", "neigh", "show", str(ip), "dev", IFACE])
        for entry in json_list(out.stdout):
            if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
                return pk.mac_bytes(entry["lladdr"])
        return None

    def node_of(self, mac: bytes | None) -> str | None:
        return next((n for n, m in self.mac.items() if m == mac), None)

    def _raw(self, proto: int) -> socket.socket:
        with in_netns(self.lab.ns(CLIENT)):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            s.bind((IFACE, proto))
        return s

    def who_answers(self, ip: IPAddress, window: float = 0.05) -> list[str]:
        """Send one ARP request / NS from the client; the nodes that answered, with repeats."""
        v4 = isinstance(ip, ipaddress.IPv4Address)
        s = self._raw(pk.ETH_P_ARP if v4 else pk.ETH_P_IPV6)
        try:
            if isinstance(ip, ipaddress.IPv4Address):
                s.send(pk.arp_request(self.client_mac, CLIENT_IP4, ip))
            else:
                s.send(pk.neighbor_solicit(self.client_mac, CLIENT_IP6, ip))
            answers: list[str] = []
            deadline = time.monotonic() + window
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                frame = s.recv(2048)
                mac = _answer_mac(frame, ip)
                if mac is not None:
                    answers.append(self.node_of(mac) or pk.mac_str(mac))
            return answers
        finally:
            s.close()

    def udp_client(self, ip: IPAddress) -> socket.socket:
        with in_netns(self.lab.ns(CLIENT)):
            fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.connect((str(ip), UDP_PORT))
        s.setblocking(False)
        return s

    def ping(self, ip: IPAddress, count: int = 1) -> bool:
        argv = ["ping", "-c", str(count), "-W", "1", "-i", "0.2", str(ip)]
        return self.lab.exec(CLIENT, argv, check=False).returncode == 0

    def arping(self, ip: ipaddress.IPv4Address, count: int = 2) -> list[str]:
        """iputils ``arping`` from the client (1 request/s); the nodes named by the replies."""
        argv = ["arping", "-I", IFACE, "-c", str(count), str(ip)]
        out = []
        for line in self.lab.exec(CLIENT, argv, check=False).stdout.splitlines():
            if "reply from" in line and "[" in line:
                mac = line.split("[", 1)[1].split("]", 1)[0]
                out.append(self.node_of(pk.mac_bytes(mac.lower())) or mac)
        return out

    def rss_kb(self, n: str) -> int:
        proc = self.sidecars[n]
        # ``ip netns exec`` execs the sidecar in place, so the PID is the sidecar's.
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def json_list(text: str) -> list[dict[str, Any]]:
    value = json.loads(text or "[]")
    return value if isinstance(value, list) else []


def _answer_mac(frame: bytes, ip: IPAddress) -> bytes | None:
    if isinstance(ip, ipaddress.IPv4Address):
        arp = pk.parse_arp(frame)
        if arp and arp.op == pk.ARP_REPLY and arp.spa == ip and arp.tpa == CLIENT_IP4:
            return arp.sha
        return None
    msg = pk.parse_icmp6(frame)
    na = pk.parse_na(msg) if msg else None
    if na and na.target == ip and na.flags & pk.NA_SOLICITED:
        return na.tlla or na.eth_src
    return None


def open_l2(lab: Lab, start: bool = True) -> L2Lab:
    """The L2 view of a running ``l2-segment`` lab; with ``start``, states applied and all
    three sidecars started, the elected owner alone answering for both families."""
    l2 = L2Lab(lab)
    if start:
        l2.apply()
        for n in NODES:
            l2.start_sidecar(n)
        owner = l2.ranking()[0]
        wait_for("owner answers ARP", lambda: l2.who_answers(VIP4) == [owner], 10, 0.02)
        wait_for("owner answers NDP", lambda: l2.who_answers(VIP6) == [owner], 10, 0.02)
    return l2


@contextlib.contextmanager
def l2_lab(start: bool = True) -> Iterator[L2Lab]:
    """A lab of its own (for the benchmark), torn down on exit; see :func:`open_l2`."""
    with Lab.up(topology_path(TOPOLOGY_NAME)) as lab:
        yield open_l2(lab, start)


def traffic_switch(
    lab: L2Lab,
    expect: str,
    action: Callable[[], None],
    ips: Sequence[IPAddress] = (VIP4, VIP6),
    timeout: float = 3.0,
    period: float = 0.005,
) -> dict[IPAddress, float]:
    """Seconds from ``action()`` until the client's UDP traffic to each IP is answered by
    ``expect`` (one datagram every ``period``; resolution ±period). Missing = timed out."""
    socks = {ip: lab.udp_client(ip) for ip in ips}
    done: dict[IPAddress, float] = {}
    try:
        t0 = time.monotonic()
        action()
        seq = 0
        while len(done) < len(socks) and time.monotonic() - t0 < timeout:
            seq += 1
            for ip, s in socks.items():
                if ip not in done:
                    with contextlib.suppress(OSError):
                        s.send(str(seq).encode())
            ready, _, _ = select.select(list(socks.values()), [], [], period)
            now = time.monotonic()
            for s in ready:
                ip = next(i for i, x in socks.items() if x is s)
                with contextlib.suppress(OSError):
                    while True:
                        data = s.recv(2048)
                        if data.split()[0].decode() == expect and ip not in done:
                            done[ip] = now - t0
        return done
    finally:
        for s in socks.values():
            s.close()


def one_answer_within(
    lab: L2Lab,
    expect: str,
    ips: Sequence[IPAddress] = (VIP4, VIP6),
    timeout: float = 3.0,
    t0: float | None = None,
) -> float:
    """Seconds (from ``t0``, default now) until one ARP request and one NS are each answered
    by exactly ``expect`` and nobody else."""
    start = time.monotonic() if t0 is None else t0
    wait_for(
        f"{expect} alone answering",
        lambda: all(lab.who_answers(ip, 0.02) == [expect] for ip in ips),
        timeout,
        0.02,
    )
    return time.monotonic() - start
