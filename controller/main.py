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
from typing import Any

import structlog

from controller.app import Controller
from exalb.flags import add_env_flag
from exalb.k8s.client import ApiError, KubeClient
from exalb.k8s.events import EventRecorder
from exalb.k8s.leader import LeaderElector
from exalb.obs import ObservabilityServer, configure_logging

log = structlog.get_logger("exalb.controller")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="exalb-controller", description=__doc__.splitlines()[0])

    def flag(name: str, env_name: str, help: str = "", **kw: Any) -> None:
        add_env_flag(p, name, f"EXALB_{env_name}", help=help, **kw)

    flag("--kubeconfig", "KUBECONFIG", "kubeconfig path (default: in-cluster, then "
         "~/.kube/config)", default=os.environ.get("KUBECONFIG"))  # fmt: skip
    flag("--namespace", "NAMESPACE", "namespace of the config objects and the legacy "
         "ConfigMap", default="metallb-system")  # fmt: skip
    flag("--config-map", "CONFIG_MAP", "name of the legacy MetalLB ConfigMap (read when no "
         "CRDs exist)", default="config")  # fmt: skip
    flag("--lb-class", "LB_CLASS", "serve only Services with this loadBalancerClass "
         "(default: only Services without a class)")  # fmt: skip
    flag("--metrics-addr", "METRICS_ADDR", default="127.0.0.1:7472")
    flag("--log-level", "LOG_LEVEL", default="info")
    flag("--leader-elect", "LEADER_ELECT", action=argparse.BooleanOptionalAction, default=True)
    flag("--lease-name", "LEASE_NAME", default="exalb-controller")
    flag("--identity", "POD_NAME", "leader-election identity",
         default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}")  # fmt: skip
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
        args.metrics_addr, ready=lambda: leading.is_set() and controller.reconciler.config_ready
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
