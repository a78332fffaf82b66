"""
The DNS fast path: the common query of the dcv zone decoded and answered on
the wire, synchronously, from a L{TxtView}.

The common query is a standard query (QR and opcode 0) with exactly one
uncompressed question of class IN, no answer or authority records and at
most one well-formed EDNS0 (version 0) OPT record, for a name below the
zone that the view knows: TXT values are answered, other types get NODATA
with the SOA.  Anything else -- the apex, names the view does not hold,
ANY, zone transfers, other classes and opcodes, malformed or oversized
messages -- is left to the general path (C{None}), which owns every rule.

The bytes are those the general path produces for the same answer: the
question copied as asked, answer owners compressed to the question, names
in the SOA compressed against the names already written, exactly as
C{twisted.names.dns.Message} does.
"""

from __future__ import annotations

import struct

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from ._values import TxtView, wire_name

_HEADER = struct.Struct("!HBBHHHH")
_TYPE_CLASS = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")
_SOA_TIMERS = struct.Struct("!LlllL")
_TXT, _IN, _SOA, _OPT = 16, 1, 6, 41
# Question types the general path answers specially: AXFR, IXFR, ANY, OPT.
_SPECIAL_TYPES = frozenset({252, 251, 255, _OPT})
_NOERROR = 0
_AUTHORITATIVE_ANSWER = 0x84
# The question's name always starts right after the header: a pointer to it.
_QUESTION_NAME = b"\xc0\x0c"


def _labels(name: bytes) -> tuple[bytes, ...]:
    """
    The labels of a wire-form name (no root label).
    """
    labels = []
    while name:
        labels.append(name[1 : 1 + name[0]])
        name = name[1 + name[0] :]
    return tuple(labels)


class _Names:
    """
    Name compression as C{twisted.names.dns.Name.encode} does it: every
    suffix written is remembered (case-sensitively) and later pointed to.
    """

    def __init__(self, labels: tuple[bytes, ...]) -> None:
        self.offsets: dict[bytes, int] = {}
        offset = 12
        for i, label in enumerate(labels):
            self.offsets[b".".join(labels[i:])] = offset
            offset += 1 + len(label)

    def encode(self, name: bytes, offset: int) -> bytes:
        out = []
        while name:
            if name in self.offsets:
                out.append(struct.pack("!H", 0xC000 | self.offsets[name]))
                return b"".join(out)
            self.offsets[name] = offset
            label, _, rest = name.partition(b".")
            out.append(bytes([len(label)]) + label)
            offset += 1 + len(label)
            name = rest
        out.append(b"\x00")
        return b"".join(out)


@frozen
class SoaFields:
    """
    The zone's SOA record, but for the serial (the current second).
    """

    mname: bytes
    rname: bytes
    refresh: int
    retry: int
    expire: int
    minimum: int


class FastAnswers:
    """
    Answers the common query from a L{TxtView} at once, or leaves it to the
    general path.
    """

    def __init__(
        self,
        *,
        zone: bytes,
        view: TxtView,
        clock: IReactorTime,
        soa: SoaFields,
        txt_ttl: int,
        max_udp_payload: int,
        classic_udp_payload: int,
        max_tcp_message: int,
    ) -> None:
        self._zone_wire = wire_name(zone) + b"\x00"
        self._zone_labels = zone.count(b".") + 1
        self._view = view
        self._clock = clock
        self._soa = soa
        self._txt_header = _QUESTION_NAME + struct.pack("!HHI", _TXT, _IN, txt_ttl)
        self._max_udp = max_udp_payload
        self._classic_udp = classic_udp_payload
        self._max_tcp = max_tcp_message

    def reply(self, packet: bytes, *, udp: bool) -> bytes | None:
        """
        The reply to C{packet}, or C{None} when the general path must
        answer it.

        The question name is found by the zone's wire form (and the root
        label) lower-cased: what precedes it is looked up in the view,
        whose names are all well-formed, so a hit proves the question is
        one uncompressed name of labels -- no label walk is needed.
        """
        size = len(packet)
        if size < 17:
            return None
        ident, flags, flags2, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(packet)
        if flags & 0xF8 or qdcount != 1 or ancount or nscount or arcount > 1:
            return None
        end = packet.lower().find(self._zone_wire, 12)
        question_end = end + len(self._zone_wire) + 4
        if end <= 12 or question_end > size:
            return None
        qtype, qclass = _TYPE_CLASS.unpack_from(packet, question_end - 4)
        if qclass != _IN or qtype in _SPECIAL_TYPES:
            return None
        edns = None
        if arcount:
            edns = _opt(packet, question_end)
            if edns is None:
                return None
        elif question_end != size:
            return None
        relative = packet[12:end].lower()
        values = self._view.values(relative)
        head = _HEADER.pack(
            ident, _AUTHORITATIVE_ANSWER | (flags & 1), flags2 & 0x10, 1, len(values), 0, edns is not None
        )
        question = packet[12:question_end]
        if values and qtype == _TXT:
            wire = head + question + b"".join([self._txt_header + _txt_rdata(value) for value in values])
        elif values or self._view.exists_below(relative):
            wire = self._nodata(
                head, question, _labels(packet[12:end]) + _labels(packet[end : end + len(self._zone_wire) - 1])
            )
        else:
            return None
        if edns is None:
            limit = self._classic_udp if udp else self._max_tcp
        else:
            wire += b"\x00" + _RR.pack(_OPT, self._max_udp, edns[1], 0)
            limit = min(max(edns[0], self._classic_udp), self._max_udp) if udp else self._max_tcp
        # Too big: the general path sends the truncated answer.
        return wire if len(wire) <= limit else None

    def _nodata(self, head: bytes, question: bytes, labels: tuple[bytes, ...]) -> bytes:
        head = head[:6] + b"\x00\x00\x00\x01" + head[10:] + question
        names = _Names(labels)
        owner = names.encode(b".".join(labels[-self._zone_labels :]), len(head))
        offset = len(head) + len(owner) + _RR.size
        soa = self._soa
        mname = names.encode(soa.mname, offset)
        rname = names.encode(soa.rname, offset + len(mname))
        serial = int(self._clock.seconds()) % 2**32
        rdata = mname + rname + _SOA_TIMERS.pack(serial, soa.refresh, soa.retry, soa.expire, soa.minimum)
        return head + owner + _RR.pack(_SOA, _IN, soa.minimum, len(rdata)) + rdata


def _opt(packet: bytes, start: int) -> tuple[int, int] | None:
    """
    The payload size and DO bit of the EDNS0 OPT record that ends
    C{packet} at C{start}, or C{None} when it is not one.
    """
    if start + 11 > len(packet) or packet[start] != 0:
        return None
    rtype, payload, ttl, rdlength = _RR.unpack_from(packet, start + 1)
    if rtype != _OPT or ttl & 0xFF0000 or start + 11 + rdlength != len(packet):
        return None
    return payload, ttl & 0x8000


def _txt_rdata(value: bytes) -> bytes:
    return struct.pack("!HB", len(value) + 1, len(value)) + value
