"""
The admin API in memory: Klein resource through StubTreq, with the ACME
server's World producing orders and events.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.admin import AdminAPI
from acme_appliance.notify import EventBus, EventJournal, EventName, PolicyEvent
from acme_appliance.stats import Metrics
from acme_appliance.testing import BASE_URL, World, issued

KEY = "k" * 32
AUTH = {b"Authorization": [f"Bearer {KEY}".encode()]}


class AdminTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        events = self.world.issuance.events
        self.journal = EventJournal(self.world.store)
        events.subscribe(self.journal)
        self.metrics = Metrics(self.world.store)
        self.successResultOf(Deferred.fromCoroutine(self.metrics.restore()))
        events.subscribe(self.metrics.observe)
        self.admin = AdminAPI(
            api_key=KEY,
            store=self.world.store,
            metrics=self.metrics,
            ca_health=self.world.issuance.health.snapshot,
            tokens=self.world.tokens,
            repository=self.world.repo,
            journal=self.journal,
            policies=tuple(self.world.policies.values()),
            cas={"builtin": "local"},
            base_url=BASE_URL,
            events=events,
            clock=self.world.clock,
        )
        self.http = StubTreq(self.admin.resource())

    def request(self, method: str, path: str, *, headers: Any = AUTH, body: Any = None) -> tuple[int, Any, Any]:
        kw: dict[str, Any] = {"headers": headers, "allow_redirects": False}
        if body is not None:
            kw["data"] = body if isinstance(body, bytes) else json.dumps(body).encode()
            kw["headers"] = {b"Content-Type": [b"application/json"], **headers}
        d = self.http.request(method, f"http://admin.test{path}", **kw)  # type: ignore[attr-defined]
        self.http.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        is_json = (response.headers.getRawHeaders("content-type") or [""])[0] == "application/json"
        return response.code, response.headers, json.loads(content) if is_json else content

    def test_key_required(self) -> None:
        for method, path in (
            ("GET", "/health"),
            ("GET", "/metrics"),
            ("GET", "/tokens"),
            ("POST", "/tokens"),
            ("DELETE", "/tokens/x"),
            ("GET", "/orders"),
            ("GET", "/orders/x"),
            ("GET", "/cas"),
            ("GET", "/"),
            ("GET", "/dashboard.json"),
        ):
            for headers in (
                {},
                {b"Authorization": [b"Bearer wrong-key-wrong-key"]},
                {b"Authorization": [KEY.encode()]},
            ):
                code, _, body = self.request(method, path, headers=headers)
                self.assertEqual(code, 401, (method, path, headers))
                self.assertEqual(body, {"error": "a valid bearer key is required"})

    def test_token_lifecycle(self) -> None:
        code, _, created = self.request("POST", "/tokens", body={"policy": "shop", "domains": ["WWW.example.com."]})
        self.assertEqual(code, 201, created)
        self.assertEqual(created["domains"], ["www.example.com"])
        self.assertTrue(created["directory_url"].startswith(f"{BASE_URL}/acme/"))
        # The directory URL works for a client.
        client = self.world.client(created["directory_url"])
        order, _ = issued(self.world, client, ["www.example.com"])
        self.assertEqual(order["status"], "valid")
        code, _, tokens = self.request("GET", "/tokens")
        self.assertEqual([(t["id"], t["active"]) for t in tokens], [(created["id"], True)])
        self.assertNotIn("directory_url", tokens[0])
        code, _, revoked = self.request("DELETE", f"/tokens/{created['id']}")
        self.assertEqual((code, revoked["active"]), (200, False))
        self.assertEqual(self.request("DELETE", f"/tokens/{created['id']}")[0], 404)
        self.assertEqual(self.world.client(created["directory_url"]).get(created["directory_url"]).code, 404)

    def test_bad_token_requests(self) -> None:
        for body, message in (
            ({"policy": "nope"}, "no policy named 'nope'"),
            ({"policy": "shop", "domains": ["www.other.org"]}, "outside policy 'shop'"),
            ({"policy": "shop", "domains": "x"}, "'domains' must be an array"),
            ({}, "'policy' must be"),
            (b"{not json", "not JSON"),
            ([1], "must be a JSON object"),
        ):
            code, _, answer = self.request("POST", "/tokens", body=body)
            self.assertEqual(code, 400, body)
            self.assertIn(message, answer["error"])

    def test_order_history(self) -> None:
        client = self.world.client()
        order, _ = issued(self.world, client, ["example.com"])
        code, _, orders = self.request("GET", "/orders?status=valid&name=example.com")
        self.assertEqual(code, 200)
        [summary] = orders
        self.assertEqual((summary["status"], summary["ca"], summary["names"]), ("valid", "builtin", ["example.com"]))
        code, _, detail = self.request("GET", f"/orders/{summary['id']}")
        self.assertEqual(
            [e["event"] for e in detail["history"]], ["order.created", "order.processing", "certificate.issued"]
        )
        self.assertEqual(detail["history"][-1]["details"]["mode"], "new")
        self.assertIn("finalize_to_done", detail["timings"])
        self.assertEqual(self.request("GET", "/orders?status=invalid")[2], [])
        self.assertEqual(self.request("GET", "/orders?status=bogus")[0], 400)
        self.assertEqual(self.request("GET", "/orders?limit=0")[0], 400)
        self.assertEqual(self.request("GET", "/orders/nope")[0], 404)

    def test_metrics_and_restart(self) -> None:
        """
        /metrics counts what happened; the totals come back after a restart
        (a new Metrics on the same store).
        """
        for _ in range(3):
            issued(self.world, self.world.client(), ["example.com"])
        code, headers, text = self.request("GET", "/metrics")
        self.assertEqual(code, 200)
        samples = [s for f in text_string_to_metric_families(text.decode()) for s in f.samples]
        issued_total = sum(s.value for s in samples if s.name == "acme_appliance_certificates_issued_total")
        self.assertEqual(issued_total, 3)
        self.successResultOf(self.metrics.stopService())  # the stop writes the totals
        restarted = Metrics(self.world.store)
        restarted.observe(EventBus(self.world.clock).emit(PolicyEvent, name=EventName.ORDER_CREATED))
        self.successResultOf(Deferred.fromCoroutine(restarted.restore()))
        self.assertEqual(restarted.total("acme_appliance_certificates_issued_total"), 3)
        # 3 orders + 1 observed before the restore finished: none twice.
        self.assertEqual(restarted.value("acme_appliance_orders_total", status="pending"), 4)

    def test_dashboard(self) -> None:
        issued(self.world, self.world.client(), ["example.com"])
        code, _, data = self.request("GET", "/dashboard.json")
        self.assertEqual(code, 200)
        self.assertEqual(len(data["issued_per_hour"]), 24)
        self.assertEqual(data["issued_per_hour"][-1]["new"], 1)
        self.assertEqual(data["by_ca"], [{"ca": "builtin", "issued": 1, "failed": 0}])

    def test_browser_login(self) -> None:
        code, headers, _ = self.request("GET", f"/?key={KEY}", headers={})
        self.assertEqual(code, 302)
        cookie = headers.getRawHeaders("set-cookie")[0]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        value = cookie.split(";")[0].encode()
        code, _, _ = self.request("GET", "/cas", headers={b"Cookie": [value]})
        self.assertEqual(code, 200)
        self.assertEqual(self.request("GET", "/?key=wrong", headers={})[0], 401)

    def test_cas(self) -> None:
        code, _, cas = self.request("GET", "/cas")
        self.assertEqual(cas, {"builtin": {"kind": "local", "up": True, "failures": 0, "down_since": None}})
