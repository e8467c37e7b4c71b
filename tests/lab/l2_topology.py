"""L2 lab: a bridge, three nodes running the real ``exalb-garp`` sidecar, and a client.

Shared by ``tests/lab/test_l2.py`` and ``bench/l2.py`` (which adds this directory to
``sys.path``). Follows lab-recipes §8, §9 and §11 and the network-safety rules: every
namespace carries a per-run id, veths are created directly inside their two namespaces (none
touches the default namespace), documentation addresses only, processes are stopped by
recorded PID, and ``down()`` runs on failure too (use :func:`l2_lab`).

Topology::

    exalb-<run>-br:  br0 ─ p1 ─┬─ eth0  exalb-<run>-n1  198.51.100.11/24  2001:db8:50::11/64
                          p2 ─┼─ eth0  exalb-<run>-n2  198.51.100.12/24  2001:db8:50::12/64
                          p3 ─┼─ eth0  exalb-<run>-n3  198.51.100.13/24  2001:db8:50::13/64
                          pc ─┴─ eth0  exalb-<run>-c   198.51.100.20/24  2001:db8:50::20/64

Each node has the VIPs 198.51.100.50 and 2001:db8:50::50 on ``lo`` with ``arp_ignore=1``
(the kernel accepts traffic for them but never answers ARP/NDP for them on eth0; the sidecar
does) and runs a tiny UDP responder on the VIPs that replies with the node's name, so the
client can tell which node its traffic reaches. A second VIP pair (.51, ::51) is on no
interface, for the sidecar's user-space echo replies. The desired state each sidecar reads
is computed with the product's own election (:mod:`speaker.l2.election`) and written with
the product's atomic writer, exactly as the speaker would.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from exalb.config.model import Config, L2Advertisement, Pool
from exalb.contracts.l2_state import decode_status, encode
from exalb.filechannel import write_atomic
from exalb.views import Endpoint, EndpointsView, NodeView, ServiceView
from garp import packets as pk
from lab.wait import poll as wait_for
from speaker.l2.election import IPElection, elect
from speaker.l2.publisher import desired_state

VENV_BIN = Path(sys.executable).parent
GARP = str(VENV_BIN / "exalb-garp")
NODES = ("n1", "n2", "n3")
NODE_IP4 = {n: ipaddress.IPv4Address(f"198.51.100.{11 + i}") for i, n in enumerate(NODES)}
NODE_IP6 = {n: ipaddress.IPv6Address(f"2001:db8:50::{11 + i}") for i, n in enumerate(NODES)}
CLIENT_IP4 = ipaddress.IPv4Address("198.51.100.20")
CLIENT_IP6 = ipaddress.IPv6Address("2001:db8:50::20")
VIP4 = ipaddress.IPv4Address("198.51.100.50")
VIP6 = ipaddress.IPv6Address("2001:db8:50::50")
PING4 = ipaddress.IPv4Address("198.51.100.51")  # on no interface: sidecar echo only
PING6 = ipaddress.IPv6Address("2001:db8:50::51")
UDP_PORT = 9999
PROBE_PORT = 7947
METRICS_PORT = 7473
CLONE_NEWNET = 0x40000000

POOL = Pool("lab", cidrs=(ipaddress.ip_network("198.51.100.48/29"),
                          ipaddress.ip_network("2001:db8:50::50/124")))  # fmt: skip
CONFIG = Config(
    pools=(POOL,), l2_advertisements=(L2Advertisement("lab", pools=("lab",)),), source="crd"
)

RESPONDER = """
import selectors, socket, sys
name = sys.argv[1].encode()
sel = selectors.DefaultSelector()
for fam, ip in ((socket.AF_INET, sys.argv[2]), (socket.AF_INET6, sys.argv[3])):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((ip, int(sys.argv[4])))
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        data, addr = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(name + b" " + data, addr)
"""

_libc = ctypes.CDLL(None, use_errno=True)


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "L2 lab tests need root (network namespaces, raw sockets)"
    if not os.path.exists(GARP):
        return f"{GARP} missing (pip install -e .)"
    if shutil.which("ip") is None:
        return "iproute2 missing"
    name = f"exalb-probe-{uuid.uuid4().hex[:6]}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if res.returncode != 0:
        return f"cannot create network namespaces: {res.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip()}")
    return res


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid(pid: int, sig: int = signal.SIGTERM, grace: float = 3.0) -> None:
    """Signal a recorded PID (never by name), wait, SIGKILL if needed, reap."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the block in namespace ``name`` (this thread only); sockets made here stay there."""
    orig = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        yield
    finally:
        _libc.setns(orig, CLONE_NEWNET)
        os.close(target)
        os.close(orig)


