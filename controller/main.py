"""``exalb-controller``: flags, logging, metrics, leader election, then the reconcile loop.

Every flag has an environment fallback (``EXALB_<FLAG>``) so the Helm chart can set them
from values without templating command lines.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import structlog

from controller.app import Controller
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.events import EventRecorder
from exalb.k8s.leader import LeaderElector
from exalb.obs import ObservabilityServer, configure_logging

log = structlog.get_logger("exalb.controller")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"EXALB_{name}", default)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="exalb-controller", description=__doc__.splitlines()[0])
    p.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG", os.environ.get("KUBECONFIG")),
        help="kubeconfig path (default: in-cluster, then ~/.kube/config)",
    )
    p.add_argument(
        "--namespace",
        default=_env("NAMESPACE", "metallb-system"),
        help="namespace of the config objects and the legacy ConfigMap",
    )
    p.add_argument(
        "--config-map",
        default=_env("CONFIG_MAP", "config"),
        help="name of the legacy MetalLB ConfigMap (read when no CRDs exist)",
    )
    p.add_argument(
        "--lb-class",
        default=_env("LB_CLASS") or None,
        help="serve only Services with this loadBalancerClass "
        "(default: only Services without a class)",
    )
    p.add_argument("--metrics-addr", default=_env("METRICS_ADDR", "127.0.0.1:7472"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=(_env("LEADER_ELECT", "true") or "true").lower() == "true",
    )
    p.add_argument("--lease-name", default=_env("LEASE_NAME", "exalb-controller"))
    p.add_argument(
        "--identity",
        default=_env("POD_NAME", os.environ.get("POD_NAME"))
        or f"{socket.gethostname()}-{os.getpid()}",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        kube = KubeClient(args.kubeconfig)
    except ApiError as exc:
        log.error("cannot reach Kubernetes", error=str(exc))
        return 2
    controller = Controller(
        kube,
        namespace=args.namespace,
        config_map=args.config_map,
        lb_class=args.lb_class,
        recorder=EventRecorder(kube, "exalb-controller", args.identity),
    )
    leading = threading.Event()
    server = ObservabilityServer(
        args.metrics_addr, ready=lambda: leading.is_set() and controller.config_ready.is_set()
    ).start()
    log.info(
        "started",
        namespace=args.namespace,
        lb_class=args.lb_class,
        metrics=f"{args.metrics_addr}",
        leader_elect=args.leader_elect,
    )
    elector: LeaderElector | None = None
    if args.leader_elect:
        elector = LeaderElector(kube, args.namespace, args.lease_name, args.identity)
        threading.Thread(
            target=elector.run, args=(stop, leading), daemon=True, name="leader-election"
        ).start()
    else:
        leading.set()
    try:
        controller.run(stop, leading)
    finally:
        server.stop()
        if elector is not None and elector.is_leader.is_set():
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
