"""The speaker's ``/status`` document: the contract between the speaker and ``kubectl exalb``.

The speaker builds it (:func:`speaker.status.status_document`), the CLI joins it with the
controller's view (:mod:`exalbctl.report`); both import the shapes and values from here, so a
key or a state renamed on one side is a type error on the other, not a silent "unknown".

Plain JSON types only (it goes over HTTP); ``NotRequired`` keys are omitted when empty.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, TypedDict


class OnWire(StrEnum):
    """Where a route a Service wants stands against ExaBGP's adj-rib-out."""

    SENT = "sent"  # held in the adj-rib-out for an established session
    HELD = "held"  # in the adj-rib-out, but the session is not established
    MISSING = "missing"  # wanted, not in the adj-rib-out
    DIFFERS = "differs"  # in the adj-rib-out with other attributes than wanted
    UNKNOWN = "unknown"  # ExaBGP was not asked or did not answer


class Reason(StrEnum):
    """Why this node does not announce a Service: MetalLB's words where MetalLB has one."""

    NOT_LOAD_BALANCER = "notLoadBalancer"
    LOAD_BALANCER_CLASS = "loadBalancerClass"  # another loadBalancerClass than the speaker's
    NO_IP_ALLOCATED = "noIPAllocated"
    IP_NOT_ALLOWED = "ipNotAllowed"  # no pool holds the Service's IPs
    NOT_OWNER = "notOwner"
    NODE_NOT_SELECTED = "nodeNotSelected"  # no L2Advertisement of the pool selects the node
    NO_MATCHING_ADVERTISEMENT = "noMatchingAdvertisement"
    CONFLICTING_ADVERTISEMENTS = "conflictingAdvertisements"  # different LOCAL_PREF, one peer
    NODE_NETWORK_UNAVAILABLE = "nodeNetworkUnavailable"
    NODE_EXCLUDED = "nodeLabeledExcludeBalancers"
    NO_SPEAKER = "noSpeaker"
    NO_LOCAL_ENDPOINTS = "noLocalEndpoints"
    NO_ENDPOINTS = "noEndpoints"
    NO_PEERS = "noPeers"
    # exalb ADD: a Local Service's new path waits until kube-proxy here has its local
    # endpoints in its rules (speaker.proxy_hold)
    PROXY_NOT_READY = "proxyNotReady"
    NOT_A_CANDIDATE = "notACandidate"  # node unknown to the L2 election
    SHARED_IP_WITH_SERVICE_SELECTOR = "sharedIPWithServiceSelector"


#: Reasons meaning "not a Service exalb load-balances" rather than "not here".
NOT_OURS = (Reason.NOT_LOAD_BALANCER, Reason.LOAD_BALANCER_CLASS)


class RouteAttributes(TypedDict, total=False):
    """Path attributes both a wanted route and an adj-rib-out entry carry (set ones only)."""

    localPref: int
    med: int
    communities: list[str]
    largeCommunities: list[str]
    extendedCommunities: list[str]  # e.g. the link bandwidth "bandwidth:64501:375000"


class WantedRoute(RouteAttributes):
    prefix: str
    peer: str
    peerAddress: str | None
    nextHop: str
    onWire: OnWire


class AdjRibEntry(RouteAttributes):
    prefix: str
    nextHop: str | None


class ServiceL2(TypedDict):
    """One Service's L2 decision on this node."""

    announce: bool
    reason: str | None
    owner: str | None


class ServiceEntry(TypedDict):
    """One Service: does this node announce it (BGP), why not, and the routes it wants."""

    service: str  # namespace/name
    announce: bool
    reason: NotRequired[str]  # MetalLB's reason, exactly when announce is false
    pool: NotRequired[str]
    advertisements: NotRequired[list[str]]
    routes: NotRequired[list[WantedRoute]]
    warnings: NotRequired[list[str]]
    l2: NotRequired[ServiceL2]  # only for a Service with an L2-advertised IP


