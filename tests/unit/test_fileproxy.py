"""
The HTTP file proxy in memory, through StubTreq.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.storage import MemoryStore
from acme_appliance.tap import site
from acme_appliance.validation import FileProxy, ValidationValues

TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
KEY_AUTHORIZATION = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
CHALLENGE_URL = "http://example.com/.well-known/acme-challenge/" + TOKEN
PKI_PATH = "/.well-known/pki-validation/ABC123DEF.txt"


class FileProxyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.values = ValidationValues(MemoryStore(self.clock))
        self.proxy = FileProxy(self.values)
        self.treq = StubTreq(self.proxy.resource())
        self.add("example.com", "/.well-known/acme-challenge/" + TOKEN, KEY_AUTHORIZATION.encode())

    def add(self, host: str, path: str, body: bytes, ttl: float = 300) -> None:
        self.successResultOf(Deferred.fromCoroutine(self.values.add_http(host, path, body, ttl=ttl)))

    def request(self, method: str, url: str, **kw: Any) -> tuple[int, Any, bytes]:
        d = getattr(self.treq, method.lower())(url, **kw)
        self.treq.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(response.content())
        return response.code, response.headers, body

    def get(self, url: str, **kw: Any) -> tuple[int, Any, bytes]:
        return self.request("GET", url, **kw)

    def test_serves_acme_challenge(self) -> None:
        code, headers, body = self.get(CHALLENGE_URL)
        self.assertEqual((code, body), (200, KEY_AUTHORIZATION.encode()))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain"])

    def test_serves_pki_validation(self) -> None:
        self.add("shop.example.com", PKI_PATH, b"line one\nline two\n")
        code, headers, body = self.get("http://shop.example.com" + PKI_PATH)
        self.assertEqual((code, body), (200, b"line one\nline two\n"))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain"])

    def test_head(self) -> None:
        code, headers, body = self.request("HEAD", CHALLENGE_URL)
        self.assertEqual((code, body), (200, b""))

    def test_host_is_normalised(self) -> None:
        for host in ["EXAMPLE.com", "example.com.", "example.com:8080", "Example.Com.:80"]:
            code, _, body = self.get(CHALLENGE_URL, headers={"Host": host})
            self.assertEqual((code, body), (200, KEY_AUTHORIZATION.encode()), host)

    def test_ipv6_host(self) -> None:
        self.add("2001:db8::1", "/.well-known/acme-challenge/" + TOKEN, b"six")
        code, _, body = self.get(CHALLENGE_URL, headers={"Host": "[2001:DB8:0::1]:80"})
        self.assertEqual((code, body), (200, b"six"))

    def test_other_host_not_found(self) -> None:
        code, headers, body = self.get(CHALLENGE_URL, headers={"Host": "www.example.com"})
        self.assertEqual((code, body), (404, b"not found\n"))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain"])

    def test_unknown_token_not_found(self) -> None:
        code, _, _ = self.get("http://example.com/.well-known/acme-challenge/other")
        self.assertEqual(code, 404)

    def test_expired_not_found(self) -> None:
        self.clock.advance(300)
        self.assertEqual(self.get(CHALLENGE_URL)[0], 404)

    def test_bad_host(self) -> None:
        for host in ["exa mple.com", "example.com:http", "[::1", "bücher.example"]:
            code, _, body = self.get(CHALLENGE_URL, headers={"Host": host})
            self.assertEqual((code, body), (400, b"bad Host header\n"), host)

    def raw(self, request: bytes) -> bytes:
        """
        Send bytes no well-behaved client would, and return the response,
        through the site the appliance serves the file proxy with.
        """
        served = site(self.proxy.resource())
        served.reactor = Clock()
        protocol = served.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        response: bytes = transport.value()
        protocol.connectionLost(None)
        return response

    def test_raw_request(self) -> None:
        response = self.raw(
            b"GET /.well-known/acme-challenge/" + TOKEN.encode() + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response)
        self.assertIn(b"\r\nContent-Length: %d\r\n" % len(KEY_AUTHORIZATION), response)
        self.assertTrue(response.endswith(b"\r\n\r\n" + KEY_AUTHORIZATION.encode()), response)

    def test_two_host_headers(self) -> None:
        response = self.raw(
            b"GET /.well-known/acme-challenge/" + TOKEN.encode() + b" HTTP/1.1\r\n"
            b"Host: example.com\r\nHost: evil.example\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 400 "), response)

    def test_missing_host(self) -> None:
        response = self.raw(b"GET /.well-known/acme-challenge/" + TOKEN.encode() + b" HTTP/1.0\r\n\r\n")
        self.assertTrue(response.startswith(b"HTTP/1.0 400 "), response)

    def test_absolute_form_request_is_not_proxied(self) -> None:
        response = self.raw(
            b"GET http://example.com/.well-known/acme-challenge/" + TOKEN.encode() + b" HTTP/1.1\r\n"
            b"Host: example.com\r\n\r\n"
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 404 "), response)
        self.assertNotIn(KEY_AUTHORIZATION.encode(), response)

    def test_traversal_and_odd_paths(self) -> None:
        self.add("example.com", PKI_PATH, b"x")
        for path in [
            "/.well-known/pki-validation/..%2F..%2Fetc%2Fpasswd",
            "/.well-known/pki-validation/%2e%2e",
            "/.well-known/pki-validation/.hidden",
            "/.well-known/acme-challenge/" + TOKEN + "/",
            "/.well-known/acme-challenge/" + TOKEN + "%00",
            "/.well-known/acme-challenge/a.b",
            "/.well-known/acme-challenge/",
            "/.well-known/../.well-known/acme-challenge/" + TOKEN,
            "/.well-known//acme-challenge/" + TOKEN,
            "//.well-known/acme-challenge/" + TOKEN,
            "/",
            "/index.html",
            "/etc/passwd",
        ]:
            code, headers, body = self.get("http://example.com" + path)
            self.assertEqual(code, 404, path)
            self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain"], path)

    def test_other_methods(self) -> None:
        for method in ["POST", "PUT", "DELETE"]:
            code, headers, _ = self.request(method, CHALLENGE_URL)
            self.assertEqual(code, 405, method)
            self.assertEqual(headers.getRawHeaders(b"allow"), [b"GET, HEAD"])
        self.assertEqual(self.request("POST", "http://example.com/other")[0], 404)

    def test_absolute_uri_is_not_proxied(self) -> None:
        """
        The request line's target is only ever a path here; a proxy-style
        absolute URI names nothing the proxy serves.
        """
        code, _, _ = self.get("http://example.com/http://evil.example/.well-known/acme-challenge/" + TOKEN)
        self.assertEqual(code, 404)
