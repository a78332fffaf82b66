"""
The admin API's browser session and changes: the cookie holds a signed,
expiring session (never the key), changes need a JSON content type, and a
browser session may change things only from the admin's own origin.  And
the key-less liveness path.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.admin import AdminAPI
from acme_appliance.admin._session import SESSION_LIFETIME
from acme_appliance.testing import BASE_URL, World

KEY = "s3cret-admin-key-" * 2
AUTH = {b"Authorization": [f"Bearer {KEY}".encode()]}
JSON = {b"Content-Type": [b"application/json"]}
ORIGIN = "http://admin.test"


class _Admin(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.admin = AdminAPI(
            api_key=KEY,
            store=self.world.store,
            tokens=self.world.tokens,
            policies=tuple(self.world.policies.values()),
            base_url=BASE_URL,
            clock=self.world.clock,
        )
        self.http = StubTreq(self.admin.resource())

    def request(
        self, method: str, path: str, headers: dict[bytes, list[bytes]], body: bytes | None = None, scheme: str = "http"
    ) -> tuple[int, Any, bytes]:
        kw: dict[str, Any] = {"headers": headers, "allow_redirects": False}
        if body is not None:
            kw["data"] = body
        d = self.http.request(method, f"{scheme}://admin.test{path}", **kw)  # type: ignore[attr-defined]
        self.http.flush()
        response = self.successResultOf(d)
        return response.code, response.headers, self.successResultOf(response.content())

    def login(self, scheme: str = "http") -> tuple[bytes, str]:
        code, headers, _ = self.request("GET", f"/?key={KEY}", {}, scheme=scheme)
        self.assertEqual(code, 302)
        cookie: str = headers.getRawHeaders("set-cookie")[0]
        return cookie.split(";")[0].encode(), cookie


class SessionCookieTests(_Admin):
    def test_cookie_is_not_the_key(self) -> None:
        value, cookie = self.login()
        self.assertNotIn(KEY, cookie)
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertIn(f"Max-Age={SESSION_LIFETIME}", cookie)
        self.assertNotIn("Secure", cookie)
        self.assertEqual(self.request("GET", "/cas", {b"Cookie": [value]})[0], 200)

    def test_secure_over_tls(self) -> None:
        _, cookie = self.login("https")
        self.assertIn("Secure", cookie)

    def test_raw_key_is_not_a_session(self) -> None:
        self.assertEqual(self.request("GET", "/cas", {b"Cookie": [b"acme_appliance_admin=" + KEY.encode()]})[0], 401)

    def test_session_expires(self) -> None:
        value, _ = self.login()
        self.world.clock.advance(SESSION_LIFETIME - 1)
        self.assertEqual(self.request("GET", "/cas", {b"Cookie": [value]})[0], 200)
        self.world.clock.advance(1)
        self.assertEqual(self.request("GET", "/cas", {b"Cookie": [value]})[0], 401)

    def test_tampered_session(self) -> None:
        value, _ = self.login()
        name, _, session = value.partition(b"=")
        expires, rest = session.split(b".", 1)
        later = name + b"=" + str(int(expires) + 10**6).encode() + b"." + rest
        for cookie in (later, value[:-1], name + b"=", name + b"=1.2.3"):
            self.assertEqual(self.request("GET", "/cas", {b"Cookie": [cookie]})[0], 401, cookie)

    def test_another_key_ends_sessions(self) -> None:
        value, _ = self.login()
        other = AdminAPI(api_key="another-admin-key-0123", store=self.world.store, clock=self.world.clock)
        self.http = StubTreq(other.resource())
        self.assertEqual(self.request("GET", "/cas", {b"Cookie": [value]})[0], 401)


class ChangeTests(_Admin):
    BODY = json.dumps({"policy": "shop"}).encode()

    def test_content_type_required(self) -> None:
        for content_type in (None, b"text/plain", b"application/x-www-form-urlencoded"):
            headers = dict(AUTH)
            if content_type is not None:
                headers[b"Content-Type"] = [content_type]
            code, _, body = self.request("POST", "/tokens", headers, self.BODY)
            self.assertEqual(code, 415, content_type)
            self.assertIn(b"application/json", body)
        headers = {**AUTH, b"Content-Type": [b"application/json; charset=utf-8"]}
        self.assertEqual(self.request("POST", "/tokens", headers, self.BODY)[0], 201)

    def test_browser_needs_own_origin(self) -> None:
        value, _ = self.login()
        cookie = {b"Cookie": [value], **JSON}
        for origin in (None, b"http://evil.test", b"https://admin.test", b"null"):
            headers = dict(cookie)
            if origin is not None:
                headers[b"Origin"] = [origin]
            self.assertEqual(self.request("POST", "/tokens", headers, self.BODY)[0], 403, origin)
            self.assertEqual(self.request("DELETE", "/tokens/x", headers)[0], 403, origin)
        headers = {**cookie, b"Origin": [ORIGIN.encode()]}
        self.assertEqual(self.request("POST", "/tokens", headers, self.BODY)[0], 201)
        self.assertEqual(self.request("DELETE", "/tokens/x", headers)[0], 404)

    def test_bearer_needs_no_origin(self) -> None:
        self.assertEqual(self.request("POST", "/tokens", {**AUTH, **JSON}, self.BODY)[0], 201)
        self.assertEqual(self.request("DELETE", "/tokens/x", AUTH)[0], 404)


class LivenessTests(_Admin):
    def test_livez_needs_no_key(self) -> None:
        code, headers, body = self.request("GET", "/livez", {})
        self.assertEqual((code, body), (200, b"ok\n"))
        self.assertEqual(headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertEqual(self.request("HEAD", "/livez", {})[0], 200)