class L2IP(TypedDict):
    """One L2 IP: the election, this node's place in it, and what its sidecar answers."""

    ip: str
    services: list[str]
    owner: str | None
    rank: int | None
    candidates: list[str]
    answering: bool | None  # None: L2 off, or the sidecar has not reported
    reason: str | None


class SidecarReport(TypedDict):
    generation: int
    peers: dict[str, bool]
    # the links the sidecar answers on (present and not excluded); absent: not reported
    interfaces: NotRequired[list[str]]


class L2Section(TypedDict):
    stateFile: str | None  # None: L2 is off on this speaker
    generation: int | None
    sidecar: SidecarReport | None
    ips: list[L2IP]


class ConfigSection(TypedDict):
    loaded: bool  # a good config was seen at least once
    stale: bool  # the latest config is invalid; the last good one is in force
    source: str
    problems: list[str]


class ExaBGPSection(TypedDict):
    connected: bool
    error: str | None
    # seconds since the wire view (sessions, adj-rib-out) was read from ExaBGP: /status
    # answers from a view the speaker refreshes at most once a second (None: never read)
    wireAgeSeconds: NotRequired[float | None]


class PeerEntry(TypedDict):
    name: str
    address: str
    myASN: int
    peerASN: int | None
    configured: bool  # rendered into exabgp.conf (False: a render problem dropped it)


class SessionEntry(TypedDict):
    peer: str | None
    address: str
    state: str  # "established" or the FSM state in lower case
    fsm: str
    upSeconds: int | None
    localAddress: str | None
    peerASN: int | None
    holdTime: int | None
    families: list[str]
    gracefulRestart: bool | None
    # ExaBGP's reason the last time this session went down ("notification received (2,2)",
    # "closing connection", ...), kept after it came back up; absent: never went down
    lastDownReason: NotRequired[str]


class Summary(TypedDict):
    services: int
    announced: int
    routes: int


class DrainSection(TypedDict):
    """A graceful drain in progress (GRACEFUL_SHUTDOWN announced, then withdrawn)."""

    reason: str  # "stopping" | "cordoned"
    phase: str  # "gshut" (announced with GRACEFUL_SHUTDOWN) | "withdrawn"
    seconds: float  # the drain time
    withdrawIn: float  # seconds until the withdraw (0 once withdrawn)


class SpeakerSection(TypedDict):
    recomputes: int
    lastRecomputeSeconds: float | None
    configApplied: bool  # ExaBGP runs the latest decision (less the neighbors it refuses)
    driverConnections: int
    drain: NotRequired[DrainSection | None]


class BfdSessionEntry(TypedDict):
    """One BFD session of the node's bfdd (BGPPeer ``bfdProfile``)."""

    address: str  # the peer's address (the BGP session's)
    localAddress: str | None
    multihop: bool
    state: str  # up, down, init, shutdown, unknown
    diagnostic: str
    upSeconds: int | None
    downSeconds: int | None
    receiveInterval: int | None  # ms, this node's
    transmitInterval: int | None
    detectMultiplier: int | None
    remoteReceiveInterval: int | None
    remoteTransmitInterval: int | None
    remoteDetectMultiplier: int | None


class BfdSection(TypedDict):
    sessions: list[BfdSessionEntry]
    error: str | None  # why bfdd could not be read
    problems: list[str]  # BGPPeers left without a BFD session


class StatusDocument(TypedDict):
    node: str
    config: ConfigSection
    exabgp: ExaBGPSection
    peers: list[PeerEntry]
    renderProblems: list[str]
    sessions: list[SessionEntry] | None  # None: ExaBGP not asked or not answering
    adjRibOut: dict[str, list[AdjRibEntry]] | None  # peer address -> entries
    summary: Summary
    warnings: list[str]
    services: list[ServiceEntry]
    l2: L2Section
    speaker: NotRequired[SpeakerSection]
    bfd: NotRequired[BfdSection]  # only when the speaker runs bfdd
