"""Wire format of the sidecar-to-sidecar liveness probes, authenticated (pure).

A probe is one small UDP datagram between node addresses on the segment; the receiving
*sidecar* (not the kernel) answers with an ack. That is the point: a node whose kernel
still answers ARP for its own address but whose sidecar died must count as dead, and a
node cut off the segment must too. UDP through the kernel is used instead of raw frames
because it needs no capability, is routed to the right interface by the kernel, and shows
up plainly in ``tcpdump port 7947``.

Why authenticated. These messages decide who answers ARP/NDP for a Service IP: a forged BYE
makes a standby take over while the owner keeps answering (split brain), a forged ack keeps
a dead owner "alive". ARP itself is unauthenticated, but an attacker who poisons one
client's cache affects that client; one who steers the failover affects every client of
the IP, for as long as the sidecars believe it. So every message carries an HMAC-SHA256
tag (truncated to 128 bits, RFC 2104 §5) over the whole datagram, keyed with a secret
that only the sidecars mount (the chart's ``garp-key`` Secret). Freshness (sequence
numbers, challenge/response) is checked by :mod:`garp.peers`, which sees messages only
after their tag verified.

Layout (network byte order)::

    magic "XLB2" | kind u8 | flags u8 | name_len u8 | ntags u8
    | session u64 | seq u64 | echo_session u64 | echo_seq u64 | name
    | ntags x (key_id 4 bytes | tag 16 bytes)

* ``kind``: PROBE (please ack), ACK, BYE (sender's sidecar is leaving now: take over).
* ``flags``: COVERING - "I am currently answering an IP for which *you* rank above me".
  The rightful owner uses it to notice, after a partition heals, that a standby took over
  its IPs and that clients must be re-pointed (it re-sends its gratuitous burst).
* ``session``: random per sidecar process; ``seq``: strictly increasing over every message
  that process sends. Together they let a receiver drop replays and tell a restarted
  sidecar (new session) from a late message of the one that left.
* ``echo_session``/``echo_seq``: in an ACK, the session and seq of the probe it answers
  (the challenge); zero otherwise. A recorded ack therefore proves nothing later.
* tags: one per key the sender holds (one normally, two while a key is being rotated), each
  with the key's id (:func:`key_id`), so a receiver holding either key accepts the message
  and rotation needs no ordering between nodes. The tags cover every byte before them.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Literal

MAGIC = b"XLB2"
PROBE = 1
ACK = 2
BYE = 3
COVERING = 0x01
DEFAULT_PORT = 7947

_HDR = struct.Struct("!4sBBBBQQQQ")
_TAG = 16
_KID = 4
MAX_NAME = 253
MAX_KEYS = 2
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096
MAX_DATAGRAM = _HDR.size + MAX_NAME + MAX_KEYS * (_KID + _TAG)

#: Why :func:`decode` dropped a datagram (also the ``reason`` label of the metric).
Malformed = Literal["malformed", "unauthenticated"]


def key_id(key: bytes) -> bytes:
    """A public 4-byte name for a key (a hash prefix: reveals nothing useful about it)."""
    return hashlib.sha256(b"exalb-garp key id\x00" + key).digest()[:_KID]


@dataclass(frozen=True)
class Keyring:
    """The keys this sidecar signs with and accepts (1, or 2 during a rotation)."""

    keys: tuple[bytes, ...]
    _by_id: dict[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise ValueError(f"want 1 to {MAX_KEYS} keys, got {len(self.keys)}")
        for k in self.keys:
            if not MIN_KEY_BYTES <= len(k) <= MAX_KEY_BYTES:
                raise ValueError(
                    f"a key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {len(k)}"
                )
        object.__setattr__(self, "_by_id", {key_id(k): k for k in self.keys})

    @property
    def ids(self) -> tuple[str, ...]:
        """Key ids in hex, for logs (which key is in use, never the key)."""
        return tuple(key_id(k).hex() for k in self.keys)

    def __repr__(self) -> str:  # never print a key
        return f"Keyring(ids={self.ids})"


@dataclass(frozen=True)
class Message:
    kind: int
    node: str
    session: int
    seq: int = 0
    flags: int = 0
    echo_session: int = 0
    echo_seq: int = 0

    @property
    def covering(self) -> bool:
        return bool(self.flags & COVERING)


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, "sha256")[:_TAG]


def encode(msg: Message, keys: Keyring) -> bytes:
    name = msg.node.encode()
    if len(name) > MAX_NAME:
        raise ValueError("node name too long")
    body = (
        _HDR.pack(
            MAGIC,
            msg.kind,
            msg.flags,
            len(name),
            len(keys.keys),
            msg.session,
            msg.seq,
            msg.echo_session,
            msg.echo_seq,
        )
        + name
    )
    return body + b"".join(key_id(k) + _tag(k, body) for k in keys.keys)


def decode(data: bytes, keys: Keyring) -> Message | Malformed:
    """The message, or why it was dropped; never raises on input.

    The tag is checked before anything in the message is interpreted beyond its framing.
    """
    if len(data) < _HDR.size:
        return "malformed"
    magic, kind, flags, nlen, ntags, session, seq, esession, eseq = _HDR.unpack_from(data)
    end = _HDR.size + nlen
    if (
        magic != MAGIC
        or kind not in (PROBE, ACK, BYE)
        or not 1 <= ntags <= MAX_KEYS
        or len(data) != end + ntags * (_KID + _TAG)
    ):
        return "malformed"
    body = data[:end]
    ok = False
    for i in range(ntags):
        at = end + i * (_KID + _TAG)
        key = keys._by_id.get(data[at : at + _KID])
        if key is not None and hmac.compare_digest(
            _tag(key, body), data[at + _KID : at + _KID + _TAG]
        ):
            ok = True
            break
    if not ok:
        return "unauthenticated"
    try:
        node = data[_HDR.size : end].decode()
    except UnicodeDecodeError:
        return "malformed"
    return Message(kind, node, session, seq, flags, esession, eseq)