def service(
    endpoints_on: Sequence[str] = NODES,
    policy: str = "Cluster",
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (VIP4, VIP6),
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
    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:6]
        self.br = f"exalb-{self.run_id}-br"
        self.client = f"exalb-{self.run_id}-c"
        self.ns = {n: f"exalb-{self.run_id}-{n}" for n in NODES}
        self.dir = Path(tempfile.mkdtemp(prefix=f"exalb-{self.run_id}-", dir="/tmp"))
        self.namespaces: list[str] = []
        self.mac: dict[str, bytes] = {}
        self.sidecars: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: list[int] = []
        self.generation = 0
        self.elections: tuple[IPElection, ...] = ()
        self.client_mac = b""
        self.key_dir = self.dir / "garp-key"  # the probe key, as the chart's Secret mounts it
        self.key_dir.mkdir()
        (self.key_dir / "key").write_text(secrets.token_urlsafe(48))
        self.sidecar_args: list[str] = ["--key-dir", str(self.key_dir)]

    # --- setup ---------------------------------------------------------------------------

    def _netns_add(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _attach(self, ns: str, port: str, ip4: str, ip6: str) -> None:
        _run("ip", "-n", self.br, "link", "add", port, "type", "veth",
             "peer", "name", "eth0", "netns", ns)  # fmt: skip
        _run("ip", "-n", self.br, "link", "set", port, "master", "br0", "up")
        _run("ip", "-n", ns, "addr", "add", f"{ip4}/24", "dev", "eth0")
        _run("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")

    def _sysctl(self, ns: str, *settings: str) -> None:
        _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings)

    def _link_mac(self, ns: str) -> bytes:
        info = json.loads(_run("ip", "-j", "-n", ns, "link", "show", "eth0").stdout)
        return pk.mac_bytes(info[0]["address"])

    def up(self) -> L2Lab:
        self._netns_add(self.br)
        _run("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.br, "link", "set", "br0", "up")
        for i, n in enumerate(NODES, start=1):
            ns = self.ns[n]
            self._netns_add(ns)
            self._sysctl(ns, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
            self._attach(ns, f"p{i}", str(NODE_IP4[n]), str(NODE_IP6[n]))
            _run("ip", "-n", ns, "addr", "add", f"{VIP4}/32", "dev", "lo")
            _run("ip", "-n", ns, "addr", "add", f"{VIP6}/128", "dev", "lo", "nodad")
            self.mac[n] = self._link_mac(ns)
            self._start_responder(n)
        self._netns_add(self.client)
        self._attach(self.client, "pc", str(CLIENT_IP4), str(CLIENT_IP6))
        self.client_mac = self._link_mac(self.client)
        return self

    def _spawn(self, ns: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=out)
        self.pids.append(proc.pid)
        return proc

    def _start_responder(self, n: str) -> None:
        argv = [sys.executable, "-c", RESPONDER, n, str(VIP4), str(VIP6), str(UDP_PORT)]
        self._spawn(self.ns[n], argv, self.dir / f"{n}-responder.log")

    # --- desired state and sidecars ------------------------------------------------------

    def state_path(self, n: str) -> Path:
        return self.dir / f"{n}-state.json"

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

    def ranking(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address = VIP4) -> tuple[str, ...]:
        for e in self.elections:
            if e.ip == ip:
                return e.candidates
        return ()

    def start_sidecar(self, n: str, *extra: str) -> subprocess.Popen[bytes]:
        argv = [GARP, "--state", str(self.state_path(n)), "--node", n,
                "--metrics-port", str(METRICS_PORT), *self.sidecar_args, *extra]  # fmt: skip
        proc = self._spawn(self.ns[n], argv, self.dir / f"{n}-garp.log")
        self.sidecars[n] = proc
        return proc

    def stop_sidecar(self, n: str, sig: int = signal.SIGTERM) -> None:
        proc = self.sidecars.pop(n, None)
        if proc is not None:
            stop_pid(proc.pid, sig)

    def status(self, n: str) -> Any:
        path = Path(f"{self.state_path(n)}.status")
        try:
            return decode_status(path.read_bytes())
        except (OSError, ValueError):
            return None

    def log(self, n: str) -> str:
        return (self.dir / f"{n}-garp.log").read_text(errors="replace")

    def set_link(self, n: str, up: bool) -> None:
        """Partition a node by taking its bridge port down (its eth0 loses carrier)."""
        port = f"p{NODES.index(n) + 1}"
        _run("ip", "-n", self.br, "link", "set", port, "up" if up else "down")

    # --- the client's view ---------------------------------------------------------------

    def neigh(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes | None:
        fam = "-4" if ip.version == 4 else "-6"
        out = _run("ip", fam, "-j", "-n", self.client, "neigh", "show", str(ip), "dev", "eth0")
        for entry in json.loads(out.stdout or "[]"):
            if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
                return pk.mac_bytes(entry["lladdr"])
        return None

    def node_of(self, mac: bytes | None) -> str | None:
        return next((n for n, m in self.mac.items() if m == mac), None)

    def _raw(self, proto: int) -> socket.socket:
        with netns(self.client):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            s.bind(("eth0", proto))
        return s

    def who_answers(
        self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, window: float = 0.05
    ) -> list[str]:
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

    def udp_client(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> socket.socket:
        with netns(self.client):
            fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.connect((str(ip), UDP_PORT))
        s.setblocking(False)
        return s

    def ping(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, count: int = 1) -> bool:
        res = _run("ip", "netns", "exec", self.client, "ping", "-c", str(count), "-W", "1",
                   "-i", "0.2", str(ip), check=False)  # fmt: skip
        return res.returncode == 0

    def arping(self, ip: ipaddress.IPv4Address, count: int = 2) -> list[str]:
        """iputils ``arping`` from the client (1 request/s); the nodes named by the replies."""
        res = _run("ip", "netns", "exec", self.client, "arping", "-I", "eth0", "-c",
                   str(count), str(ip), check=False)  # fmt: skip
        out = []
        for line in res.stdout.splitlines():
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

    # --- teardown ------------------------------------------------------------------------

    def down(self) -> None:
        for n in list(self.sidecars):
            with contextlib.suppress(Exception):
                self.stop_sidecar(n)
        for pid in reversed(self.pids):
            stop_pid(pid, grace=1.0)
        for ns in reversed(self.namespaces):
            for tok in _run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ValueError):
                    stop_pid(int(tok), grace=1.0)
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _answer_mac(frame: bytes, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes | None:
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


@contextlib.contextmanager
def l2_lab(start: bool = True) -> Iterator[L2Lab]:
    """A lab with states applied and all three sidecars started; torn down on exit."""
    lab = L2Lab()
    try:
        lab.up()
        if start:
            lab.apply()
            for n in NODES:
                lab.start_sidecar(n)
            owner = lab.ranking()[0]
            wait_for(lambda: lab.who_answers(VIP4) == [owner], timeout=10)
            wait_for(lambda: lab.who_answers(VIP6) == [owner], timeout=10)
        yield lab
    finally:
        lab.down()


def traffic_switch(
    lab: L2Lab,
    expect: str,
    action: Callable[[], None],
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (VIP4, VIP6),
    timeout: float = 3.0,
    period: float = 0.005,
) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, float]:
    """Seconds from ``action()`` until the client's UDP traffic to each IP is answered by
    ``expect`` (one datagram every ``period``; resolution ±period). Missing = timed out."""
    socks = {ip: lab.udp_client(ip) for ip in ips}
    done: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, float] = {}
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
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (VIP4, VIP6),
    timeout: float = 3.0,
    t0: float | None = None,
) -> float:
    """Seconds (from ``t0``, default now) until one ARP request and one NS are each answered
    by exactly ``expect`` and nobody else."""
    start = time.monotonic() if t0 is None else t0
    wait_for(lambda: all(lab.who_answers(ip, 0.02) == [expect] for ip in ips), timeout=timeout)
    return time.monotonic() - start
