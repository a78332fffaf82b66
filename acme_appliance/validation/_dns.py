"""
The authoritative DNS server of the dcv zone.

Customers delegate with C{_acme-challenge.example.com. CNAME
example.com.<zone>.}; the CA's TXT query for C{example.com.<zone>} is
answered from L{ValidationValues}.  The server is authoritative for the zone
and nothing else: no recursion, no zone transfers.

Twisted's C{DNSServerFactory} is not used: it leaves the AA bit off NODATA
answers, sends NXDOMAIN without the zone's SOA, answers other opcodes with
the query itself (QR clear), cuts oversized UDP answers mid-record and ignores
EDNS.  The wire handling here is small enough to own instead.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from attrs import Factory, define, frozen
from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger
from twisted.names import dns, error
from twisted.names.common import ResolverBase
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin

from ..core import InvalidName, report_failure
from ._dnswire import FastAnswers, SoaFields
from ._names import normalise_domain
from ._values import TxtView, ValidationValues

# What an EDNS0 answer advertises and the most a UDP answer may carry:
# the 2020 DNS flag day size, which avoids IP fragmentation.
MAX_UDP_PAYLOAD = 1232
# Without EDNS0 a UDP answer may not exceed 512 bytes (RFC 1035 4.2.1).
CLASSIC_UDP_PAYLOAD = 512
MAX_TCP_MESSAGE = 65535
MAX_TXT_TTL = 60
_HEADER_SIZE = 12


class Rcode(IntEnum):
    """
    The response codes this server sends.
    """

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


def _check_seconds(what: str, value: int, maximum: int = 2**31 - 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{what} must be a whole number of seconds from 0 to {maximum}, not {value!r}")


@frozen
class SOAParameters:
    """
    The timers of the dcv zone's SOA record.

    @ivar hostmaster: The SOA RNAME as a DNS name (C{hostmaster.<zone>}
        when C{None}).
    @ivar minimum: The negative-caching TTL (RFC 2308), also the SOA
        record's own TTL; at most 60 so that a name looked up before its
        value was stored is not cached as missing for long.
    """

    hostmaster: str | None = None
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    minimum: int = 60

    def __attrs_post_init__(self) -> None:
        _check_seconds("SOA refresh", self.refresh)
        _check_seconds("SOA retry", self.retry)
        _check_seconds("SOA expire", self.expire)
        _check_seconds("SOA minimum", self.minimum, MAX_TXT_TTL)


@frozen
class DnsAnswer:
    """
    The authority's answer to one question, before it becomes a message.

    @ivar authoritative: Whether the AA bit is set: for every answer about a
        name in the zone.
    """

    rcode: Rcode
    authoritative: bool
    answers: tuple[dns.RRHeader, ...] = ()
    authority: tuple[dns.RRHeader, ...] = ()


_REFUSED = DnsAnswer(Rcode.REFUSED, authoritative=False)


class DcvAuthority(ResolverBase):
    """
    The records of the dcv zone: SOA and NS at the apex, and at
    C{<domain>.<zone>} one TXT record per current validation value of
    C{domain}.

    Names are matched case-insensitively; every answer record is owned by
    the name exactly as the query spelled it, so 0x20 case randomisation
    survives.  Misses inside the zone carry the SOA (NXDOMAIN, or NODATA
    for existing names and empty non-terminals); names outside are
    REFUSED.

    With a C{view}, the server answers the common query from it on the
    wire (L{fast_path}); everything else, and every name the view does not
    hold, goes through L{answer} and the store.
    """

    _log = Logger()

    def __init__(
        self,
        zone: str,
        nameservers: Sequence[str],
        values: ValidationValues,
        *,
        clock: IReactorTime,
        soa: SOAParameters = SOAParameters(),
        txt_ttl: int = MAX_TXT_TTL,
        ns_ttl: int = 3600,
        view: TxtView | None = None,
    ) -> None:
        """
        @param zone: The dcv zone, e.g. C{dcv.example.net}.
        @param nameservers: Host names of the zone's servers; the first is
            the SOA MNAME.
        @param values: Where the TXT values come from.
        @param clock: Source of the SOA serial (the current second).
        @param txt_ttl: TTL of TXT answers, at most 60 seconds.
        @param view: The values in memory for the fast path, if any.
        @raise ValueError: An argument is unusable; the message says which.
        """
        super().__init__()
        try:
            self.zone = normalise_domain(zone)
        except InvalidName as e:
            raise ValueError(f"dcv zone: {e}") from None
        if isinstance(nameservers, str) or not nameservers:
            raise ValueError("the dcv zone needs a list of at least one nameserver host name")
        try:
            self._nameservers = tuple(normalise_domain(n) for n in nameservers)
            self._hostmaster = normalise_domain(soa.hostmaster or f"hostmaster.{self.zone}")
        except InvalidName as e:
            raise ValueError(f"dcv zone nameserver or hostmaster: {e}") from None
        _check_seconds("TXT TTL", txt_ttl, MAX_TXT_TTL)
        _check_seconds("NS TTL", ns_ttl)
        self._zone_wire = self.zone.encode("ascii")
        self._values = values
        self._clock = clock
        self._soa = soa
        self._txt_ttl = txt_ttl
        self._ns_ttl = ns_ttl
        self._view = view

    def fast_path(self, max_udp_payload: int) -> FastAnswers | None:
        """
        The wire-level answerer of the common query, when there is a view.
        """
        if self._view is None:
            return None
        soa = self._soa
        return FastAnswers(
            zone=self._zone_wire,
            view=self._view,
            clock=self._clock,
            soa=SoaFields(
                self._nameservers[0].encode("ascii"),
                self._hostmaster.encode("ascii"),
                soa.refresh,
                soa.retry,
                soa.expire,
                soa.minimum,
            ),
            txt_ttl=self._txt_ttl,
            max_udp_payload=max_udp_payload,
            classic_udp_payload=CLASSIC_UDP_PAYLOAD,
            max_tcp_message=MAX_TCP_MESSAGE,
        )

    def _zone_suffix(self, qname: bytes) -> bytes | None:
        """
        The zone part of C{qname} as spelled in the query, or C{None} when
        C{qname} is outside the zone.
        """
        lower = qname.lower()
        if lower == self._zone_wire or lower.endswith(b"." + self._zone_wire):
            return qname[len(qname) - len(self._zone_wire) :]
        return None

    def _soa_record(self, owner: bytes) -> dns.RRHeader:
        minimum = self._soa.minimum
        record = dns.Record_SOA(
            mname=self._nameservers[0],
            rname=self._hostmaster,
            # Values change all the time; the current second is a serial
            # that only grows, and nothing transfers the zone anyway.
            serial=int(self._clock.seconds()) % 2**32,
            refresh=self._soa.refresh,
            retry=self._soa.retry,
            expire=self._soa.expire,
            minimum=minimum,
            ttl=minimum,
        )
        return dns.RRHeader(owner, dns.SOA, dns.IN, minimum, record, auth=True)

    async def answer(self, query: dns.Query) -> DnsAnswer:
        """
        Answer one question.

        @raise StorageError: The value store failed.
        """
        qname: bytes = query.name.name
        if qname.endswith(b"."):
            qname = qname[:-1]
        zone = self._zone_suffix(qname)
        if zone is None or query.cls not in (dns.IN, dns.ANY) or query.type in (dns.AXFR, dns.IXFR):
            return _REFUSED
        soa = self._soa_record(zone)
        nodata = DnsAnswer(Rcode.NOERROR, True, (), (soa,))
        if len(qname) == len(zone):
            if query.type in (dns.SOA, dns.ANY):
                # RFC 8482: one RRset is a complete answer to ANY.
                return DnsAnswer(Rcode.NOERROR, True, (self._soa_record(qname),))
            if query.type == dns.NS:
                return DnsAnswer(Rcode.NOERROR, True, tuple(self._ns_records(qname)))
            return nodata
        try:
            relative = qname[: -len(zone) - 1].decode("ascii")
        except UnicodeDecodeError:
            return DnsAnswer(Rcode.NXDOMAIN, True, (), (soa,))
        try:
            values = await self._values.txt_values(relative)
        except InvalidName:
            values = []
        if values:
            if query.type in (dns.TXT, dns.ANY):
                return DnsAnswer(Rcode.NOERROR, True, tuple(self._txt_records(qname, sorted(values))))
            return nodata
        if await self._values.has_txt_below(relative):
            return nodata
        return DnsAnswer(Rcode.NXDOMAIN, True, (), (soa,))

    def _ns_records(self, owner: bytes) -> list[dns.RRHeader]:
        return [
            dns.RRHeader(owner, dns.NS, dns.IN, self._ns_ttl, dns.Record_NS(ns, ttl=self._ns_ttl), auth=True)
            for ns in self._nameservers
        ]

    def _txt_records(self, owner: bytes, values: list[str]) -> list[dns.RRHeader]:
        ttl = self._txt_ttl
        return [
            dns.RRHeader(owner, dns.TXT, dns.IN, ttl, dns.Record_TXT(v.encode("ascii"), ttl=ttl), auth=True)
            for v in values
        ]

    def _lookup(
        self, name: bytes, cls: int, type: int, timeout: object = None
    ) -> Deferred[tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]]:
        """
        L{IResolver} view of L{answer}: NXDOMAIN fails with
        L{AuthoritativeDomainError}, names not ours with L{DomainError}.
        """
        return Deferred.fromCoroutine(self._resolve(dns.Query(name, type, cls)))

    async def _resolve(self, query: dns.Query) -> tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]:
        result = await self.answer(query)
        if result.rcode is Rcode.NOERROR:
            return list(result.answers), list(result.authority), []
        if result.rcode is Rcode.NXDOMAIN:
            raise error.AuthoritativeDomainError(query.name.name)
        raise error.DomainError(query.name.name)


@frozen
class _Edns:
    version: int
    payload_size: int
    dnssec_ok: bool


class _BadEdns(Exception):
    pass


def _edns_of(message: dns.Message) -> _Edns | None:
    """
    @raise _BadEdns: More than one OPT record, or one not owned by the root
        (RFC 6891 6.1.1).
    """
    opts = [r for r in message.additional if r.type == dns.OPT]
    if not opts:
        return None
    if len(opts) > 1 or opts[0].name.name != b"":
        raise _BadEdns()
    ttl = opts[0].ttl
    return _Edns(version=(ttl >> 16) & 0xFF, payload_size=opts[0].cls, dnssec_ok=bool(ttl & 0x8000))


class DcvDNSServerFactory(ServerFactory):
    """
    Serves a L{DcvAuthority} over TCP (this factory) and UDP
    (L{datagram_protocol}).

    Only standard queries with one question are answered; other opcodes get
    NOTIMP, malformed messages FORMERR (or nothing, when not even the header
    is readable), responses are ignored.  EDNS0 is echoed (version 0 only,
    BADVERS otherwise); a UDP answer larger than the client can take is sent
    as header and question with TC set, so the client retries over TCP.
    Idle TCP connections are closed, and at most C{max_tcp_connections}
    are open at once: more are closed as soon as they are accepted.
    """

    _log = Logger()

    def __init__(
        self,
        authority: DcvAuthority,
        *,
        clock: IReactorTime,
        tcp_idle_timeout: float = 30.0,
        max_udp_payload: int = MAX_UDP_PAYLOAD,
        max_tcp_connections: int = 256,
    ) -> None:
        """
        @param clock: Times idle TCP connections out.
        @param tcp_idle_timeout: Seconds a TCP connection may stay silent.
        @param max_udp_payload: The largest UDP answer, whatever the client
            advertises; at least 512.
        @param max_tcp_connections: TCP connections open at once.
        """
        if not tcp_idle_timeout > 0:
            raise ValueError(f"the TCP idle timeout must be positive, not {tcp_idle_timeout!r}")
        if not CLASSIC_UDP_PAYLOAD <= max_udp_payload <= 65535:
            raise ValueError(f"the largest UDP payload must be 512-65535 bytes, not {max_udp_payload!r}")
        self.authority = authority
        self._clock = clock
        self._idle_timeout = tcp_idle_timeout
        self._max_udp = max_udp_payload
        self.max_tcp_connections = max_tcp_connections
        self.tcp_connections = 0
        self._fast = authority.fast_path(max_udp_payload)

    def buildProtocol(self, addr: IAddress | None) -> _DcvStreamProtocol | None:
        if self.tcp_connections >= self.max_tcp_connections:
            # A plain TCP listener closes the socket at once.
            return None
        self.tcp_connections += 1
        return _DcvStreamProtocol(self, self._clock, self._idle_timeout)

    def tcp_connection_lost(self) -> None:
        self.tcp_connections -= 1

    def datagram_protocol(self) -> DatagramProtocol:
        """
        A protocol answering queries over UDP, for C{listenUDP}.
        """
        return _DcvDatagramProtocol(self)

    def fast_reply(self, packet: bytes, *, udp: bool) -> bytes | None:
        """
        The reply to the common query, at once, or C{None} when L{respond}
        must answer (see L{FastAnswers}).  Never raises.
        """
        if self._fast is None:
            return None
        try:
            return self._fast.reply(packet, udp=udp)
        except Exception:
            self._log.failure("the DNS fast path failed on a {length}-byte message", length=len(packet))
            return None

    async def respond(self, packet: bytes, *, udp: bool) -> bytes | None:
        """
        The wire reply to the DNS message C{packet}, or C{None} when there
        must be none (unreadable header, or C{packet} is itself a response).
        Never raises, and logs nothing per message (clients choose how
        many come): only a failure of the server itself is logged.

        @param udp: Whether the reply goes back over UDP (so size limits
            and truncation apply).
        """
        try:
            return await self._respond(packet, udp)
        except Exception:
            self._log.failure("could not answer a {length}-byte DNS message", length=len(packet))
            return None

    async def _respond(self, packet: bytes, udp: bool) -> bytes | None:
        if len(packet) < _HEADER_SIZE:
            return None
        ident, flags, flags2 = struct.unpack_from("!HBB", packet)
        if flags & 0x80:
            return None
        opcode = (flags >> 3) & 0xF
        reply = _Reply(
            ident=ident,
            opcode=opcode,
            recursion_desired=flags & 1,
            checking_disabled=(flags2 >> 4) & 1,
            limit=CLASSIC_UDP_PAYLOAD if udp else MAX_TCP_MESSAGE,
            edns_payload=self._max_udp,
        )
        request = dns.Message()
        try:
            # Untrusted bytes: the decoder raises more than its documented
            # EOFError/ValueError on some garbage.
            request.fromStr(packet)
            edns = _edns_of(request)
        except Exception:
            return reply.encode(Rcode.FORMERR)
        if edns is not None:
            reply.edns = edns
            if udp:
                reply.limit = min(max(edns.payload_size, CLASSIC_UDP_PAYLOAD), self._max_udp)
            if edns.version != 0:
                return reply.encode(Rcode.BADVERS)
        if len(request.queries) == 1:
            reply.queries = request.queries
        if opcode != dns.OP_QUERY:
            return reply.encode(Rcode.NOTIMP)
        if len(request.queries) != 1 or request.queries[0].type == dns.OPT:
            return reply.encode(Rcode.FORMERR)
        query = request.queries[0]
        try:
            answer = await self.authority.answer(query)
        except Exception:
            report_failure(self._log, "lookup of {name!r} failed", name=query.name.name)
            return reply.encode(Rcode.SERVFAIL)
        return reply.encode(answer.rcode, answer)


@define
class _Reply:
    """
    The parts of a reply known before the answer: the request's header
    fields, question and EDNS state, and the size the reply must fit.
    """

    ident: int
    opcode: int
    recursion_desired: int
    checking_disabled: int
    limit: int
    edns_payload: int
    queries: list[dns.Query] = Factory(list)
    edns: _Edns | None = None

    def encode(self, rcode: Rcode, answer: DnsAnswer | None = None) -> bytes:
        message = dns.Message(
            id=self.ident,
            answer=1,
            opCode=self.opcode,
            recDes=self.recursion_desired,
            auth=answer is not None and answer.authoritative,
            rCode=rcode & 0xF,
            # 0: the size check is below; Message's own cuts records in half.
            maxSize=0,
            checkingDisabled=self.checking_disabled,
        )
        message.queries = list(self.queries)
        if answer is not None:
            message.answers = list(answer.answers)
            message.authority = list(answer.authority)
        if self.edns is not None:
            # Message types its sections as RRHeader; the OPT pseudo-record
            # encodes the same way.
            opt: Any = dns._OPTHeader(
                udpPayloadSize=self.edns_payload, extendedRCODE=rcode >> 4, version=0, dnssecOK=self.edns.dnssec_ok
            )
            message.additional = [opt]
        wire: bytes = message.toStr()
        if len(wire) > self.limit:
            message.answers = []
            message.authority = []
            message.trunc = 1
            wire = message.toStr()
        return wire


class _DcvDatagramProtocol(DatagramProtocol):
    _log = Logger()

    def __init__(self, factory: DcvDNSServerFactory) -> None:
        self._factory = factory
        self._sendto: Any = None

    def startProtocol(self) -> None:
        # The socket itself, when the transport has one: the port's write()
        # re-checks the address three times per datagram, a sixth of the
        # fast path's time.
        handle = getattr(self.transport, "getHandle", None)
        self._sendto = handle().sendto if handle is not None else None

    def stopProtocol(self) -> None:
        self._sendto = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        reply = self._factory.fast_reply(datagram, udp=True)
        if reply is not None:
            if self._sendto is None:
                self._send(reply, addr)
                return
            try:
                self._sendto(reply, addr)
            except (BlockingIOError, ConnectionRefusedError):
                # A full send buffer or a vanished client: the answer is
                # lost as the network may lose it; the client asks again.
                pass
            except Exception:
                self._log.failure("could not send a DNS answer to {addr}", addr=addr)
            return
        d = Deferred.fromCoroutine(self._factory.respond(datagram, udp=True))
        d.addCallback(self._send, addr)

    def _send(self, reply: bytes | None, addr: Any) -> None:
        if reply is None or self.transport is None:
            return
        try:
            self.transport.write(reply, addr)
        except Exception:
            self._log.failure("could not send a DNS answer to {addr}", addr=addr)


class _DcvStreamProtocol(Int16StringReceiver, TimeoutMixin):
    """
    DNS over TCP (RFC 7766): length-prefixed messages, answered as they
    complete, the connection closed after C{idle_timeout} silent seconds.
    """

    _log = Logger()

    def __init__(self, factory: DcvDNSServerFactory, clock: IReactorTime, idle_timeout: float) -> None:
        self._factory = factory
        self._clock = clock
        self._idle_timeout = idle_timeout

    def callLater(self, period: float, func: Any) -> IDelayedCall:
        return self._clock.callLater(period, func)

    def connectionMade(self) -> None:
        self.setTimeout(self._idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def stringReceived(self, string: bytes) -> None:
        reply = self._factory.fast_reply(string, udp=False)
        if reply is not None:
            self._send(reply)
            return
        d = Deferred.fromCoroutine(self._factory.respond(string, udp=False))
        d.addCallback(self._send)

    def _send(self, reply: bytes | None) -> None:
        if reply is not None and self.transport is not None and self.connected:
            self.sendString(reply)
            self.resetTimeout()

    def timeoutConnection(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:
        self.connected = False
        self.setTimeout(None)
        self._factory.tcp_connection_lost()


class IDNSReactor(IReactorUDP, IReactorTCP):
    """
    What the DNS listeners need of the reactor.
    """


def make_dns_services(
    factory: DcvDNSServerFactory, *, port: int, interface: str, reactor: IDNSReactor
) -> list[IService]:
    """
    A UDP and a TCP listener for C{factory} on the same port.  Both bind in
    C{privilegedStartService} (port 53 needs it) and a bind failure raises
    L{CannotListenError} there.

    @param interface: An IPv4 or IPv6 address to listen on.
    """
    udp = UDPServer(port, factory.datagram_protocol(), interface=interface, reactor=reactor)
    udp.setName("dns-udp")
    endpoint = (
        TCP6ServerEndpoint(reactor, port, interface=interface)
        if ":" in interface
        else TCP4ServerEndpoint(reactor, port, interface=interface)
    )
    tcp = StreamServerEndpointService(endpoint, factory)
    tcp._raiseSynchronously = True
    tcp.setName("dns-tcp")
    return [udp, tcp]
