"""Hold a Local Service's new path until kube-proxy on this node can serve it.

Why: with ``externalTrafficPolicy: Local`` a node forwards only to its own pods, and the
speaker and kube-proxy follow the same EndpointSlice. The speaker announces within
milliseconds; kube-proxy writes its rules on its next sync (iptables mode: at most once per
``minSyncPeriod``, 1 s by default, and seconds on a large cluster). Until then the router
hashes new connections to a node that drops them: in the lab every new path answered only
0.3 to 1.8 s after the router had it. MetalLB announces as soon as the EndpointSlice says
ready and has the same window.

kube-proxy says when it is done: its per-Service health check (``spec.healthCheckNodePort``,
the one cloud load balancers probe) answers with ``localEndpoints``, which kube-proxy updates
only after its rules are in the kernel (``syncProxyRules``: the restore first, then the
health server). So a *new* path is held while that check answers and counts 0 local
endpoints, for at most ``max_hold`` seconds.

The rules, chosen so that the hold can only delay an announcement, never withdraw one or
keep one away for good:

* **Only new paths.** A Service announced from this node is never held again (a kube-proxy
  restart does not withdraw it). At the speaker's first computation every path counts as in
  force: after a restart ExaBGP may announce them still, and holding them would withdraw.
* **Held only while kube-proxy says "not yet".** That is its answer "0 local endpoints",
  and a refused connection: kube-proxy opens a new Service's port on its next sync, and the
  Service's first path can come sooner. Until a check on this node has had an answer, a
  refusal holds for :data:`REFUSED_GRACE` at most (a proxy without these checks then costs
  a new path that long, never more). A check that cannot be there (no
  ``healthCheckNodePort``) or that fails otherwise (timed out, not kube-proxy's answer)
  releases the path at once, which is what MetalLB does.
* **At most** ``max_hold`` **seconds**; then the path is announced anyway, with a warning:
  a kube-proxy that lags that long is a problem to see, and a path that may work beats one
  never announced.
* **BGP only.** The L2 election must come out the same on every node; a hold that one node
  sees and the others do not would break it.

Pure: :func:`hold` takes the decisions, the checks' verdicts and the time, and returns the
decisions to apply with the next state; :mod:`speaker.proxy_gate` runs the checks.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from exalb.contracts.speaker_status import Reason
from exalb.views import NodeView, ServiceView
from speaker.decisions import Announcements, ServiceDecision, merge_routes

#: Bytes of a health-check answer read at most (kube-proxy's is about 200).
MAX_ANSWER = 4096
#: Seconds a refused check holds a path while no check on this node was ever answered:
#: twice kube-proxy's default minSyncPeriod (1 s), after which it listens for a new Service.
REFUSED_GRACE = 2.0


class Verdict(enum.Enum):
    """What one health check said."""

    READY = "ready"  # kube-proxy counts a local endpoint in its rules
    NOT_READY = "notReady"  # kube-proxy answered: 0 local endpoints
    REFUSED = "refused"  # nothing listens (yet) on the Service's health-check port
    UNAVAILABLE = "unavailable"  # no kube-proxy answer for this Service: nothing to wait for


@dataclass(frozen=True)
class Check:
    """One health check to make: kube-proxy's port for ``service`` on this node."""

    service: str  # namespace/name
    host: str
    port: int


@dataclass(frozen=True)
class HoldState:
    """What the hold remembers between computations."""

    started: bool = False  # a first computation took place
    in_force: frozenset[str] = frozenset()  # Local Services whose path here is not held
    # kube-proxy's health checks answered here once: a refused check is then "not yet"
    answered: bool = False
    pending: tuple[tuple[str, float], ...] = ()  # held Service, when it was first wanted


@dataclass(frozen=True)
class HoldResult:
    announcements: Announcements
    state: HoldState
    checks: tuple[Check, ...] = ()  # what to ask kube-proxy now
    # (Service, verdict, seconds held); None: max_hold ran out; REFUSED: REFUSED_GRACE did
    released: tuple[tuple[str, Verdict | None, float], ...] = ()
    deadline: float | None = None  # when the first held path runs out of time

    @property
    def held(self) -> tuple[str, ...]:
        """The Services whose new path is held (the ones kube-proxy is asked about)."""
        return tuple(c.service for c in self.checks)


