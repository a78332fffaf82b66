"""
The validation value store and the names it is keyed by, on a MemoryStore
with a Clock.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import InvalidName
from acme_appliance.storage import MemoryStore
from acme_appliance.validation import (
    InvalidValue,
    ValidationValues,
    check_http_path,
    host_from_header,
    normalise_domain,
    normalise_host,
)

T = TypeVar("T")
TOKEN_PATH = "/.well-known/acme-challenge/abc_DEF-123"
VALUE_A = "kWwkYm1Qb3AcRj0X2PuC7JlD7xT8Cb4kTzBRaC3Ir0k"
VALUE_B = "Zq1mNvBdHq4HWuR2hO9sM1PqNzXyG5cUdB3V7oEw8tA"


class ValuesCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore(self.clock)
        self.values = ValidationValues(self.store)

    def run_(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def fails(self, coroutine: Coroutine[Any, Any, object], exception: type[Exception]) -> str:
        failure = self.failureResultOf(Deferred.fromCoroutine(coroutine), exception)
        return str(failure.value)


class TxtValuesTests(ValuesCase):
    def test_two_values_on_one_name(self) -> None:
        """
        A wildcard and its base name share one DNS name: both values are
        served at once.
        """
        self.run_(self.values.add_txt("example.com", VALUE_A, ttl=300))
        self.run_(self.values.add_txt("example.com", VALUE_B, ttl=300))
        self.assertEqual(sorted(self.run_(self.values.txt_values("example.com"))), sorted([VALUE_A, VALUE_B]))

    def test_names_are_normalised(self) -> None:
        self.run_(self.values.add_txt("ExAmple.COM.", VALUE_A, ttl=300))
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [VALUE_A])
        self.assertEqual(self.run_(self.values.txt_values("EXAMPLE.com.")), [VALUE_A])

    def test_names_do_not_leak_into_each_other(self) -> None:
        self.run_(self.values.add_txt("example.com", VALUE_A, ttl=300))
        self.run_(self.values.add_txt("example.com.evil.net", VALUE_B, ttl=300))
        self.run_(self.values.add_txt("www.example.com", VALUE_B, ttl=300))
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [VALUE_A])
        self.assertEqual(self.run_(self.values.txt_values("other.com")), [])

    def test_each_value_expires_on_its_own(self) -> None:
        self.run_(self.values.add_txt("example.com", VALUE_A, ttl=100))
        self.clock.advance(50)
        self.run_(self.values.add_txt("example.com", VALUE_B, ttl=100))
        self.clock.advance(60)
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [VALUE_B])
        self.clock.advance(50)
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [])

    def test_adding_again_renews(self) -> None:
        self.run_(self.values.add_txt("example.com", VALUE_A, ttl=100))
        self.clock.advance(90)
        self.run_(self.values.add_txt("example.com", VALUE_A, ttl=100))
        self.clock.advance(90)
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [VALUE_A])

    def test_remove_one_keeps_the_other(self) -> None:
        self.run_(self.values.add_txt("example.com", VALUE_A, ttl=300))
        self.run_(self.values.add_txt("example.com", VALUE_B, ttl=300))
        self.run_(self.values.remove_txt("EXAMPLE.com", VALUE_A))
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [VALUE_B])
        self.run_(self.values.remove_txt("example.com", VALUE_A))
        self.assertEqual(self.run_(self.values.txt_values("example.com")), [VALUE_B])

    def test_has_txt_below(self) -> None:
        self.run_(self.values.add_txt("a.b.example.com", VALUE_A, ttl=300))
        self.assertTrue(self.run_(self.values.has_txt_below("b.example.com")))
        self.assertTrue(self.run_(self.values.has_txt_below("com")))
        self.assertFalse(self.run_(self.values.has_txt_below("a.b.example.com")))
        self.assertFalse(self.run_(self.values.has_txt_below("ample.com")))
        self.assertFalse(self.run_(self.values.has_txt_below("org")))

    def test_non_ascii_name_rejected(self) -> None:
        message = self.fails(self.values.add_txt("bücher.example", VALUE_A, ttl=300), InvalidName)
        self.assertIn("A-labels", message)

    def test_wildcard_rejected(self) -> None:
        self.fails(self.values.add_txt("*.example.com", VALUE_A, ttl=300), InvalidName)

    def test_bad_values_rejected(self) -> None:
        for value, words in [("", "1-255"), ("x" * 256, "1-255"), ("a\nb", "printable"), ("é", "printable")]:
            self.assertIn(words, self.fails(self.values.add_txt("example.com", value, ttl=300), InvalidValue))
        self.fails(self.values.add_txt("example.com", b"abc", ttl=300), InvalidValue)  # type: ignore[arg-type]
        self.assertEqual(self.run_(self.store.scan("")), [])

    def test_bad_ttl_rejected(self) -> None:
        for ttl in [0, -1, float("nan"), float("inf"), True]:
            message = self.fails(self.values.add_txt("example.com", VALUE_A, ttl=ttl), InvalidValue)
            self.assertIn("lifetime", message)


class HttpValuesTests(ValuesCase):
    def test_add_get_remove(self) -> None:
        self.run_(self.values.add_http("Example.com.", TOKEN_PATH, b"abc.def", ttl=300))
        self.assertEqual(self.run_(self.values.http_body("example.com", TOKEN_PATH)), b"abc.def")
        self.assertIsNone(self.run_(self.values.http_body("www.example.com", TOKEN_PATH)))
        self.run_(self.values.remove_http("EXAMPLE.COM", TOKEN_PATH))
        self.assertIsNone(self.run_(self.values.http_body("example.com", TOKEN_PATH)))

    def test_expires(self) -> None:
        self.run_(self.values.add_http("example.com", TOKEN_PATH, b"x", ttl=10))
        self.clock.advance(10)
        self.assertIsNone(self.run_(self.values.http_body("example.com", TOKEN_PATH)))

    def test_ip_hosts(self) -> None:
        self.run_(self.values.add_http("[2001:DB8::0:1]", TOKEN_PATH, b"v6", ttl=10))
        self.run_(self.values.add_http("192.0.2.1", TOKEN_PATH, b"v4", ttl=10))
        self.assertEqual(self.run_(self.values.http_body("2001:db8::1", TOKEN_PATH)), b"v6")
        self.assertEqual(self.run_(self.values.http_body("192.0.2.1", TOKEN_PATH)), b"v4")

    def test_bad_paths_rejected(self) -> None:
        for path in [
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/a.b",
            "/.well-known/acme-challenge/a/b",
            "/.well-known/pki-validation/../x",
            "/.well-known/pki-validation/a..txt",
            "/.well-known/pki-validation/.hidden",
            "/.well-known/other/x",
            "/etc/passwd",
        ]:
            self.fails(self.values.add_http("example.com", path, b"x", ttl=10), InvalidValue)
        self.assertEqual(self.run_(self.store.scan("")), [])

    def test_bad_body_rejected(self) -> None:
        self.fails(self.values.add_http("example.com", TOKEN_PATH, "text", ttl=10), InvalidValue)  # type: ignore[arg-type]
        message = self.fails(self.values.add_http("example.com", TOKEN_PATH, b"x" * 65537, ttl=10), InvalidValue)
        self.assertIn("65536", message)

    def test_bad_host_rejected(self) -> None:
        for host in ["exa mple.com", "bücher.example", "[192.0.2.1]", "fe80::1%eth0", "a/b.com", ""]:
            self.fails(self.values.add_http(host, TOKEN_PATH, b"x", ttl=10), InvalidName)


class NameTests(SynchronousTestCase):
    def test_host_from_header(self) -> None:
        for header, host in [
            (b"Example.COM", "example.com"),
            (b"example.com.", "example.com"),
            (b"example.com:8080", "example.com"),
            (b"example.com.:80", "example.com"),
            (b"example.com:", "example.com"),
            (b"[2001:DB8::1]:443", "2001:db8::1"),
            (b"[::1]", "::1"),
            (b"192.0.2.7:80", "192.0.2.7"),
        ]:
            self.assertEqual(host_from_header(header), host, header)

    def test_bad_host_headers(self) -> None:
        for header in [
            b"",
            b":80",
            b"example.com:http",
            b"a:1:2",
            b"[::1",
            b"[::1]x",
            b"::1",
            b"ex\xc3\xa4.com",
            b"a b",
        ]:
            self.assertRaises(InvalidName, host_from_header, header)

    def test_check_http_path(self) -> None:
        self.assertEqual(check_http_path(TOKEN_PATH), TOKEN_PATH)
        path = "/.well-known/pki-validation/ABC123_x-y.txt"
        self.assertEqual(check_http_path(path), path)

    def test_normalise(self) -> None:
        self.assertEqual(normalise_domain("XN--Bcher-kva.Example."), "xn--bcher-kva.example")
        self.assertEqual(normalise_host("2001:0db8:0:0::1"), "2001:db8::1")

    @given(st.binary(max_size=300))
    def test_host_header_parser_only_raises_invalid_name(self, header: bytes) -> None:
        try:
            host = host_from_header(header)
        except InvalidName:
            return
        self.assertEqual(normalise_host(host), host)
        self.assertNotIn("/", host)

    @given(st.text(max_size=300))
    def test_path_checker_only_raises_invalid_value(self, path: str) -> None:
        try:
            check_http_path(path)
        except InvalidValue:
            return
        self.assertNotIn("..", path)
        self.assertNotIn("/", path.split("/.well-known/", 1)[1].split("/", 1)[1])
