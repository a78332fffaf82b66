"""
The dcv DNS authority and its server, in memory: wire messages go through
the UDP and TCP protocols with fake transports, a MemoryStore and a Clock.
"""

from __future__ import annotations

import struct
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.names import dns, error
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from acme_appliance.storage import MemoryStore, StorageError
from acme_appliance.validation import (
    DcvAuthority,
    DcvDNSServerFactory,
    IDNSReactor,
    Rcode,
    SOAParameters,
    ValidationValues,
    make_dns_services,
)

T = TypeVar("T")
ZONE = "dcv.test"
NOW = 1_700_000_000
VALUE_A = "kWwkYm1Qb3AcRj0X2PuC7JlD7xT8Cb4kTzBRaC3Ir0k"
VALUE_B = "Zq1mNvBdHq4HWuR2hO9sM1PqNzXyG5cUdB3V7oEw8tA"
CLIENT = ("192.0.2.53", 5353)


def query(
    name: bytes | str,
    type: int = dns.TXT,
    *,
    ident: int = 4242,
    opcode: int = dns.OP_QUERY,
    cls: int = dns.IN,
    rd: int = 0,
    edns: int | None = None,
    version: int = 0,
    dnssec_ok: bool = False,
) -> bytes:
    message = dns.Message(id=ident, opCode=opcode, recDes=rd, maxSize=0)
    message.queries = [dns.Query(name, type, cls)]
    if edns is not None:
        opt: Any = dns._OPTHeader(udpPayloadSize=edns, version=version, dnssecOK=dnssec_ok)
        message.additional = [opt]
    return message.toStr()


def parse(wire: bytes) -> dns.Message:
    message = dns.Message()
    message.fromStr(wire)
    return message


def payload(record: dns.RRHeader) -> Any:
    return record.payload


def per_message(events: Any) -> list[str]:
    """
    What was logged besides the test's own protocol start-ups.
    """
    return [e.get("log_text") or e["log_format"] for e in events if "Starting protocol" not in e.get("log_text", "")]


def opts(message: dns.Message) -> list[dns.RRHeader]:
    return [r for r in message.additional if r.type == dns.OPT]


class _FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