def outcome(released_by: Verdict | None) -> str:
    """How a held path was released, as the metrics say it: the verdict, or ``expired``."""
    return released_by.value if released_by is not None else "expired"


def hold(
    ann: Announcements,
    services: Iterable[ServiceView],
    node: NodeView,
    state: HoldState,
    verdicts: Mapping[str, Verdict],
    now: float,
    max_hold: float,
) -> HoldResult:
    """The decisions with every new, not yet served Local path held (module docstring)."""
    local = {s.key: s for s in services if s.traffic_policy == "Local"}
    wanted = {d.service for d in ann.decisions if d.announce and d.service in local}
    answered = state.answered or any(
        v in (Verdict.READY, Verdict.NOT_READY) for v in verdicts.values()
    )
    if not state.started:
        return HoldResult(ann, HoldState(True, frozenset(wanted), answered))
    in_force = set(state.in_force & wanted)
    first_wanted = dict(state.pending)
    waiting: dict[str, float] = {}  # held Service -> when its path was first wanted
    deadline: float | None = None
    checks: list[Check] = []
    released: list[tuple[str, Verdict | None, float]] = []
    host = str(node.addresses[0]) if node.addresses else None
    for key in sorted(wanted - in_force):
        port = local[key].health_check_node_port
        first = first_wanted.get(key, now)
        verdict = verdicts.get(key)
        graced = verdict is Verdict.REFUSED and not answered and max_hold > REFUSED_GRACE
        limit = first + (REFUSED_GRACE if graced else max_hold)
        if port is None or host is None or verdict in (Verdict.READY, Verdict.UNAVAILABLE):
            released.append((key, verdict or Verdict.UNAVAILABLE, now - first))
        elif now >= limit:
            released.append((key, verdict if graced else None, now - first))
        else:
            waiting[key] = first
            deadline = limit if deadline is None else min(deadline, limit)
            checks.append(Check(key, host, port))
    in_force.update(key for key, _, _ in released)
    return HoldResult(
        announcements=_without(ann, waiting.keys(), max_hold) if waiting else ann,
        state=HoldState(True, frozenset(in_force), answered, tuple(sorted(waiting.items()))),
        checks=tuple(checks),
        released=tuple(released),
        deadline=deadline,
    )


def _without(ann: Announcements, held: Collection[str], max_hold: float) -> Announcements:
    """``ann`` with the held Services' decisions turned into ``proxyNotReady``."""
    decisions = tuple(_held(d, max_hold) if d.service in held else d for d in ann.decisions)
    return dataclasses.replace(
        ann, decisions=decisions, routes=merge_routes(r for d in decisions for r in d.routes)
    )


def _held(d: ServiceDecision, max_hold: float) -> ServiceDecision:
    return dataclasses.replace(
        d,
        announce=False,
        reason=Reason.PROXY_NOT_READY,
        routes=frozenset(),
        warnings=(
            *d.warnings,
            "kube-proxy on this node does not serve the local endpoints yet (its health "
            f"check counts 0); the path waits for it, at most {max_hold:g} s",
        ),
    )


def verdict_of(answer: bytes, service: str) -> Verdict:
    """Read kube-proxy's health-check answer (an HTTP/1.x response) for ``service``.

    The count is read from the body, whatever the status code: kube-proxy answers 503 with
    a count above 0 when its own health is stale, and its rules do hold those endpoints.
    Anything that is not kube-proxy's answer about this very Service is ``UNAVAILABLE``.
    """
    head, sep, body = answer[:MAX_ANSWER].partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return Verdict.UNAVAILABLE
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: 4 KiB of "[" nests too deep
        return Verdict.UNAVAILABLE
    if not isinstance(doc, dict):
        return Verdict.UNAVAILABLE
    about = doc.get("service")
    count = doc.get("localEndpoints")
    namespace, _, name = service.partition("/")
    if (
        not isinstance(about, dict)
        or (about.get("namespace"), about.get("name")) != (namespace, name)
        or not isinstance(count, int)
        or isinstance(count, bool)
    ):
        return Verdict.UNAVAILABLE
    return Verdict.READY if count > 0 else Verdict.NOT_READY
