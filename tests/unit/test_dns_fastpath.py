"""
The DNS fast path against the general path: the same packets through both
give the same bytes, and the in-memory view follows the store.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.names import dns

from acme_appliance.storage import MemoryStore, StorageError
from acme_appliance.validation import DcvAuthority, DcvDNSServerFactory, SOAParameters, TxtView, ValidationValues

from .test_dcv_dns import CLIENT, VALUE_A, VALUE_B, ZONE, DnsCase, parse, payload, per_message, query


def wire(domain: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in domain.split("."))


def with_header(packet: bytes, **fields: int) -> bytes:
    """
    C{packet} with header counts or flag bytes replaced.
    """
    names = ["ident", "flags", "flags2", "qd", "an", "ns", "ar"]
    values = dict(zip(names, struct.unpack_from("!HBBHHHH", packet), strict=True))
    values.update(fields)
    return struct.pack("!HBBHHHH", *(values[n] for n in names)) + packet[12:]


def with_opt(packet: bytes, rdata: bytes = b"", ttl: int = 0, owner: bytes = b"\x00") -> bytes:
    return with_header(packet, ar=1) + owner + struct.pack("!HHIH", dns.OPT, 1232, ttl, len(rdata)) + rdata


class FastPathCase(DnsCase):
    def setUp(self) -> None:
        super().setUp()
        self.view = self.values.txt_view(self.clock)
        soa = SOAParameters(minimum=30)
        nameservers = ["ns1.dcv.test", "ns2.example.net"]
        self.authority = DcvAuthority(ZONE, nameservers, self.values, clock=self.clock, soa=soa, view=self.view)
        self.factory = DcvDNSServerFactory(self.authority, clock=self.clock)
        general = DcvAuthority(ZONE, nameservers, self.values, clock=self.clock, soa=soa)
        self.general = DcvDNSServerFactory(general, clock=self.clock)

    def both(self, packet: bytes, *, udp: bool = True) -> bytes | None:
        """
        The fast path's reply, after checking it is the general path's.
        """
        fast = self.factory.fast_reply(packet, udp=udp)
        slow = self.successResultOf(Deferred.fromCoroutine(self.general.respond(packet, udp=udp)))
        if fast is not None:
            self.assertEqual(fast, slow, parse(fast).__repr__())
        return fast


class SameBytesTests(FastPathCase):
    def setUp(self) -> None:
        super().setUp()
        self.add("example.com", VALUE_A)
        self.add("multi.example", VALUE_B, VALUE_A, "third value")
        self.add("www.deep.example.org", VALUE_A)
        # The zone's own name inside a name must not confuse where it ends.
        self.add("dcv.test", VALUE_B)
        self.add("x.dcv.test.example", VALUE_B)

    def test_answered_fast(self) -> None:
        cases = [
            query("example.com.dcv.test"),
            query("example.com.dcv.test", ident=0, rd=1),
            query("multi.example.dcv.test", ident=65535),
            query(b"ExAmPlE.cOm.DcV.TeSt"),
            query(b"MULTI.example.DCV.test", edns=4096, dnssec_ok=True),
            query("example.com.dcv.test", edns=512),
            query(b"DCV.test.dcv.TEST"),
            query("x.dcv.test.example.dcv.test"),
            query("dcv.test.example.dcv.test", dns.A),
            query("example.com.dcv.test", edns=100),
            query("example.com.dcv.test", dns.A),
            query("example.com.dcv.test", dns.AAAA, edns=1232),
            query(b"eXample.com.dCv.TEST", dns.CNAME, rd=1),
            query(b"Deep.Example.Org.Dcv.Test", dns.A),
            query("example.org.dcv.test", dns.TXT, edns=1232),
            query("org.dcv.test", dns.SOA),
            with_opt(query("example.com.dcv.test"), rdata=b"\x00\x0a\x00\x08" + b"c" * 8),
            with_header(query("example.com.dcv.test"), flags2=0x10),
            with_header(query("example.com.dcv.test"), flags=0x07, flags2=0xFF),
        ]
        for packet in cases:
            self.assertIsNotNone(self.both(packet), parse(packet).queries)
            self.assertIsNotNone(self.both(packet, udp=False))

    def test_left_to_the_general_path(self) -> None:
        response = bytearray(query("example.com.dcv.test"))
        response[2] |= 0x80
        two = dns.Message(id=9, maxSize=0)
        two.queries = [dns.Query("example.com.dcv.test", dns.TXT), dns.Query("example.com.dcv.test", dns.A)]
        cases = [
            query("nothing.dcv.test"),
            query("x.dcv.test"),
            query("x.dcv.test.dcv.test"),
            query("nothing.example.com.dcv.test", dns.A),
            query("dcv.test", dns.SOA),
            query("dcv.test", dns.NS),
            query("example.com"),
            query("example.com.dcv.test.example.net"),
            query("example.com.dcv.test", dns.ALL_RECORDS),
            query("example.com.dcv.test", dns.AXFR),
            query("example.com.dcv.test", dns.OPT),
            query("example.com.dcv.test", cls=dns.CH),
            query("example.com.dcv.test", cls=dns.ANY),
            query("example.com.dcv.test", opcode=dns.OP_STATUS),
            query("example.com.dcv.test", edns=1232, version=1),
            bytes(response),
            two.toStr(),
            with_header(query("example.com.dcv.test"), an=1),
            with_header(query("example.com.dcv.test"), ar=1),
            with_opt(query("example.com.dcv.test"), owner=b"\x01a\x00"),
            with_opt(query("example.com.dcv.test"), rdata=b"x")[:-1],
            query("example.com.dcv.test") + b"\x00",
            query("example.com.dcv.test")[:-1],
            query("example.com.dcv.test")[:20],
            b"",
            b"\x00" * 11,
            # A label holding a dot, a compressed question, a label too long.
            query(b"x").replace(b"\x01x", b"\x0dexample.com\x03dcv\x04test"),
            query(b"x").replace(b"\x01x\x00", b"\x07example\x03com\xc0\x0c"),
            query(b"x").replace(b"\x01x", b"\x40" + b"a" * 64 + b"\x03dcv\x04test"),
        ]
        for packet in cases:
            self.assertIsNone(self.both(packet), packet)

    def test_truncation_is_left_to_the_general_path(self) -> None:
        self.add("big.example", *[f"{i:02d}" + "v" * 41 for i in range(20)])
        self.assertIsNone(self.both(query("big.example.dcv.test")))
        self.assertIsNotNone(self.both(query("big.example.dcv.test", edns=1232)))
        self.assertIsNotNone(self.both(query("big.example.dcv.test"), udp=False))

    @settings(max_examples=200)
    @given(
        st.sampled_from(
            [
                "example.com",
                "multi.example",
                "example.org",
                "org",
                "nothing",
                "deep.example.org",
                "dcv.test",
                "x.dcv.test",
            ]
        ),
        st.lists(st.booleans(), min_size=64, max_size=64),
        st.sampled_from([dns.TXT, dns.A, dns.AAAA, dns.MX, dns.NS, dns.SOA, 257]),
        st.one_of(st.none(), st.integers(0, 65535)),
        st.booleans(),
        st.integers(0, 65535),
        st.booleans(),
    )
    def test_random_common_queries(
        self, domain: str, upper: list[bool], qtype: int, edns: int | None, dnssec_ok: bool, ident: int, udp: bool
    ) -> None:
        name = "".join(c.upper() if u else c for c, u in zip(f"{domain}.{ZONE}", upper, strict=False))
        self.both(query(name.encode(), qtype, ident=ident, edns=edns, dnssec_ok=dnssec_ok), udp=udp)

    @settings(max_examples=300)
    @given(st.binary(min_size=0, max_size=80), st.integers(0, 60))
    def test_damaged_packets(self, junk: bytes, cut: int) -> None:
        packet = query("example.com.dcv.test", edns=1232)
        self.both(packet[:cut] + junk)
        self.both(packet[:12] + junk)

    @settings(max_examples=300)
    @given(st.integers(0, 80), st.integers(0, 255))
    def test_one_byte_changed(self, index: int, byte: int) -> None:
        for packet in [query("example.com.dcv.test", edns=1232), query("example.com.dcv.test", dns.A)]:
            if index < len(packet):
                self.both(packet[:index] + bytes([byte]) + packet[index + 1 :])

    def test_protocols_use_it(self) -> None:
        """
        The UDP protocol answers from the view without the store.
        """
        self.store.scan = None  # type: ignore[assignment]
        self.assertEqual(len(self.ask("example.com.dcv.test").answers), 1)


class _Socket:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append((data, addr))
        return len(data)


class _Port:
    def __init__(self, socket: _Socket) -> None:
        self.socket = socket

    def getHandle(self) -> _Socket:
        return self.socket


class SocketTests(FastPathCase):
    """
    Over a real port, the fast path writes to the socket itself.
    """

    def send(self, socket: _Socket) -> list[str]:
        """
        What was logged while one query was answered over C{socket}.
        """
        self.add("example.com", VALUE_A)
        protocol = self.factory.datagram_protocol()
        protocol.makeConnection(_Port(socket))  # type: ignore[arg-type]
        self.addCleanup(protocol.doStop)
        with capturedLogs() as events:
            protocol.datagramReceived(query("example.com.dcv.test"), CLIENT)
        return per_message(events)

    def test_sent_on_the_socket(self) -> None:
        socket = _Socket()
        self.send(socket)
        [(data, addr)] = socket.sent
        self.assertEqual((len(parse(data).answers), addr), (1, CLIENT))

    def test_full_buffer_drops_quietly(self) -> None:
        for error in [BlockingIOError(11, "full"), ConnectionRefusedError(111, "gone")]:
            self.assertEqual(self.send(_Socket(error)), [])

    def test_other_errors_logged(self) -> None:
        self.assertEqual(len(self.send(_Socket(OSError(1, "not permitted")))), 1)
        self.flushLoggedErrors(OSError)


class _Gate(MemoryStore):
    """
    A store whose scans wait for the test to let them through.
    """

    gate: Deferred[None] | None = None

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        if self.gate is not None:
            await self.gate
        return await super().scan(prefix)


class _Failing(MemoryStore):
    failing = False

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        if self.failing:
            raise StorageError("disk on fire")
        return await super().scan(prefix)


class ViewTests(FastPathCase):
    def setUp(self) -> None:
        super().setUp()
        self.view.startService()
        self.addCleanup(self.view.stopService)
        # Another node: the same store, its own values.
        self.other = ValidationValues(self.store)

    def fast(self, name: str, qtype: int = dns.TXT) -> dns.Message | None:
        wire = self.factory.fast_reply(query(name, qtype), udp=True)
        return None if wire is None else parse(wire)

    def texts(self, message: dns.Message | None) -> list[bytes]:
        assert message is not None
        return [b"".join(payload(r).data) for r in message.answers]

    def test_published_after_start(self) -> None:
        self.assertIsNone(self.fast("example.com.dcv.test"))
        self.add("example.com", VALUE_A)
        self.assertEqual(self.texts(self.fast("example.com.dcv.test")), [VALUE_A.encode()])

    def test_published_by_another_node(self) -> None:
        """
        Another node's values are answered through the store, never from
        the view, refreshed or not.
        """
        self.run_(self.other.add_txt("example.com", VALUE_A, ttl=300))
        for _ in range(2):
            self.assertIsNone(self.fast("example.com.dcv.test"))
            self.assertEqual(self.texts(self.ask("example.com.dcv.test")), [VALUE_A.encode()])
            self.clock.advance(self.view.refresh_interval)

    def test_validated_again_by_another_node(self) -> None:
        """
        Another node withdraws its value and publishes a new one for the
        same name (it validates again) before this node's next refresh:
        the new value is answered, not the old one.
        """
        self.run_(self.other.add_txt("example.com", VALUE_A, ttl=300))
        self.clock.advance(self.view.refresh_interval)
        self.run_(self.other.remove_txt("example.com", VALUE_A))
        self.run_(self.other.add_txt("example.com", VALUE_B, ttl=300))
        self.assertIsNone(self.fast("example.com.dcv.test"))
        self.assertEqual(self.texts(self.ask("example.com.dcv.test")), [VALUE_B.encode()])

    def test_withdrawn(self) -> None:
        self.add("example.com", VALUE_A, VALUE_B)
        self.run_(self.values.remove_txt("example.com", VALUE_A))
        self.assertEqual(self.texts(self.fast("example.com.dcv.test")), [VALUE_B.encode()])
        self.run_(self.values.remove_txt("example.com", VALUE_B))
        self.assertIsNone(self.fast("example.com.dcv.test"))
        self.assertEqual(self.ask("example.com.dcv.test").rCode, dns.ENAME)

    def test_withdrawn_by_another_node(self) -> None:
        self.add("example.com", VALUE_A)
        self.run_(self.other.remove_txt("example.com", VALUE_A))
        self.clock.advance(self.view.refresh_interval)
        self.assertIsNone(self.fast("example.com.dcv.test"))
        self.assertIsNone(self.fast("com.dcv.test", dns.A))

    def test_expired(self) -> None:
        self.add("example.com", VALUE_A, ttl=10)
        self.add("example.com", VALUE_B, ttl=1000)
        self.clock.pump([0.5] * 19)
        self.assertEqual(len(self.texts(self.fast("example.com.dcv.test"))), 2)
        self.clock.pump([0.5])
        self.assertEqual(self.texts(self.fast("example.com.dcv.test")), [VALUE_B.encode()])

    def test_empty_non_terminal(self) -> None:
        self.add("www.example.com", VALUE_A)
        reply = self.fast("example.com.dcv.test", dns.TXT)
        assert reply is not None
        self.assertEqual((reply.rCode, reply.auth, reply.answers), (dns.OK, 1, []))
        self.assertSoaAuthority(reply)

    def test_change_during_refresh_is_kept(self) -> None:
        store = _Gate(self.clock)
        values = ValidationValues(store)
        view = values.txt_view(self.clock)
        self.run_(values.add_txt("example.com", VALUE_A, ttl=300))
        store.gate = Deferred()
        refreshed = Deferred.fromCoroutine(view.refresh())
        self.run_(values.remove_txt("example.com", VALUE_A))
        self.run_(values.add_txt("example.org", VALUE_B, ttl=300))
        store.gate.callback(None)
        self.successResultOf(refreshed)
        self.assertEqual(view.values(wire("example.com")), ())
        self.assertEqual(view.values(wire("example.org")), (VALUE_B.encode(),))

    def test_failing_refreshes_empty_the_view(self) -> None:
        store = _Failing(self.clock)
        values = ValidationValues(store)
        view = values.txt_view(self.clock, refresh_interval=1)
        view.startService()
        self.addCleanup(view.stopService)
        self.run_(values.add_txt("example.com", VALUE_A, ttl=300))
        store.failing = True
        with capturedLogs() as events:
            self.clock.pump([1, 1])
            self.assertEqual(view.values(wire("example.com")), (VALUE_A.encode(),))
            self.clock.advance(1)
            self.assertEqual(view.values(wire("example.com")), ())
        self.assertEqual(len(per_message(events)), 3)
        self.flushLoggedErrors(StorageError)
        # Back: what was published before is answered through the store.
        store.failing = False
        self.clock.advance(1)
        self.assertEqual(view.values(wire("example.com")), ())
        self.run_(values.add_txt("example.org", VALUE_B, ttl=300))
        self.assertEqual(view.values(wire("example.org")), (VALUE_B.encode(),))

    def test_bounded(self) -> None:
        view = TxtView(self.store, self.clock, max_entries=2)
        self.add("a.example", VALUE_A, VALUE_B)
        self.add("b.example", VALUE_A)
        with capturedLogs():
            self.successResultOf(Deferred.fromCoroutine(view.refresh()))
        self.assertEqual(view.values(wire("a.example")), ())
        view.published("dcv/txt/b.example/1", b"one", 60)
        view.published("dcv/txt/b.example/2", b"two", 60)
        view.published("dcv/txt/a.example/1", b"three", 60)
        self.assertEqual((view.values(wire("a.example")), view.values(wire("b.example"))), ((), (b"one", b"two")))

    @settings(max_examples=200)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a.example", "b.a.example", "c.b.a.example", "other.test"]),
                st.sampled_from([b"one", b"two", b"three"]),
                st.sampled_from(["1", "2", "3"]),
                st.one_of(st.none(), st.integers(1, 120)),
            ),
            max_size=30,
        ),
        st.integers(1, 6),
    )
    def test_changes_index_as_a_rebuild_would(
        self, changes: list[tuple[str, bytes, str, int | None]], max_entries: int
    ) -> None:
        """
        Publishing and withdrawing index one name at a time; what the view
        answers is what indexing it all again would answer.
        """
        view = TxtView(self.store, self.clock, max_entries=max_entries)
        names = [wire(n) for n in ("example", "a.example", "b.a.example", "c.b.a.example", "other.test", "test")]
        for domain, value, suffix, ttl in changes:
            key = f"dcv/txt/{domain}/{suffix}"
            if ttl is None:
                view.withdrawn(key)
            else:
                view.published(key, value, ttl)
            answers = [(view.values(n), view.exists_below(n)) for n in names]
            check_at = view._check_at
            view._rebuild()
            self.assertEqual(answers, [(view.values(n), view.exists_below(n)) for n in names])
            self.assertLessEqual(check_at, view._check_at)

    def test_bad_interval(self) -> None:
        for interval in [0, -1, 61, float("nan")]:
            e = self.assertRaises(ValueError, TxtView, self.store, self.clock, refresh_interval=interval)
            self.assertIn("refresh interval", str(e))
