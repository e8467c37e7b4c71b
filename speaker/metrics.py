"""The speaker's own Prometheus metrics (the driver's ``exalb_exabgp_*`` sit next to them).

Why these: ``config_stale`` is the alert for "someone applied a broken config and the last
good one is still in force"; ``announced_prefixes`` per peer and ``services`` per decision
answer "what does this node send" without scraping ``/status``; the recompute histogram
shows the cost of a cluster change on this node. ``l2_owned`` is this node's *election*
result per L2 IP (what Kubernetes says; the sidecar's ``exalb_garp_*`` metrics say what it
answers after data-path failover); ``l2_state_writes`` counts desired-state files handed to
the sidecar (only real changes are written). ``draining`` shows a graceful drain
(:mod:`speaker.drain`) by reason. ``proxy_held`` and ``proxy_holds`` show new Local paths
waiting for kube-proxy (:mod:`speaker.proxy_hold`); an ``expired`` outcome is a kube-proxy
that still counted 0 local endpoints when the hold ran out.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONFIG_STALE = Gauge(
    "exalb_speaker_config_stale_bool",
    "1 when the latest config is invalid and the last good one is still in force",
)
CONFIG_PROBLEMS = Gauge(
    "exalb_speaker_config_problems", "problems in the latest config", ["severity"]
)
RENDER_PROBLEMS = Gauge(
    "exalb_speaker_render_problems", "BGPPeer settings ExaBGP cannot honour", ["severity"]
)
ANNOUNCED_PREFIXES = Gauge(
    "exalb_speaker_announced_prefixes", "prefixes this node wants announced, per peer", ["peer"]
)
SERVICES = Gauge(
    "exalb_speaker_services", "Services by this node's decision (announce or reason)", ["decision"]
)
RECOMPUTES = Counter("exalb_speaker_recomputes", "decision recomputes")
RECOMPUTE_SECONDS = Histogram(
    "exalb_speaker_recompute_seconds",
    "time to decide, render and hand the result to the driver",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONFIG_APPLY_ERRORS = Counter(
    "exalb_speaker_config_apply_errors", "rendered ExaBGP configs refused or not reloaded"
)
SECRET_ERRORS = Counter("exalb_speaker_secret_errors", "passwordSecret lookups that failed")
PASSWORD_STALE = Gauge(
    "exalb_speaker_password_secret_stale",
    "1 while a peer's password Secret cannot be read and its last known password is used",
    ["peer"],
)
CONFIG_APPLIED = Gauge(
    "exalb_speaker_exabgp_config_applied_bool",
    "1 when ExaBGP runs the config of the latest decision (less the neighbors it refuses, "
    "each reported), 0 while an older config stays in force",
)
DRAINING = Gauge(
    "exalb_speaker_draining",
    "1 while this node announces its routes with GRACEFUL_SHUTDOWN, 2 once drained (withdrawn)",
    ["reason"],
)
L2_OWNED = Gauge(
    "exalb_speaker_l2_owned",
    "1 when this node is the elected L2 owner of the IP, 0 when it is not",
    ["ip"],
)
L2_STATE_WRITES = Counter(
    "exalb_speaker_l2_state_writes", "L2 desired-state documents written for the garp sidecar"
)
L2_STATE_GENERATION = Gauge(
    "exalb_speaker_l2_state_generation", "generation of the last L2 desired state written"
)
PROXY_HELD = Gauge(
    "exalb_speaker_proxy_held",
    "Local Services whose new path here waits for kube-proxy to serve the local endpoints",
)
PROXY_HOLDS = Counter(
    "exalb_speaker_proxy_holds",
    "new Local paths released: kube-proxy ready, no health check to wait for (unavailable), "
    "or the hold ran out (expired)",
    ["outcome"],
)
PROXY_HOLD_SECONDS = Histogram(
    "exalb_speaker_proxy_hold_seconds",
    "how long a new Local path waited for kube-proxy before it was announced",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
