"""
The access log never shows a directory token or the admin key, however a
client spells them: routing decodes the path and the query, so redaction
must see what routing sees.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.acme import redact_token, redact_uri
from acme_appliance.tap import redacting_log_formatter
from acme_appliance.testing import BASE_URL, World

TOKEN = "Zm9vYmFyLXNlY3JldC10b2tlbi0xMjM0NTY3ODkw"
KEY = "YWRtaW4ta2V5LXNlY3JldC12YWx1ZS0xMjM0NTY3"


class _Request:
    """
    What the access-log formatter reads from a request.
    """

    def __init__(self, uri: bytes, referer: bytes | None = None) -> None:
        self.uri = uri
        self.method = b"GET"
        self.clientproto = b"HTTP/1.1"
        self.code = 200
        self.sentLength = 10
        self._headers = {b"referer": referer, b"user-agent": b"test"}

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", "192.0.2.1", 1234)

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
