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

from ._values import TxtView

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


@frozen
class WireQuery:
    """
    The parts of a common query the answer needs.

    @ivar name: The question name as asked (labels joined by dots).
    @ivar question: The question section's bytes.
    @ivar edns: The advertised UDP payload size and DO bit, or C{None}
        without EDNS.
    """

    ident: int
    flags: int
    checking_disabled: int
    name: bytes
    labels: tuple[bytes, ...]
    question: bytes
    qtype: int
    edns: tuple[int, int] | None


def parse_query(packet: bytes) -> WireQuery | None:
    """
    The common query in C{packet}, or C{None} for any other message.
    """
    if len(packet) < 17:
        return None
    ident, flags, flags2, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(packet)
    if flags & 0xF8 or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    labels = []
    pos = 12
    size = len(packet)
    while True:
        length = packet[pos]
        if length == 0:
            break
        end = pos + 1 + length
        if length > 63 or end >= size:
            return None
        label = packet[pos + 1 : end]
        if b"." in label:
            return None
        labels.append(label)
        pos = end
    end = pos + 5
    if end > size:
        return None
    qtype, qclass = _TYPE_CLASS.unpack_from(packet, pos + 1)
    if qclass != _IN or qtype in _SPECIAL_TYPES:
        return None
    edns = None
    if arcount:
        if end + 11 > size or packet[end] != 0:
            return None
        rtype, payload, ttl, rdlength = _RR.unpack_from(packet, end + 1)
        if rtype != _OPT or ttl & 0xFF0000 or end + 11 + rdlength != size:
            return None
        edns = (payload, ttl & 0x8000)
    elif end != size:
        return None
    return WireQuery(ident, flags, flags2 & 0x10, b".".join(labels), tuple(labels), packet[12:end], qtype, edns)


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
        self._dot_zone = b"." + zone
        self._zone_labels = zone.count(b".") + 1
        self._view = view
        self._clock = clock
        self._soa = soa
        self._txt_header = struct.pack("!HHI", _TXT, _IN, txt_ttl)
        self._max_udp = max_udp_payload
        self._classic_udp = classic_udp_payload
        self._max_tcp = max_tcp_message

    def reply(self, packet: bytes, *, udp: bool) -> bytes | None:
        """
        The reply to C{packet}, or C{None} when the general path must
        answer it.
        """
        query = parse_query(packet)
        if query is None:
            return None
        name = query.name.lower()
        if not name.endswith(self._dot_zone):
            return None
        relative = name[: -len(self._dot_zone)]
        values = self._view.values(relative)
        if values and query.qtype == _TXT:
            wire = self._txt(query, values)
        elif values or self._view.exists_below(relative):
            wire = self._nodata(query)
        else:
            return None
        if query.edns is not None:
            wire += b"\x00" + _RR.pack(_OPT, self._max_udp, query.edns[1], 0)
            limit = min(max(query.edns[0], self._classic_udp), self._max_udp) if udp else self._max_tcp
        else:
            limit = self._classic_udp if udp else self._max_tcp
        # Too big: the general path sends the truncated answer.
        return wire if len(wire) <= limit else None

    def _header(self, query: WireQuery, answers: int, authority: int) -> bytes:
        return _HEADER.pack(
            query.ident,
            _AUTHORITATIVE_ANSWER | (query.flags & 1),
            query.checking_disabled | _NOERROR,
            1,
            answers,
            authority,
            query.edns is not None,
        )

    def _txt(self, query: WireQuery, values: tuple[bytes, ...]) -> bytes:
        parts = [self._header(query, len(values), 0), query.question]
        for value in values:
            parts.append(_QUESTION_NAME + self._txt_header + struct.pack("!HB", len(value) + 1, len(value)) + value)
        return b"".join(parts)

    def _nodata(self, query: WireQuery) -> bytes:
        names = _Names(query.labels)
        zone_owner = b".".join(query.labels[-self._zone_labels :])
        head = self._header(query, 0, 1) + query.question
        owner = names.encode(zone_owner, len(head))
        offset = len(head) + len(owner) + _RR.size
        soa = self._soa
        mname = names.encode(soa.mname, offset)
        rname = names.encode(soa.rname, offset + len(mname))
        serial = int(self._clock.seconds()) % 2**32
        rdata = mname + rname + _SOA_TIMERS.pack(serial, soa.refresh, soa.retry, soa.expire, soa.minimum)
        return head + owner + _RR.pack(_SOA, _IN, soa.minimum, len(rdata)) + rdata
