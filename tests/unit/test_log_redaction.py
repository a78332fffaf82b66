"""
The access log never shows a directory token or the admin key, however a
client spells them: routing decodes the path and the query, so redaction
must see what routing sees.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import combinedLogFormatter

from acme_appliance.acme import redact_token, redact_uri
from acme_appliance.tap import redacting_log_formatter
from acme_appliance.testing import BASE_URL, World

TOKEN = "Zm9vYmFyLXNlY3JldC10b2tlbi0xMjM0NTY3ODkw"
KEY = "YWRtaW4ta2V5LXNlY3JldC12YWx1ZS0xMjM0NTY3"
CLIENT = IPv4Address("TCP", "192.0.2.1", 1234)


class _Request:
    """
    What the access-log formatter reads from a request.
    """

    def __init__(
        self,
        uri: bytes,
        referer: bytes | None = None,
        *,
        method: bytes = b"GET",
        agent: bytes | None = b"test",
        length: int = 10,
        address: IAddress = CLIENT,
    ) -> None:
        self.uri = uri
        self.method = method
        self.clientproto = b"HTTP/1.1"
        self.code = 200
        self.sentLength = length
        self._headers = {b"referer": referer, b"user-agent": agent}
        self._address = address

    def getClientAddress(self) -> IAddress:
        return self._address

    def getHeader(self, name: bytes) -> bytes | None:
        return self._headers.get(name.lower())


def _logged(uri: bytes, referer: bytes | None = None) -> str:
    return redacting_log_formatter("[ts]", _Request(uri, referer))


@st.composite
def _spelling(draw: Any, text: str) -> bytes:
    """
    C{text} with any characters percent-encoded (either hex case) and any
    slash doubled.
    """
    out = []
    for char in text.encode():
        if char == ord("/") and draw(st.booleans()):
            out.append(b"/" * draw(st.integers(2, 3)))
        elif draw(st.booleans()):
            hexed = b"%%%02X" % char
            out.append(hexed.lower() if draw(st.booleans()) else hexed)
        else:
            out.append(bytes([char]))
    return b"".join(out)


def _decoded(line: str) -> bytes:
    # Whatever the line shows, decoded once more: the secret must not
    # appear in any spelling either.
    return unquote_to_bytes(line.encode())


@st.composite
def _path_spelling(draw: Any) -> bytes:
    first: bytes = draw(_spelling("/acme/"))
    # A token's own slashes are never spelled out, but its characters are.
    return first + draw(_spelling(TOKEN)) + draw(_spelling("/" + draw(st.sampled_from(["directory", "new-nonce"]))))


class TokenRedactionTests(SynchronousTestCase):
    def test_plain(self) -> None:
        self.assertIn('"GET /acme/<token>/directory HTTP/1.1"', _logged(f"/acme/{TOKEN}/directory".encode()))

    def test_known_bypasses(self) -> None:
        for uri in (f"//acme/{TOKEN}/directory", f"/%61cme/{TOKEN}/directory", f"/acme%2f{TOKEN}/directory"):
            line = _logged(uri.encode())
            self.assertNotIn(TOKEN, line)
            self.assertIn("/acme/<token>/directory", line)

    @given(st.data())
    def test_any_spelling(self, data: st.DataObject) -> None:
        uri = data.draw(_path_spelling())
        line = _logged(uri)
        self.assertNotIn(TOKEN.encode(), _decoded(line))

    def test_other_paths_unchanged(self) -> None:
        self.assertEqual(redact_token(b"/health"), b"/health")
        self.assertEqual(redact_token(b"/acme"), b"/acme")
        self.assertEqual(redact_token(b"/.well-known/acme-challenge/x"), b"/.well-known/acme-challenge/x")

    def test_referer(self) -> None:
        line = _logged(b"/", referer=f"https://h//%61cme/{TOKEN}/directory?%6bey={KEY}".encode())
        self.assertNotIn(TOKEN, line)
        self.assertNotIn(KEY, line)

    def test_spellings_route(self) -> None:
        """
        The spellings above are not hypothetical: the server answers them.
        """
        world = World(self)
        secret = world.directory().split("/")[-2]
        for path in (f"/%61cme/{secret}/directory", f"/acme%2F{secret}/directory"):
            response = self.successResultOf(world.treq.get(BASE_URL + path))  # type: ignore[attr-defined]
            self.assertEqual(response.code, 200, path)


class KeyRedactionTests(SynchronousTestCase):
    def test_known_bypasses(self) -> None:
        for uri in (f"/?%6bey={KEY}", f"/?k%65y={KEY}", f"/?x=1;key={KEY}", f"/?key={KEY}&x=1"):
            line = _logged(uri.encode())
            self.assertNotIn(KEY, line)
            self.assertIn("=<redacted>", line)

    @given(st.data(), st.lists(st.sampled_from(["a=1", "b=", "c", "d=%20"]), max_size=3))
    def test_any_spelling(self, data: st.DataObject, others: list[str]) -> None:
        name = data.draw(_spelling("key"))
        value = data.draw(_spelling(KEY))
        separator = data.draw(st.sampled_from([b"&", b";"]))
        query = separator.join([*(o.encode() for o in others), name + b"=" + value])
        line = _logged(b"/?" + query)
        self.assertNotIn(KEY.encode(), _decoded(line))

    def test_other_parameters_unchanged(self) -> None:
        self.assertEqual(redact_uri(b"/orders?status=valid&limit=5"), b"/orders?status=valid&limit=5")
        self.assertEqual(redact_uri(b"/?keys=1&monkey=2"), b"/?keys=1&monkey=2")


class _Redacted:
    """
    The reference: the request as twisted.web's C{combinedLogFormatter}
    should see it, its URI and Referer redacted.
    """

    def __init__(self, request: _Request) -> None:
        self._request = request
        self.uri = redact_uri(request.uri)

    def getHeader(self, name: bytes) -> bytes | None:
        value = self._request.getHeader(name)
        if value is None or name != b"referer":
            return value
        parts = urlsplit(value)
        return urlunsplit(parts._replace(path=redact_token(parts.path), query=redact_uri(b"?" + parts.query)[1:]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


_SEGMENT = st.text("abcXYZ019-_", min_size=1, max_size=8)
_ODD = st.sampled_from(["", ".", "%2F", "%41", "a b", 'q"', "b\\s", "s'", "\u00e9", "ACME", "acme", "?key=1", ";x"])


@st.composite
def _uri(draw: Any) -> bytes:
    segments = draw(st.lists(st.one_of(_SEGMENT, _ODD), max_size=5))
    head = draw(st.sampled_from(["/acme", "/acme/" + TOKEN, "", "/health"]))
    return "/".join([head, *segments]).encode() or b"/"


class AccessLineTests(SynchronousTestCase):
    """
    The access-log line is twisted.web's combined log line of the redacted
    request, byte for byte.
    """

    def test_pinned(self) -> None:
        self.assertEqual(
            _logged(f"/acme/{TOKEN}/order/o-1".encode(), referer=b"https://h/x"),
            '"192.0.2.1" - - [ts] "GET /acme/<token>/order/o-1 HTTP/1.1" 200 10 "https://h/x" "test"',
        )
        request = _Request(b'/a"b', method=b'P\\"', agent=None, length=0, address=UNIXAddress(None))
        self.assertEqual(
            redacting_log_formatter("[ts]", request), '"-" - - [ts] "P\\\\\\" /a\\"b HTTP/1.1" 200 - "-" "-"'
        )

    def test_referer_beyond_ascii(self) -> None:
        """
        A Referer with bytes beyond ASCII is logged (escaped), its token
        hidden, rather than failing the log line.
        """
        line = _logged(b"/", referer=f"https://h\xe9/acme/{TOKEN}/x\xff?key=1".encode("latin-1"))
        self.assertIn('"https://h\\xe9/acme/<token>/x%FF?key=<redacted>"', line)

    @given(
        _uri(),
        # The reference fails on bytes beyond ASCII (see test_referer_beyond_ascii).
        st.one_of(st.none(), st.binary(max_size=12), _uri().map(lambda uri: b"https://h" + uri)).filter(
            lambda referer: referer is None or referer.isascii()
        ),
        st.one_of(st.none(), st.binary(max_size=12)),
        st.sampled_from([b"GET", b"POST", b"HE\\AD", b"x'y"]),
        st.sampled_from([0, 1, 1234]),
        st.sampled_from([IPv4Address("TCP", "192.0.2.1", 1), IPv6Address("TCP", "2001:db8::1", 1), UNIXAddress(None)]),
    )
    def test_same_as_twisted(
        self, uri: bytes, referer: bytes | None, agent: bytes | None, method: bytes, length: int, address: IAddress
    ) -> None:
        request = _Request(uri, referer, method=method, agent=agent, length=length, address=address)
        self.assertEqual(
            redacting_log_formatter("[28/Nov/2026:21:40:00 +0000]", request),
            combinedLogFormatter("[28/Nov/2026:21:40:00 +0000]", _Redacted(request)),
        )
