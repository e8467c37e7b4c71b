"""The demo's plan: which topology, chart, names and address ranges it uses."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = REPO / "containerlab" / "k8s-bgp" / "k8s-bgp.clab.yml"
CHART = REPO / "charts" / "exalb"
LEGACY_L2_EXAMPLE = REPO / "examples" / "legacy" / "layer2-ranges.yaml"
BIN = Path(sys.executable).parent
NODE_NAMES = ("n1", "n2", "n3")
ROUTER, CLIENT, FAILING = "r1", "c", "n2"
CONFIG_NS, APP_NS, SERVICE = "metallb-system", "demo", "web"
POOL = "203.0.113.10-203.0.113.20"
#: The seed example's range, and where the lab puts it (on the nodes' LAN).
L2_FROM, L2_TO = "192.168.1.240-192.168.1.250", "198.51.100.240-198.51.100.250"
L2_SERVICES = ("web-l2-http", "web-l2-alt")
SHARING_KEY = "web-l2"
