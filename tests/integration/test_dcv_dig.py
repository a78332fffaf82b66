"""
The dcv DNS server on loopback, questioned by the real C{dig}.

The server runs in this test's reactor, so C{dig} runs as a child process
the reactor watches (never a blocking C{subprocess.run}).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Coroutine
from typing import Any, cast

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from acme_appliance.storage import MemoryStore
from acme_appliance.validation import (
    DcvAuthority,
    DcvDNSServerFactory,
    IDNSReactor,
    ValidationValues,
    make_dns_services,
)

from .tools import AddressInUse, free_port, require, start_retrying

ZONE = "dcv.test"
VALUE_A = "kWwkYm1Qb3AcRj0X2PuC7JlD7xT8Cb4kTzBRaC3Ir0k"
VALUE_B = "Zq1mNvBdHq4HWuR2hO9sM1PqNzXyG5cUdB3V7oEw8tA"


def deferred_test(method: Callable[[Any], Coroutine[Any, Any, None]]) -> Callable[[Any], Deferred[None]]:
    @functools.wraps(method)
    def run(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(method(self))

    return run


@attrs.frozen
class DigResult:
    output: str
    status: str | None
    flags: list[str]
    sections: dict[str, list[str]]

    @classmethod
    def parse(cls, output: str) -> DigResult:
        status = re.search(r"status: (\w+)", output)
        flags = re.search(r";; flags:([^;]*);", output)
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in output.splitlines():
            header = re.match(r";; (\w+) SECTION:$", line)
            if header:
                current = sections.setdefault(header.group(1), [])
            elif not line.strip():
                current = None
            elif current is not None:
                current.append(line)
        return cls(
            output=output,
            status=status.group(1) if status else None,
            flags=flags.group(1).split() if flags else [],
            sections=sections,
        )

    def records(self, section: str, rtype: str) -> list[list[str]]:
        return [line.split() for line in self.sections.get(section, []) if line.split()[3:4] == [rtype]]


class DigTests(TestCase):
    timeout = 60
    #: Whether the server answers from the in-memory view (the fast path).
    fast = False

    def setUp(self) -> None:
        # The same lookup as world.dig(): a skip, or under CI a failure.
        self.dig_path = require("dig")
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.values = ValidationValues(MemoryStore(reactor))
        view = self.values.txt_view(reactor) if self.fast else None
        authority = DcvAuthority(ZONE, ["ns1.dcv.test", "ns2.example.net"], self.values, clock=reactor, view=view)
        factory = DcvDNSServerFactory(authority, clock=reactor)
        self.port = start_retrying(lambda: self.start_server(factory), "the dcv DNS server")

    def start_server(self, factory: DcvDNSServerFactory) -> int:
        """
        The DNS server on a fresh port (free for UDP and TCP when chosen).

        @raise AddressInUse: it was taken before the bind.
        """
        port = free_port()
        parent = MultiService()
        for service in make_dns_services(
            factory, port=port, interface="127.0.0.1", reactor=cast(IDNSReactor, self.reactor)
        ):
            service.setServiceParent(parent)
        try:
            parent.privilegedStartService()
        except CannotListenError as e:
            parent.stopService()
            raise AddressInUse(str(e)) from None
        parent.startService()
        self.addCleanup(parent.stopService)
        return port

    async def add(self, domain: str, *values: str) -> None:
        for value in values:
            await self.values.add_txt(domain, value, ttl=300)

    async def dig(self, *args: str) -> DigResult:
        out, err, code = await getProcessOutputAndValue(
            self.dig_path,
            ["@127.0.0.1", "-p", str(self.port), "+norecurse", "+time=5", "+tries=1", *args],
            env=dict(os.environ),
            reactor=self.reactor,
        )
        output = out.decode("utf-8", "replace")
        self.assertIn(code, (0, 9), f"dig failed ({code}): {err!r}\n{output}")
        return DigResult.parse(output)

    @deferred_test
    async def test_soa_at_apex(self) -> None:
        result = await self.dig(ZONE, "SOA")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertIn("aa", result.flags)
        [soa] = result.records("ANSWER", "SOA")
        self.assertEqual(soa[0], "dcv.test.")
        self.assertEqual(soa[4:6], ["ns1.dcv.test.", "hostmaster.dcv.test."])
        self.assertLessEqual(int(soa[-1]), 60)

    @deferred_test
    async def test_ns_at_apex(self) -> None:
        result = await self.dig(ZONE, "NS")
        self.assertIn("aa", result.flags)
        self.assertEqual(sorted(r[4] for r in result.records("ANSWER", "NS")), ["ns1.dcv.test.", "ns2.example.net."])

    @deferred_test
    async def test_nxdomain(self) -> None:
        result = await self.dig("nothing.dcv.test", "TXT")
        self.assertEqual(result.status, "NXDOMAIN", result.output)
        self.assertIn("aa", result.flags)
        self.assertNotIn("ANSWER", result.sections)
        self.assertEqual(len(result.records("AUTHORITY", "SOA")), 1, result.output)

    @deferred_test
    async def test_nodata(self) -> None:
        await self.add("example.com", VALUE_A)
        result = await self.dig("example.com.dcv.test", "A")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertIn("aa", result.flags)
        self.assertNotIn("ANSWER", result.sections)
        self.assertEqual(len(result.records("AUTHORITY", "SOA")), 1, result.output)

    @deferred_test
    async def test_refused_outside_the_zone(self) -> None:
        result = await self.dig("example.org", "A")
        self.assertEqual(result.status, "REFUSED", result.output)
        self.assertNotIn("aa", result.flags)
        self.assertNotIn("ra", result.flags)

    @deferred_test
    async def test_refused_even_when_recursion_is_asked(self) -> None:
        result = await self.dig("+recurse", "example.org", "A")
        self.assertEqual(result.status, "REFUSED", result.output)
        self.assertNotIn("ra", result.flags)

    @deferred_test
    async def test_two_txt_values_on_one_name(self) -> None:
        await self.add("example.com", VALUE_A, VALUE_B)
        result = await self.dig("example.com.dcv.test", "TXT")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertIn("aa", result.flags)
        txt = result.records("ANSWER", "TXT")
        self.assertEqual(sorted(r[4] for r in txt), sorted([f'"{VALUE_A}"', f'"{VALUE_B}"']))
        self.assertTrue(all(int(r[1]) <= 60 for r in txt))

    @deferred_test
    async def test_tcp(self) -> None:
        await self.add("example.com", VALUE_A, VALUE_B)
        result = await self.dig("+tcp", "example.com.dcv.test", "TXT")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertEqual(len(result.records("ANSWER", "TXT")), 2)
        self.assertIn("(TCP)", result.output)

    @deferred_test
    async def test_case_echoed(self) -> None:
        await self.add("example.com", VALUE_A)
        result = await self.dig("ExAmPlE.com.DcV.TeSt", "TXT")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertEqual(result.sections["QUESTION"][0].split()[0], ";ExAmPlE.com.DcV.TeSt.")
        self.assertEqual([r[0] for r in result.records("ANSWER", "TXT")], ["ExAmPlE.com.DcV.TeSt."])

    @deferred_test
    async def test_axfr_refused(self) -> None:
        result = await self.dig(ZONE, "AXFR")
        self.assertIn("Transfer failed", result.output)
        self.assertNotRegex(result.output, r"\bIN\s+SOA\b")

    @deferred_test
    async def test_other_opcodes_not_implemented(self) -> None:
        result = await self.dig("+opcode=notify", ZONE, "SOA")
        self.assertEqual(result.status, "NOTIMP", result.output)
        self.assertIn("qr", result.flags)

    @deferred_test
    async def test_edns_echoed(self) -> None:
        result = await self.dig("+edns=0", "+bufsize=4096", ZONE, "SOA")
        self.assertRegex(result.output, r"; EDNS: version: 0, flags:[^;]*; udp: 1232")
        plain = await self.dig("+noedns", ZONE, "SOA")
        self.assertNotIn("OPT PSEUDOSECTION", plain.output)
        self.assertEqual(plain.status, "NOERROR")

    @deferred_test
    async def test_truncated_over_udp_then_whole_over_tcp(self) -> None:
        await self.add("example.com", *[f"{i:02d}" + "v" * 41 for i in range(20)])
        truncated = await self.dig("+ignore", "+noedns", "example.com.dcv.test", "TXT")
        self.assertIn("tc", truncated.flags, truncated.output)
        retried = await self.dig("+noedns", "example.com.dcv.test", "TXT")
        self.assertEqual(len(retried.records("ANSWER", "TXT")), 20, retried.output)


class FastPathDigTests(DigTests):
    """
    The same questions answered through the fast path where it applies
    (values published here go straight into the view).
    """

    fast = True
