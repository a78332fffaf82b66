"""
A store that fails mid-request (Redis away) is answered 503 with
C{Retry-After}, by the one error mapping every web app shares: an ACME
C{serverInternal} problem, an admin JSON error, a plain file-proxy 503.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from acme_appliance.admin import AdminAPI
from acme_appliance.core import UNAVAILABLE_RETRY_AFTER, RouteError, Unavailable, route_errors
from acme_appliance.notify import EventJournal
from acme_appliance.stats import Metrics
from acme_appliance.storage import MemoryStore, StorageError
from acme_appliance.testing import BASE_URL, World
from acme_appliance.validation import FileProxy, ValidationValues

KEY = "k" * 32
AUTH = {b"Authorization": [f"Bearer {KEY}".encode()]}


class BreakableStore(MemoryStore):
    """
    A L{MemoryStore} whose every call raises L{StorageError} once C{broken}.
    """

    broken = False

    def __getattribute__(self, name: str) -> Any:
        if name in {"get", "set", "add", "compare_and_set", "increment", "delete", "scan"} and object.__getattribute__(
            self, "broken"
        ):

            async def fail(*args: Any, **kwargs: Any) -> Any:
                raise StorageError("redis 127.0.0.1:6379/0 unavailable: Connection refused")

            return fail
        return super().__getattribute__(name)


def fetch(case: SynchronousTestCase, http: StubTreq, method: str, url: str, **kw: Any) -> tuple[int, Any, bytes]:
    d = getattr(http, method.lower())(url, **kw)
    http.flush()
    response = case.successResultOf(d)
    return response.code, response.headers, case.successResultOf(response.content())


class RouteErrorsTests(SynchronousTestCase):
    def test_unavailable_is_503_with_retry_after(self) -> None:
        seen: list[RouteError] = []

        class App:
            app = Klein()

            @app.route("/")
            def index(self, request: IRequest) -> bytes:
                raise Unavailable("gone fishing")

            @route_errors(app, internal=False)
            def render(self, request: IRequest, error: RouteError) -> bytes:
                seen.append(error)
                request.setResponseCode(error.status)
                return b"later"

        code, headers, body = fetch(self, StubTreq(App().app.resource()), "GET", "http://x/")
        self.assertEqual((code, body), (503, b"later"))
        self.assertEqual(headers.getRawHeaders("Retry-After"), [str(UNAVAILABLE_RETRY_AFTER)])
        self.assertIsInstance(seen[0].failure.value, Unavailable)

    def test_storage_error_is_unavailable(self) -> None:
        self.assertIsInstance(StorageError("x"), Unavailable)


class AcmeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = BreakableStore(Clock())
        self.world = World(self, store=self.store, clock=self.store._clock)  # type: ignore[arg-type]
        self.directory = self.world.directory()

    def assertUnavailable(self, code: int, headers: Any, body: bytes) -> None:
        self.assertEqual(code, 503)
        self.assertEqual(headers.getRawHeaders("Retry-After"), [str(UNAVAILABLE_RETRY_AFTER)])
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/problem+json"])
        self.assertEqual(
            json.loads(body),
            {
                "type": "urn:ietf:params:acme:error:serverInternal",
                "detail": "the appliance's storage is unavailable; retry later",
                "status": 503,
            },
        )

    def test_get(self) -> None:
        self.store.broken = True
        self.assertUnavailable(*fetch(self, self.world.treq, "GET", self.directory))

    def test_post(self) -> None:
        client = self.world.client(self.directory)  # holds the directory's nonce
        self.store.broken = True
        response = client.register()
        self.assertUnavailable(response.code, response.headers, response.body)


class AdminTests(SynchronousTestCase):
    def test_admin_json_503(self) -> None:
        world = World(self, store=BreakableStore(Clock()))
        store = world.store
        assert isinstance(store, BreakableStore)
        metrics = Metrics(store)
        self.successResultOf(Deferred.fromCoroutine(metrics.restore()))
        admin = AdminAPI(
            api_key=KEY,
            store=store,
            metrics=metrics,
            ca_health=world.issuance.health.snapshot,
            tokens=world.tokens,
            repository=world.repo,
            journal=EventJournal(store),
            policies=tuple(world.policies.values()),
            cas={"builtin": "local"},
            base_url=BASE_URL,
            events=world.issuance.events,
            clock=world.clock,
        )
        store.broken = True
        code, headers, body = fetch(self, StubTreq(admin.resource()), "GET", f"{BASE_URL}/tokens", headers=AUTH)
        self.assertEqual((code, json.loads(body)), (503, {"error": "storage unavailable; retry later"}))
        self.assertEqual(headers.getRawHeaders("Retry-After"), [str(UNAVAILABLE_RETRY_AFTER)])


class FileProxyTests(SynchronousTestCase):
    def test_file_proxy_503(self) -> None:
        store = BreakableStore(Clock())
        proxy = FileProxy(ValidationValues(store))
        store.broken = True
        url = "http://example.com/.well-known/acme-challenge/" + "t" * 43
        code, headers, body = fetch(self, StubTreq(proxy.resource()), "GET", url)
        self.assertEqual((code, body), (503, b"storage unavailable; retry later\n"))
        self.assertEqual(headers.getRawHeaders("Retry-After"), [str(UNAVAILABLE_RETRY_AFTER)])
