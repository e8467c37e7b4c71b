"""``exalb-speaker``: one per node; tells ExaBGP which routes this node announces.

Wiring only (the order of operations lives in :mod:`speaker.app`):

* informers (list-then-watch) for Services and EndpointSlices (all namespaces), Nodes, the
  metallb.io config kinds in the config namespace and the one legacy ConfigMap (field
  selector on its name); Secrets are only ``get`` for the names BGPPeers reference
  (:mod:`speaker.passwords`), so RBAC stays least-privilege;
* the ExaBGP driver on the bridge's unix socket; the config file it renders is where the
  ExaBGP container's launcher (:mod:`speaker.exabgp.launch`) waits for it;
* the protocols (:mod:`speaker.announcer`): BGP always (:mod:`speaker.bgp`, with Warning
  events on BGPPeers through :mod:`speaker.peer_events`), L2 with
  ``--l2-state``, the garp sidecar's desired-state file (:mod:`speaker.l2.announcer`), with
  ``nodeAssigned`` events through an :class:`~exalb.k8s.events.EventRecorder`;
* with ``--bfd-dir``, the node's bfdd (:mod:`speaker.bfd`): the sessions of BGPPeers with a
  ``bfdProfile``, rendered to ``--bfd-config`` and applied through ``vtysh``; MetalLB's
  ``metallb_bfd_*`` series on ``/metrics``;
* ``/metrics``, ``/healthz``, ``/readyz`` on ``--metrics-addr`` (the node address in a
  cluster: Prometheus, the kubelet's probes); those and ``/status`` (JSON: every
  LoadBalancer Service, peers, ASNs, Secret names) only on the loopback ``--status-addr``
  (``kubectl exalb`` reaches it with a port-forward through the API server) and on the unix
  socket ``--status-socket`` if given (see :mod:`exalb.obs`);
* SIGTERM/SIGINT: drain and withdraw every route, then exit (``--withdraw-on-exit``, the
  default: a node leaving must not blackhole; ``--drain-seconds`` of GRACEFUL_SHUTDOWN first,
  :mod:`speaker.drain`), or leave the routes with ExaBGP (``--keep-routes-on-exit``: a
  planned speaker restart; the restarted speaker converges by diff). A crash (SIGKILL)
  always leaves the routes in place. ``--done-file`` is written last: the ExaBGP container
  waits for it before ExaBGP is stopped (:func:`speaker.exabgp.launch.wait_done`), or
  ExaBGP's own SIGTERM would close the sessions before the drain is over.

Every flag has an environment fallback so a DaemonSet can set them from the downward API.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import REGISTRY

from exalb.flags import add_env_flag, env_bool
from exalb.k8s.client import KubeClient
from exalb.k8s.events import EventRecorder
from exalb.k8s.informer import Informer
from exalb.k8s.resources import CONFIG_KINDS, CONFIG_MAPS, ENDPOINT_SLICES, NODES, SERVICES
from exalb.obs import ObservabilityServer, configure_logging, is_loopback, split_address
from exalb.views import DRAIN_ON_CORDON_ANNOTATION
from speaker.app import Settings, Speaker
from speaker.bfd.control import BfdCollector, BfdController
from speaker.bgp import BGPAnnouncer
from speaker.cluster_store import ClusterStore
from speaker.decisions import Options
from speaker.exabgp.connection import unix_connector
from speaker.exabgp.driver import Driver, exabgp_validate
from speaker.l2.announcer import L2Announcer
from speaker.passwords import SecretPasswords
from speaker.peer_events import PeerEvents
from speaker.proxy_gate import ProxyGate

log = structlog.get_logger("exalb.speaker")

# Long enough for the peered router to move traffic (FRR: well under a second, measured in the
# lab) and for a route reflector in between, short enough that rolling a 100-node DaemonSet
# one node at a time adds minutes, not hours. The chart's default is the same.
DEFAULT_DRAIN_SECONDS = 5.0


# kube-proxy syncs at most once a second by default and within seconds on a large cluster;
# a hold this long covers that, and is short enough that a kube-proxy that never reports
# (hung, or counting wrongly) delays a path by seconds only (speaker.proxy_hold).
DEFAULT_PROXY_HOLD_SECONDS = 10.0
MAX_PROXY_HOLD_SECONDS = 300.0  # the chart's schema says the same


def _default_bridge(socket_path: str) -> list[str]:
    exe = Path(sys.executable)
    script = exe.with_name("exalb-exabgp-bridge")
    if script.exists():
        return [str(script), "--socket", socket_path]
    return [str(exe), "-m", "speaker.exabgp.bridge", "--socket", socket_path]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:  # size: flag list
    p = argparse.ArgumentParser(prog="exalb-speaker", description=__doc__.split("\n")[0])

    def flag(name: str, env_name: str, help: str = "", **kw: Any) -> None:
        add_env_flag(p, name, env_name, help=help, **kw)

    flag("--node-name", "NODE_NAME", "this node (required)")
    flag("--kubeconfig", "KUBECONFIG", "default: in-cluster config")
    flag("--namespace", "METALLB_NAMESPACE", "config namespace", default="metallb-system")
    flag("--config-map", "METALLB_CONFIGMAP", "legacy ConfigMap name", default="config")
    flag("--lb-class", "LB_CLASS", "only Services of this loadBalancerClass")
    flag("--ignore-exclude-lb", "IGNORE_EXCLUDE_LB", "ignore the "
         "exclude-from-external-load-balancers node label", action="store_true")  # fmt: skip
    flag("--exabgp-socket", "EXABGP_SOCKET", "the bridge's unix socket",
         default="/run/exalb/exabgp.sock")  # fmt: skip
    flag("--exabgp-config", "EXABGP_CONFIG", "where to render exabgp.conf; the ExaBGP "
         "launcher waits for it", default="/run/exalb/exabgp.conf")  # fmt: skip
    flag("--l2-state", "L2_STATE", "the garp sidecar's desired-state file; L2 mode is off "
         "when unset")  # fmt: skip
    flag("--exabgp", "EXABGP", "exabgp executable, used for `exabgp validate`",
         default=str(Path(sys.executable).with_name("exabgp")))  # fmt: skip
    p.add_argument("--no-validate", action="store_true", help="skip `exabgp validate`")
    flag("--bridge-command", "EXABGP_BRIDGE_COMMAND", "argv ExaBGP runs as its API process "
         "(space separated); default: exalb-exabgp-bridge --socket <exabgp-socket>")  # fmt: skip
    flag("--bfd-dir", "BFD_DIR", "directory of the node's bfdd vty socket (the bfd "
         "container's --dir); BFD is off when unset")  # fmt: skip
    flag("--bfd-config", "BFD_CONFIG", "where to render bfdd.conf; the bfdd launcher waits "
         "for it", default="/run/exalb/bfdd.conf")  # fmt: skip
    flag("--vtysh", "VTYSH", "FRR's vtysh, to configure and read bfdd")
    flag("--metrics-addr", "METRICS_ADDR", "host:port for /metrics, /healthz, /readyz",
         default="127.0.0.1:7473")  # fmt: skip
    flag("--status-addr", "STATUS_ADDR", "loopback host:port for /status (and the others); "
         "empty: none", default="127.0.0.1:7474")  # fmt: skip
    flag("--status-socket", "STATUS_SOCKET", "also serve /status and the others on this "
         "unix socket (0600), so host tools reach a speaker in another network namespace: "
         "`kubectl exalb --speaker NODE=unix://PATH`")  # fmt: skip
    flag("--status-refresh", "STATUS_REFRESH", "seconds: /status reads ExaBGP's sessions "
         "and adj-rib-out at most this often", type=float, default=1.0)  # fmt: skip
    flag("--log-level", "LOG_LEVEL", default="info")
    flag("--debounce", "DEBOUNCE", "at most this many seconds to collect changes, "
         "when a change comes this soon after the last computation (a burst)",
         type=float, default=0.02)  # fmt: skip
    flag("--drain-seconds", "DRAIN_SECONDS", "before a withdraw (exit, drain on cordon), "
         "announce the routes this long with GRACEFUL_SHUTDOWN (RFC 8326); 0 = withdraw at once",
         type=float, default=DEFAULT_DRAIN_SECONDS)  # fmt: skip
    flag("--drain-on-cordon", "DRAIN_ON_CORDON", "drain (then withdraw) while the node is "
         f"cordoned, unless its annotation {DRAIN_ON_CORDON_ANNOTATION} says \"false\"",
         action="store_true")  # fmt: skip
    flag("--proxy-hold-seconds", "PROXY_HOLD_SECONDS", "hold a Local Service's new path "
         "until kube-proxy's health check on this node counts a local endpoint, at most this "
         "long; 0 = never hold", type=float, default=DEFAULT_PROXY_HOLD_SECONDS)  # fmt: skip
    flag("--done-file", "DONE_FILE", "removed at start, written when the speaker has drained "
         "and withdrawn on exit (the ExaBGP container's preStop hook waits for it)")  # fmt: skip
    on_exit = p.add_mutually_exclusive_group()
    on_exit.add_argument(
        "--withdraw-on-exit",
        dest="withdraw_on_exit",
        action="store_true",
        default=not env_bool("KEEP_ROUTES_ON_EXIT"),
        help="SIGTERM withdraws every route before exiting (default)",
    )
    on_exit.add_argument(
        "--keep-routes-on-exit",
        dest="withdraw_on_exit",
        action="store_false",
        help="SIGTERM leaves the routes with ExaBGP (env KEEP_ROUTES_ON_EXIT=1)",
    )
    args = p.parse_args(argv)
    if not args.node_name:
        p.error("--node-name (or env NODE_NAME) is required")
    if args.status_addr and not is_loopback(split_address(args.status_addr)[0]):
        p.error(f"--status-addr {args.status_addr}: /status is served on loopback only "
                "(README, Security model)")  # fmt: skip
    if not 0.05 <= args.status_refresh <= 60:
        p.error("--status-refresh: between 0.05 and 60 seconds")
    if not 0 <= args.proxy_hold_seconds <= MAX_PROXY_HOLD_SECONDS:
        p.error(f"--proxy-hold-seconds: between 0 and {MAX_PROXY_HOLD_SECONDS:g} seconds")
    return args


def _bgp(
    args: argparse.Namespace, kube: KubeClient, store: ClusterStore, events: EventRecorder
) -> BGPAnnouncer:
    """ExaBGP's driver on the bridge's socket, and the node's bfdd when ``--bfd-dir``."""
    bridge = (
        args.bridge_command.split() if args.bridge_command else _default_bridge(args.exabgp_socket)
    )
    config_path = Path(args.exabgp_config)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    driver = Driver(
        unix_connector(args.exabgp_socket),
        config_path=config_path,
        validate=None if args.no_validate else exabgp_validate(args.exabgp),
        reconnect_delay=0.2,
    )
    bfd = None
    if args.bfd_dir:
        bfd = BfdController(
            socket_dir=Path(args.bfd_dir), config_path=Path(args.bfd_config), vtysh=args.vtysh
        )
        REGISTRY.register(BfdCollector(bfd))
    return BGPAnnouncer(
        driver,
        bridge_argv=bridge,
        config_path=config_path,
        passwords=SecretPasswords(kube),
        events=PeerEvents(events, store.peer_ref, args.node_name),
        bfd=bfd,
        drain_seconds=max(0.0, args.drain_seconds),
        drain_on_cordon=args.drain_on_cordon,
        proxy_gate=ProxyGate(args.proxy_hold_seconds) if args.proxy_hold_seconds > 0 else None,
    )


