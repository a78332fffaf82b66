"""
The DCV DNS server logs nothing per message: a client choosing how many
queries (or how much junk) to send must not choose how big the log grows.
"""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.names import dns

from .test_dcv_dns import DnsCase, per_message, query


class QuietLogTests(DnsCase):
    def test_nothing_logged_per_message(self) -> None:
        self.add("www.example.com", "v" * 43)
        packets = [
            query("_acme-challenge.www.example.com.dcv.test"),
            query("nothing.dcv.test", dns.A),
            query("example.org", dns.A),
            query("dcv.test", opcode=dns.OP_STATUS),
            query("dcv.test", edns=1232, version=1),
            b"\x12\x34\x00\x00\x00\x01" + b"\xff" * 20,
            b"\x00" * 5,
        ]
        with capturedLogs() as events:
            for packet in packets:
                self.udp_raw(packet)
        self.assertEqual(per_message(events), [])
