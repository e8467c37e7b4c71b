"""Wire format of the sidecar-to-sidecar liveness probes (pure).

A probe is one small UDP datagram between node addresses on the segment; the receiving
*sidecar* (not the kernel) answers with an ack. That is the point: a node whose kernel
still answers ARP for its own address but whose sidecar died must count as dead, and a
node cut off the segment must too. UDP through the kernel is used instead of raw frames
because it needs no capability, is routed to the right interface by the kernel, and shows
up plainly in ``tcpdump port 7947``.

Layout (network byte order, 16 bytes + node name)::

    magic "XLB1" | kind u8 | flags u8 | name_len u16 | session u32 | seq u32 | name

* ``kind``: PROBE (please ack), ACK, BYE (sender's sidecar is leaving now: take over).
* ``flags``: COVERING - "I am currently answering an IP for which *you* rank above me".
  The rightful owner uses it to notice, after a partition heals, that a standby took over
  its IPs and that clients must be re-pointed (it re-sends its gratuitous burst).
* ``session``: random per sidecar process, so a BYE from a dying process is never undone
  by a late ack from the same process, while a restarted sidecar (new session) is alive.

There is no authentication: whoever can send frames on the segment can already answer ARP
for any address, so the probes do not widen the trust boundary (same as ARP/NDP).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"XLB1"
PROBE = 1
ACK = 2
BYE = 3
COVERING = 0x01
DEFAULT_PORT = 7947

_HDR = struct.Struct("!4sBBHII")
MAX_NAME = 253


@dataclass(frozen=True)
class Message:
    kind: int
    node: str
    session: int
    seq: int = 0
    flags: int = 0

    @property
    def covering(self) -> bool:
        return bool(self.flags & COVERING)


def encode(msg: Message) -> bytes:
    name = msg.node.encode()
    if len(name) > MAX_NAME:
        raise ValueError("node name too long")
    return _HDR.pack(MAGIC, msg.kind, msg.flags, len(name), msg.session, msg.seq) + name


def decode(data: bytes) -> Message | None:
    """None for anything that is not a well-formed message (never raises on input)."""
    if len(data) < _HDR.size:
        return None
    magic, kind, flags, nlen, session, seq = _HDR.unpack_from(data)
    if magic != MAGIC or kind not in (PROBE, ACK, BYE) or len(data) != _HDR.size + nlen:
        return None
    try:
        node = data[_HDR.size :].decode()
    except UnicodeDecodeError:
        return None
    return Message(kind=kind, node=node, session=session, seq=seq, flags=flags)