def build(args: argparse.Namespace) -> tuple[Speaker, list[Informer], KubeClient]:
    kube = KubeClient(args.kubeconfig)
    settings = Settings(
        node_name=args.node_name,
        namespace=args.namespace,
        options=Options(
            ignore_exclude_lb=args.ignore_exclude_lb, load_balancer_class=args.lb_class or None
        ),
        debounce=args.debounce,
        withdraw_on_exit=args.withdraw_on_exit,
        status_refresh=args.status_refresh,
    )
    informers: list[Informer] = []

    def all_synced() -> bool:
        return all(i.synced.is_set() for i in informers)

    store = ClusterStore(args.node_name)
    events = EventRecorder(kube, "exalb-speaker", args.node_name)
    bgp = _bgp(args, kube, store, events)
    l2 = None
    if args.l2_state:
        l2 = L2Announcer(
            args.node_name, args.l2_state, events=events, service_ref=store.service_ref
        )
    speaker = Speaker(settings, store, bgp, l2, synced=all_synced)
    store.on_change = speaker.notify
    if bgp.proxy_gate is not None:
        bgp.proxy_gate.on_change = speaker.notify
    ns = args.namespace
    informers += [
        Informer(kube, SERVICES, store.on_service),
        Informer(kube, ENDPOINT_SLICES, store.on_endpoint_slice),
        Informer(kube, NODES, store.on_node),
        Informer(
            kube,
            CONFIG_MAPS,
            store.on_config,
            namespace=ns,
            field_selector=f"metadata.name={args.config_map}",
        ),
        *(Informer(kube, kind, store.on_config, namespace=ns) for kind in CONFIG_KINDS),
    ]
    return speaker, informers, kube