@implementer(IDNSReactor)
class _UDPMemoryReactor(MemoryReactor):
    def __init__(self) -> None:
        super().__init__()
        self.udp: list[tuple[int, Any, str]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        self.udp.append((port, protocol, interface))
        return None


class _BrokenStore(MemoryStore):
    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        raise StorageError("disk on fire")


class DnsCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore(self.clock)
        self.values = ValidationValues(self.store)
        self.authority = DcvAuthority(
            ZONE, ["ns1.dcv.test", "ns2.example.net"], self.values, clock=self.clock, soa=SOAParameters(minimum=30)
        )
        self.factory = DcvDNSServerFactory(self.authority, clock=self.clock)

    def run_(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def add(self, domain: str, *values: str, ttl: float = 300) -> None:
        for value in values:
            self.run_(self.values.add_txt(domain, value, ttl=ttl))

    def udp_raw(self, data: bytes) -> list[bytes]:
        transport = _FakeUDPTransport()
        protocol = self.factory.datagram_protocol()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        protocol.datagramReceived(data, CLIENT)
        self.assertTrue(all(addr == CLIENT for _, addr in transport.sent))
        return [data for data, _ in transport.sent]

    def udp(self, data: bytes) -> dns.Message:
        [reply] = self.udp_raw(data)
        self.assertLessEqual(len(reply), 1232)
        return parse(reply)

    def ask(self, name: bytes | str, type: int = dns.TXT, **kw: Any) -> dns.Message:
        return self.udp(query(name, type, **kw))

    def assertSoaAuthority(self, message: dns.Message, owner: bytes = b"dcv.test") -> None:
        self.assertEqual([r.type for r in message.authority], [dns.SOA])
        soa = message.authority[0]
        self.assertEqual(soa.name.name, owner)
        self.assertEqual(payload(soa).minimum, 30)
        self.assertLessEqual(soa.ttl, 30)


class ApexTests(DnsCase):
    def test_soa(self) -> None:
        reply = self.ask("dcv.test", dns.SOA)
        self.assertEqual((reply.rCode, reply.answer, reply.auth, reply.recAv), (dns.OK, 1, 1, 0))
        [soa] = reply.answers
        self.assertEqual(soa.type, dns.SOA)
        self.assertEqual(soa.name.name, b"dcv.test")
        self.assertEqual(payload(soa).mname.name, b"ns1.dcv.test")
        self.assertEqual(payload(soa).rname.name, b"hostmaster.dcv.test")
        self.assertEqual(payload(soa).serial, NOW)
        self.assertEqual(reply.authority, [])

    def test_serial_follows_the_clock(self) -> None:
        self.clock.advance(7)
        self.assertEqual(payload(self.ask("dcv.test", dns.SOA).answers[0]).serial, NOW + 7)

    def test_ns(self) -> None:
        reply = self.ask("dcv.test", dns.NS)
        self.assertTrue(reply.auth)
        self.assertEqual(sorted(payload(r).name.name for r in reply.answers), [b"ns1.dcv.test", b"ns2.example.net"])

    def test_nodata_at_apex(self) -> None:
        reply = self.ask("dcv.test", dns.A)
        self.assertEqual((reply.rCode, reply.auth, reply.answers), (dns.OK, 1, []))
        self.assertSoaAuthority(reply)

    def test_any_is_minimal(self) -> None:
        """
        RFC 8482: ANY gets one RRset (the SOA at the apex).
        """
        reply = self.ask("dcv.test", dns.ALL_RECORDS)
        self.assertEqual([r.type for r in reply.answers], [dns.SOA])


class TxtTests(DnsCase):
    def test_two_values_on_one_name(self) -> None:
        self.add("example.com", VALUE_A, VALUE_B)
        reply = self.ask("example.com.dcv.test")
        self.assertEqual((reply.rCode, reply.auth), (dns.OK, 1))
        self.assertEqual(sorted(payload(r).data[0].decode() for r in reply.answers), sorted([VALUE_A, VALUE_B]))
        self.assertTrue(all(r.type == dns.TXT and 0 < r.ttl <= 60 for r in reply.answers))

    def test_case_is_echoed(self) -> None:
        """
        0x20: the question and every answer's owner keep the query's case.
        """
        self.add("example.com", VALUE_A)
        reply = self.ask(b"ExAmPlE.cOm.DcV.TeSt")
        self.assertEqual(reply.queries[0].name.name, b"ExAmPlE.cOm.DcV.TeSt")
        self.assertEqual([r.name.name for r in reply.answers], [b"ExAmPlE.cOm.DcV.TeSt"])

    def test_soa_owner_echoes_zone_case(self) -> None:
        reply = self.ask(b"nothing.DcV.TeSt")
        self.assertSoaAuthority(reply, owner=b"DcV.TeSt")

    def test_nxdomain(self) -> None:
        reply = self.ask("example.com.dcv.test")
        self.assertEqual((reply.rCode, reply.auth, reply.answers), (dns.ENAME, 1, []))
        self.assertSoaAuthority(reply)

    def test_nxdomain_for_names_that_cannot_hold_values(self) -> None:
        for name in [b"_acme-challenge.example.com.dcv.test", b"*.dcv.test", b"ex\xffmple.dcv.test", b"a_b.dcv.test"]:
            reply = self.ask(name)
            self.assertEqual((reply.rCode, reply.auth), (dns.ENAME, 1), name)
            self.assertSoaAuthority(reply)

    def test_nodata_other_type(self) -> None:
        self.add("example.com", VALUE_A)
        reply = self.ask("example.com.dcv.test", dns.A)
        self.assertEqual((reply.rCode, reply.auth, reply.answers), (dns.OK, 1, []))
        self.assertSoaAuthority(reply)

    def test_empty_non_terminal_is_nodata(self) -> None:
        """
        RFC 8020: a name with values below it exists, so a resolver that
        minimises QNAMEs must not be told NXDOMAIN on the way down.
        """
        self.add("www.example.com", VALUE_A)
        for name in ["example.com.dcv.test", "com.dcv.test"]:
            reply = self.ask(name, dns.A)
            self.assertEqual((reply.rCode, reply.auth, reply.answers), (dns.OK, 1, []), name)
            self.assertSoaAuthority(reply)
        self.assertEqual(self.ask("org.dcv.test").rCode, dns.ENAME)

    def test_any_at_value_name(self) -> None:
        self.add("example.com", VALUE_A)
        reply = self.ask("example.com.dcv.test", dns.ALL_RECORDS)
        self.assertEqual([r.type for r in reply.answers], [dns.TXT])

    def test_expired_and_removed_values_disappear(self) -> None:
        self.add("example.com", VALUE_A, ttl=100)
        self.add("example.com", VALUE_B, ttl=1000)
        self.clock.advance(100)
        self.assertEqual([payload(r).data for r in self.ask("example.com.dcv.test").answers], [[VALUE_B.encode()]])
        self.run_(self.values.remove_txt("example.com", VALUE_B))
        self.assertEqual(self.ask("example.com.dcv.test").rCode, dns.ENAME)

    def test_store_failure_is_servfail(self) -> None:
        self.store = _BrokenStore(self.clock)
        self.authority = DcvAuthority(ZONE, ["ns1.dcv.test"], ValidationValues(self.store), clock=self.clock)
        self.factory = DcvDNSServerFactory(self.authority, clock=self.clock)
        with capturedLogs() as events:
            reply = self.ask("example.com.dcv.test")
        self.assertEqual((reply.rCode, reply.auth, reply.answers), (dns.ESERVER, 0, []))
        # The store being away is one warning line, not a traceback.
        self.assertTrue(any(e.get("log_level") == LogLevel.warn for e in events))
        self.assertFalse(any(e.get("log_failure") for e in events))


class RefusalTests(DnsCase):
    def test_outside_the_zone(self) -> None:
        for name in ["example.com", "xdcv.test", "test", "", "dcv.test.example.com"]:
            reply = self.ask(name, dns.A, rd=1)
            self.assertEqual((reply.rCode, reply.auth, reply.recAv, reply.answers), (dns.EREFUSED, 0, 0, []), name)
            self.assertEqual(reply.recDes, 1)

    def test_zone_transfers(self) -> None:
        for qtype in [dns.AXFR, dns.IXFR]:
            reply = self.ask("dcv.test", qtype)
            self.assertEqual((reply.rCode, reply.answers), (dns.EREFUSED, []))

    def test_other_classes(self) -> None:
        self.assertEqual(self.ask("dcv.test", dns.SOA, cls=dns.CH).rCode, dns.EREFUSED)
        self.assertEqual(self.ask("dcv.test", dns.SOA, cls=dns.ANY).rCode, dns.OK)


class ProtocolTests(DnsCase):
    def test_header_echo(self) -> None:
        reply = self.ask("dcv.test", dns.SOA, ident=31337, rd=1)
        self.assertEqual((reply.id, reply.answer, reply.recDes, reply.recAv, reply.opCode), (31337, 1, 1, 0, 0))

    def test_other_opcodes_not_implemented(self) -> None:
        for opcode in [dns.OP_INVERSE, dns.OP_STATUS, dns.OP_NOTIFY, dns.OP_UPDATE, 15]:
            reply = self.ask("dcv.test", dns.SOA, opcode=opcode)
            self.assertEqual((reply.rCode, reply.answer, reply.opCode, reply.answers), (dns.ENOTIMP, 1, opcode, []))

    def test_no_edns_no_opt(self) -> None:
        self.assertEqual(opts(self.ask("dcv.test", dns.SOA)), [])

    def test_edns_echoed(self) -> None:
        reply = self.ask("dcv.test", dns.SOA, edns=4096, dnssec_ok=True)
        [opt] = opts(reply)
        self.assertEqual(opt.name.name, b"")
        self.assertEqual(opt.cls, 1232)
        self.assertEqual((opt.ttl >> 16) & 0xFF, 0)
        self.assertTrue(opt.ttl & 0x8000, "DO bit is copied (RFC 3225)")
        self.assertEqual(len(reply.answers), 1)

    def test_edns_on_errors(self) -> None:
        reply = self.ask("example.org", dns.A, edns=1232)
        self.assertEqual(reply.rCode, dns.EREFUSED)
        self.assertEqual(len(opts(reply)), 1)

    def test_unknown_edns_version(self) -> None:
        edns = dns._EDNSMessage()
        edns.fromStr(self.udp_raw(query("dcv.test", dns.SOA, edns=1232, version=1))[0])
        self.assertEqual((edns.rCode, edns.ednsVersion, edns.answers), (Rcode.BADVERS, 0, []))

    def test_two_opt_records_formerr(self) -> None:
        message = dns.Message(id=5, maxSize=0)
        message.queries = [dns.Query("dcv.test", dns.SOA)]
        opt: Any = dns._OPTHeader()
        message.additional = [opt, opt]
        self.assertEqual(self.udp(message.toStr()).rCode, dns.EFORMAT)

    def test_truncation_without_edns(self) -> None:
        values = [f"{i:02d}" + "v" * 41 for i in range(20)]
        self.add("example.com", *values)
        [wire] = self.udp_raw(query("example.com.dcv.test"))
        self.assertLessEqual(len(wire), 512)
        reply = parse(wire)
        self.assertEqual((reply.trunc, reply.rCode, reply.auth, reply.answers), (1, dns.OK, 1, []))
        self.assertEqual(reply.queries[0].name.name, b"example.com.dcv.test")

    def test_no_truncation_when_client_takes_more(self) -> None:
        values = [f"{i:02d}" + "v" * 41 for i in range(20)]
        self.add("example.com", *values)
        reply = self.ask("example.com.dcv.test", edns=1232)
        self.assertEqual((reply.trunc, len(reply.answers)), (0, 20))
        self.assertEqual(len(opts(reply)), 1)

    def test_truncation_respects_our_own_limit(self) -> None:
        values = [f"{i:02d}" + "v" * 200 for i in range(10)]
        self.add("example.com", *values)
        [wire] = self.udp_raw(query("example.com.dcv.test", edns=65000))
        self.assertLessEqual(len(wire), 1232)
        reply = parse(wire)
        self.assertEqual((reply.trunc, reply.answers), (1, []))
        self.assertEqual(len(opts(reply)), 1)

    def test_small_edns_size_means_512(self) -> None:
        self.add("example.com", *[f"{i:02d}" + "v" * 41 for i in range(8)])
        reply = self.ask("example.com.dcv.test", edns=100)
        self.assertEqual((reply.trunc, len(reply.answers)), (0, 8))

    def test_question_count_must_be_one(self) -> None:
        message = dns.Message(id=9, maxSize=0)
        message.queries = [dns.Query("dcv.test", dns.SOA), dns.Query("dcv.test", dns.NS)]
        reply = self.udp(message.toStr())
        self.assertEqual((reply.rCode, reply.queries, reply.answers), (dns.EFORMAT, [], []))
        empty = dns.Message(id=10, maxSize=0)
        self.assertEqual(self.udp(empty.toStr()).rCode, dns.EFORMAT)

    def test_opt_as_question_formerr(self) -> None:
        self.assertEqual(self.ask("dcv.test", dns.OPT).rCode, dns.EFORMAT)

    def test_short_packets_dropped(self) -> None:
        with capturedLogs() as events:
            self.assertEqual(self.udp_raw(b""), [])
            self.assertEqual(self.udp_raw(b"\x00" * 11), [])
        # Dropped silently: a flood of junk must not flood the log.
        self.assertEqual(per_message(events), [])

    def test_responses_dropped(self) -> None:
        """
        A message with QR set is never answered (no reflection loops).
        """
        wire = bytearray(query("dcv.test", dns.SOA))
        wire[2] |= 0x80
        self.assertEqual(self.udp_raw(bytes(wire)), [])

    def test_malformed_body_formerr(self) -> None:
        header = struct.pack("!HBBHHHH", 77, 0x01, 0, 1, 0, 0, 1)
        # A compression pointer to itself: a loop.
        garbage = header + b"\xc0\x0c\x00\x10\x00\x01" + b"\xc0\x12"
        with capturedLogs() as events:
            [wire] = self.udp_raw(garbage)
        reply = parse(wire)
        self.assertEqual((reply.id, reply.answer, reply.rCode, reply.recDes), (77, 1, dns.EFORMAT, 1))
        self.assertEqual(per_message(events), [])

    @settings(max_examples=300)
    @given(st.binary(min_size=0, max_size=600))
    def test_garbage_never_raises(self, data: bytes) -> None:
        reply = self.successResultOf(Deferred.fromCoroutine(self.factory.respond(data, udp=True)))
        if reply is not None:
            message = parse(reply)
            self.assertEqual(message.answer, 1)
            self.assertEqual(message.id, struct.unpack("!H", data[:2])[0])
            self.assertLessEqual(len(reply), 512)

    @given(st.lists(st.sampled_from([b"", b"\x00", b"\xff", b"\xc0", b"\x3f", b"a", b"dcv", b"\x04test"]), max_size=40))
    def test_garbage_after_valid_header(self, parts: list[bytes]) -> None:
        data = query("dcv.test", dns.SOA)[:12] + b"".join(parts)
        self.successResultOf(Deferred.fromCoroutine(self.factory.respond(data, udp=False)))


class TcpTests(DnsCase):
    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.53", 40000))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def replies(self, transport: StringTransport) -> list[dns.Message]:
        data, found = transport.value(), []
        transport.clear()
        while data:
            (length,) = struct.unpack("!H", data[:2])
            found.append(parse(data[2 : 2 + length]))
            data = data[2 + length :]
        return found

    def test_answers_in_full(self) -> None:
        """
        Over TCP there is no 512-byte limit: the answer that UDP truncates
        arrives whole.
        """
        values = [f"{i:02d}" + "v" * 41 for i in range(20)]
        self.add("example.com", *values)
        protocol, transport = self.connect()
        wire = query("example.com.dcv.test")
        protocol.dataReceived(struct.pack("!H", len(wire)) + wire)
        [reply] = self.replies(transport)
        self.assertEqual((reply.trunc, reply.auth, len(reply.answers)), (0, 1, 20))

    def test_pipelined_and_split(self) -> None:
        protocol, transport = self.connect()
        one, two = query("dcv.test", dns.SOA, ident=1), query("x.org", dns.A, ident=2)
        stream = struct.pack("!H", len(one)) + one + struct.pack("!H", len(two)) + two
        for i in range(0, len(stream), 7):
            protocol.dataReceived(stream[i : i + 7])
        replies = self.replies(transport)
        self.assertEqual([(r.id, r.rCode) for r in replies], [(1, dns.OK), (2, dns.EREFUSED)])

    def test_idle_timeout(self) -> None:
        protocol, transport = self.connect()
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        wire = query("dcv.test", dns.SOA)
        protocol.dataReceived(struct.pack("!H", len(wire)) + wire)
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lost_connection_cancels_timer(self) -> None:
        protocol, transport = self.connect()
        protocol.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_configurable_timeout(self) -> None:
        self.factory = DcvDNSServerFactory(self.authority, clock=self.clock, tcp_idle_timeout=5)
        _, transport = self.connect()
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)


class ResolverTests(DnsCase):
    """
    The authority is also an ordinary L{IResolver}.
    """

    def test_lookup_text(self) -> None:
        self.add("example.com", VALUE_A)
        answers, authority, additional = self.successResultOf(self.authority.lookupText("example.com.dcv.test"))
        self.assertEqual([payload(r).data for r in answers], [[VALUE_A.encode()]])

    def test_nxdomain_and_not_ours(self) -> None:
        self.failureResultOf(self.authority.lookupText("nothing.dcv.test"), error.AuthoritativeDomainError)
        self.failureResultOf(self.authority.lookupText("example.org"), error.DomainError)


class ConstructionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.values = ValidationValues(MemoryStore(self.clock))

    def test_bad_arguments(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"zone": "bücher"}, "dcv zone"),
            ({"zone": "test"}, "dcv zone"),
            ({"nameservers": []}, "at least one nameserver"),
            ({"nameservers": "ns1.dcv.test"}, "list"),
            ({"nameservers": ["bad name"]}, "nameserver"),
            ({"txt_ttl": 61}, "TXT TTL"),
        ]
        for changes, words in cases:
            args: dict[str, Any] = {"zone": ZONE, "nameservers": ["ns1.dcv.test"], **changes}
            e = self.assertRaises(
                ValueError,
                DcvAuthority,
                args.pop("zone"),
                args.pop("nameservers"),
                self.values,
                clock=self.clock,
                **args,
            )
            self.assertIn(words, str(e))

    def test_soa_minimum_at_most_60(self) -> None:
        e = self.assertRaises(ValueError, SOAParameters, minimum=61)
        self.assertIn("SOA minimum", str(e))
        self.assertRaises(ValueError, SOAParameters, refresh=-1)

    def test_factory_arguments(self) -> None:
        authority = DcvAuthority(ZONE, ["ns1.dcv.test"], self.values, clock=self.clock)
        self.assertRaises(ValueError, DcvDNSServerFactory, authority, clock=self.clock, tcp_idle_timeout=0)
        self.assertRaises(ValueError, DcvDNSServerFactory, authority, clock=self.clock, max_udp_payload=100)

    def test_services(self) -> None:
        authority = DcvAuthority(ZONE, ["ns1.dcv.test"], self.values, clock=self.clock)
        factory = DcvDNSServerFactory(authority, clock=self.clock)
        reactor = _UDPMemoryReactor()
        services = make_dns_services(factory, port=5353, interface="::1", reactor=reactor)
        self.assertEqual([s.name for s in services], ["dns-udp", "dns-tcp"])
        for service in services:
            service.privilegedStartService()
        [(udp_port, udp_protocol, udp_interface)] = reactor.udp
        self.assertIsInstance(udp_protocol, DatagramProtocol)
        [(tcp_port, tcp_factory, _, tcp_interface)] = reactor.tcpServers
        self.assertEqual((udp_port, udp_interface, tcp_port, tcp_interface), (5353, "::1", 5353, "::1"))
        self.assertIs(tcp_factory, factory)