async def _serve(speaker: Speaker, informers: list[Informer], done_file: Path | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(speaker.run())
    for inf in informers:
        inf.start()

    async def when_synced() -> None:
        while not speaker.synced():
            await asyncio.sleep(0.02)
        log.info("caches_synced")
        speaker.notify("synced")

    synced = asyncio.create_task(when_synced())
    await stop.wait()
    log.info("stopping", withdraw=speaker.settings.withdraw_on_exit)
    synced.cancel()
    await speaker.stop()
    for inf in informers:
        inf.stop()
    runner.cancel()
    if done_file is not None:
        _write_done(done_file)
    return 0


def _write_done(path: Path) -> None:
    try:
        path.write_text("done\n")
    except OSError as exc:  # the ExaBGP container then waits for its preStop timeout
        log.warning("done_file_not_written", path=str(path), error=str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    speaker, informers, kube = build(args)
    server = ObservabilityServer(
        args.metrics_addr,
        private_endpoints={"/status": speaker.status_body},
        private_address=args.status_addr or None,
        ready=speaker.ready,
        unix_socket=args.status_socket,
    ).start()
    log.info(
        "speaker_starting",
        node=args.node_name,
        namespace=args.namespace,
        exabgp_socket=args.exabgp_socket,
        exabgp_config=args.exabgp_config,
        metrics=args.metrics_addr,
        status=args.status_addr or None,
    )
    done_file = Path(args.done_file) if args.done_file else None
    if done_file is not None:
        done_file.unlink(missing_ok=True)  # a restarted speaker container: not done yet
    try:
        return asyncio.run(_serve(speaker, informers, done_file))
    finally:
        server.stop()
        kube.close()


if __name__ == "__main__":
    sys.exit(main())
