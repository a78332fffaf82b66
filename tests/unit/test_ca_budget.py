"""
CA rate budgets: C{[[ca]] limits} in the configuration, the L{BudgetLedger}
in the store (counts, sliding windows, the race for the last slot, which
names share a budget), L{FailoverIssuer} passing over a CA without room,
and issuance jobs that wait for budget instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from acme_appliance.ca import CAError, IssueRequest
from acme_appliance.ca.local import LocalCA
from acme_appliance.ca.upstream._replies import Reply, problem_error
from acme_appliance.config import load_config
from acme_appliance.core import ProblemType
from acme_appliance.issuance import BudgetExhausted, BudgetKind, BudgetLedger, BudgetUse, CALimit, NoRoom, Reservation
from acme_appliance.issuance._budget import REFRESH_DELAY, registered_domain
from acme_appliance.issuance._failover import FailoverIssuer
from acme_appliance.issuance._health import CAHealth
from acme_appliance.notify import CaBudgetExhausted, EventBus, EventJournal, EventName
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.stats import Metrics, dashboard_data
from acme_appliance.storage import MemoryStore
from acme_appliance.tap import ApplianceService
from acme_appliance.testing import ScriptedCA, StubAcmeClient, World, make_csr, self_signed_pem

from .test_config import ConfigTestCase
from .test_tap_wiring import config_file

T = TypeVar("T")
DAY = 86400.0
WEEK = 7 * DAY
NAME_SET = BudgetKind.CERTIFICATES_PER_NAME_SET
DOMAIN = BudgetKind.CERTIFICATES_PER_REGISTERED_DOMAIN
ORDERS = BudgetKind.ORDERS
RATE_LIMITED = CAError(
    "CA primary: too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s",
    transient=True,
    problem_type=ProblemType.RATE_LIMITED,
    retry_after=120.0,
)


def limits(data: dict[str, Any], ca: int, *entries: Any) -> None:
    data["ca"][ca]["limits"] = list(entries)


class ConfigTests(ConfigTestCase):
    def test_limits(self) -> None:
        def change(data: dict[str, Any]) -> None:
            limits(
                data,
                1,
                {"what": "orders", "max": 300, "window": "3h"},
                {"what": "certificates_per_name_set", "max": 5, "window": "7d"},
                {"what": "certificates_per_registered_domain", "max": 50, "window": "90m"},
            )
            limits(data, 0, {"what": "orders", "max": 1, "window": "45s"})

        config = self.load(change)
        self.assertEqual(
            config.ca("le").limits,
            (CALimit(ORDERS, 300, 3 * 3600.0), CALimit(NAME_SET, 5, WEEK), CALimit(DOMAIN, 50, 5400.0)),
        )
        self.assertEqual(config.ca("builtin").limits, (CALimit(ORDERS, 1, 45.0),))

    def test_no_limits(self) -> None:
        self.assertEqual(self.load().ca("le").limits, ())

    def test_problems(self) -> None:
        key = 'ca "le".limits'
        good = {"what": "orders", "max": 3, "window": "3h"}
        cases: list[tuple[Any, str, str]] = [
            ("orders", key, "expected an array of tables"),
            ([1], f"{key}[1]", "expected a table { what, max, window }, got an integer"),
            ([{**good, "what": "names"}], f"{key}[1].what", "'names' is not one of 'orders'"),
            ([{**good, "max": 0}], f"{key}[1].max", "must be at least 1, got 0"),
            ([{**good, "max": 1.5}], f"{key}[1].max", "expected an integer, got a float"),
            ([{"what": "orders", "window": "3h"}], f"{key}[1].max", "missing (required)"),
            ([{**good, "window": "3 hours"}], f"{key}[1].window", "is not a duration"),
            ([{**good, "window": "0d"}], f"{key}[1].window", "must be longer than 0"),
            ([{**good, "window": "1w"}], f"{key}[1].window", "unit s, m, h or d"),
            ([{**good, "window": 3}], f"{key}[1].window", "expected a string, got an integer"),
            ([{**good, "per": "account"}], f"{key}[1].per", "unknown key"),
            ([good, good], f"{key}[2].what", "'orders' is limited twice"),
        ]
        for value, where, fragment in cases:

            def change(data: dict[str, Any], value: Any = value) -> None:
                data["ca"][1]["limits"] = value

            self.assertProblem(change, where, fragment)


class LedgerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore(self.clock)
        self.uses: list[Sequence[BudgetUse]] = []

    def ledger(self, *found: CALimit, ca: str = "le") -> BudgetLedger:
        return BudgetLedger(self.store, self.clock, {ca: found}, on_change=self.uses.append)

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def reserve(self, ledger: BudgetLedger, *names: str, ca: str = "le") -> Reservation | NoRoom:
        return self.wait(ledger.reserve(ca, names))


class LedgerTests(LedgerTestCase):
    def test_counts_and_refuses_past_max(self) -> None:
        ledger = self.ledger(CALimit(ORDERS, 2, 3 * 3600))
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)
        self.assertIsInstance(self.reserve(ledger, "b.example.com"), Reservation)
        refused = self.reserve(ledger, "c.example.com")
        self.assertEqual(refused, NoRoom("le", "orders", self.clock.seconds() + 3 * 3600))
        # The metrics hear of it shortly, once for both reservations.
        self.assertEqual(self.uses, [])
        self.clock.advance(0.5)
        self.assertEqual(self.uses, [[BudgetUse("le", "orders", 2, 2)]])
        # Another CA's budget is its own.
        self.assertIsInstance(self.reserve(ledger, "c.example.com", ca="other"), Reservation)

    def test_stop_cancels_the_pending_refresh(self) -> None:
        """
        A stopped ledger leaves no timer behind: the refresh a change
        scheduled is cancelled; a later change schedules one again.
        """
        ledger = self.ledger(CALimit(ORDERS, 2, 3 * 3600))
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        ledger.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(REFRESH_DELAY)
        self.assertEqual(self.uses, [])
        self.assertIsInstance(self.reserve(ledger, "b.example.com"), Reservation)
        self.clock.advance(REFRESH_DELAY)
        self.assertEqual(self.uses, [[BudgetUse("le", "orders", 2, 2)]])

    def test_window_slides(self) -> None:
        """
        Each use frees one window after it was taken, not at a window
        boundary.
        """
        ledger = self.ledger(CALimit(ORDERS, 2, 100))
        self.reserve(ledger, "a.example.com")
        self.clock.advance(60)
        self.reserve(ledger, "a.example.com")
        self.clock.advance(39)
        refused = self.reserve(ledger, "a.example.com")
        assert isinstance(refused, NoRoom)
        self.assertEqual(refused.until, self.clock.seconds() + 1)
        self.clock.advance(1)
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), NoRoom)
        self.clock.advance(60)
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)

    def test_per_name_set(self) -> None:
        """
        The same set of names, in any order, shares one budget; another set
        has its own.
        """
        ledger = self.ledger(CALimit(NAME_SET, 1, WEEK))
        self.assertIsInstance(self.reserve(ledger, "a.example.com", "b.example.com"), Reservation)
        self.assertIsInstance(self.reserve(ledger, "b.example.com", "a.example.com"), NoRoom)
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)

    def test_per_registered_domain(self) -> None:
        """
        a.shop.co.uk and b.shop.co.uk share shop.co.uk (co.uk is a public
        suffix); an order for two domains takes from both.
        """
        self.assertEqual(registered_domain("a.shop.co.uk"), "shop.co.uk")
        self.assertEqual(registered_domain("*.b.shop.co.uk"), "shop.co.uk")
        self.assertEqual(registered_domain("co.uk"), "co.uk")
        ledger = self.ledger(CALimit(DOMAIN, 1, WEEK))
        self.assertIsInstance(self.reserve(ledger, "a.shop.co.uk"), Reservation)
        refused = self.reserve(ledger, "b.shop.co.uk")
        self.assertEqual(refused, NoRoom("le", DOMAIN.value, self.clock.seconds() + WEEK))
        self.assertIsInstance(self.reserve(ledger, "www.other.co.uk"), Reservation)
        ledger = self.ledger(CALimit(DOMAIN, 1, WEEK), ca="le2")
        self.assertIsInstance(self.reserve(ledger, "x.example.com", "y.example.org", ca="le2"), Reservation)
        self.assertIsInstance(self.reserve(ledger, "z.example.org", ca="le2"), NoRoom)

    def test_all_or_nothing(self) -> None:
        """
        When one limit has no room, the slots taken for the others are
        given back.
        """
        ledger = self.ledger(CALimit(ORDERS, 5, DAY), CALimit(NAME_SET, 1, DAY))
        self.reserve(ledger, "a.example.com")
        for _ in range(3):
            self.assertIsInstance(self.reserve(ledger, "a.example.com"), NoRoom)
        uses = {use.limit: use.used for use in self.wait(ledger.usage())}
        self.assertEqual(uses, {"orders": 1, NAME_SET.value: 1})

    def test_refund_gives_back_certificates_not_orders(self) -> None:
        ledger = self.ledger(CALimit(ORDERS, 5, DAY), CALimit(NAME_SET, 1, DAY))
        reservation = self.reserve(ledger, "a.example.com")
        assert isinstance(reservation, Reservation)
        self.wait(ledger.refund(reservation))
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)
        uses = {use.limit: use.used for use in self.wait(ledger.usage())}
        self.assertEqual(uses, {"orders": 2, NAME_SET.value: 1})

    def test_race_for_the_last_slot(self) -> None:
        """
        Two reservations that both saw the last slot free: one gets it.
        """

        class SlowScans(MemoryStore):
            # What a scan found arrives a second later: both see the slot free.
            async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
                found = await super().scan(prefix)
                await deferLater(clock, 1.0)
                return found

        clock = self.clock
        self.store = SlowScans(clock)
        ledger = self.ledger(CALimit(NAME_SET, 2, DAY))
        first = Deferred.fromCoroutine(ledger.reserve("le", ["a.example.com"]))
        clock.pump([1.0] * 10)
        self.assertIsInstance(self.successResultOf(first), Reservation)
        racers = [Deferred.fromCoroutine(ledger.reserve("le", ["a.example.com"])) for _ in range(2)]
        clock.pump([1.0] * 20)
        results = sorted(type(self.successResultOf(d)).__name__ for d in racers)
        self.assertEqual(results, ["NoRoom", "Reservation"])
        self.assertEqual(len(self.successResultOf(Deferred.fromCoroutine(MemoryStore.scan(self.store, "budget/")))), 2)

    def test_rate_limited_blocks_until_retry_after(self) -> None:
        ledger = self.ledger(CALimit(NAME_SET, 5, WEEK))
        room = self.wait(ledger.rate_limited("le", ["a.example.com"], RATE_LIMITED.detail, 120.0))
        self.assertEqual(room, NoRoom("le", NAME_SET.value, self.clock.seconds() + 120))
        self.assertEqual(self.reserve(ledger, "a.example.com"), room)
        self.clock.advance(0.5)
        self.assertEqual(self.uses[-1], [BudgetUse("le", NAME_SET.value, 5, 5)])
        # Only that set of names is blocked.
        self.assertIsInstance(self.reserve(ledger, "b.example.com"), Reservation)
        self.clock.advance(119.5)
        self.assertIsInstance(self.reserve(ledger, "a.example.com"), Reservation)

    def test_rate_limited_other_limits(self) -> None:
        """
        A detail that names no known limit blocks the whole CA, for
        L{DEFAULT_BLOCK} seconds without a C{Retry-After}.
        """
        ledger = self.ledger()
        room = self.wait(ledger.rate_limited("le", ["a.example.com"], "slow down", None))
        self.assertEqual(room, NoRoom("le", "any", self.clock.seconds() + 600))
        self.assertEqual(self.reserve(ledger, "b.example.org"), room)
        self.wait(ledger.rate_limited("le2", ["a.example.com"], "too many new orders (300) recently", 60))
        self.assertEqual(self.reserve(ledger, "b.example.org", ca="le2").limit, "orders")  # type: ignore[union-attr]
        self.wait(ledger.rate_limited("le3", ["a.shop.co.uk"], 'too many certificates already issued for "x"', 60))
        self.assertIsInstance(self.reserve(ledger, "b.shop.co.uk", ca="le3"), NoRoom)
        self.assertIsInstance(self.reserve(ledger, "b.example.org", ca="le3"), Reservation)


OK = "ok"


class FailoverBudgetTests(LedgerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.events = EventBus(self.clock)
        self.notes = MemoryNotifier()
        self.events.subscribe(self.notes)

    def issuer(self, ledger: BudgetLedger, *cas: ScriptedCA) -> FailoverIssuer:
        return FailoverIssuer(
            cas={ca.name: ca for ca in cas},
            health=CAHealth(self.clock),
            clock=self.clock,
            events=self.events,
            retry_delays=(1.0,),
            budgets=ledger,
        )

    def issue(self, issuer: FailoverIssuer, cas: Sequence[str], names: tuple[str, ...] = ("a.test",)) -> Deferred[Any]:
        request = IssueRequest(csr_der=b"", names=names, order_id="o1")
        deadline = self.clock.seconds() + 600
        return Deferred.fromCoroutine(issuer.issue(request, order_id="o1", token_id="t1", cas=cas, deadline=deadline))

    def test_spills_to_backup(self) -> None:
        ledger = BudgetLedger(self.store, self.clock, {"primary": (CALimit(NAME_SET, 1, WEEK),)})
        primary, backup = ScriptedCA("primary", [OK], self.clock), ScriptedCA("backup", [OK], self.clock)
        issuer = self.issuer(ledger, primary, backup)
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary", "backup"])).ca_name, "primary")
        self.assertEqual(self.notes.events, [])
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary", "backup"])).ca_name, "backup")
        self.assertEqual(len(primary.calls), 1)
        [event] = self.notes.of_kind(CaBudgetExhausted)
        self.assertEqual((event.ca, event.limit, event.order_id), ("primary", NAME_SET.value, "o1"))
        self.assertEqual(event.free_at, "2027-01-22T08:00:00Z")
        self.assertEqual(event.to_json()["event"], "ca.budget_exhausted")

    def test_built_in_ca_without_limits_reads_no_ledger(self) -> None:
        """
        A built-in CA refuses nothing by rate: an order for it reserves
        nothing, and reads no block from the store.
        """
        ledger = BudgetLedger(self.store, self.clock, {"primary": (CALimit(ORDERS, 1, 50),)})
        reserved: list[str] = []
        real = ledger.reserve

        async def reserve(ca: str, names: Sequence[str]) -> Any:
            reserved.append(ca)
            return await real(ca, names)

        self.patch(ledger, "reserve", reserve)
        builtin = LocalCA.load_or_create("builtin", os.path.join(self.mktemp(), "builtin"), clock=self.clock)
        primary = ScriptedCA("primary", [OK], self.clock)
        issuer = self.issuer(ledger, primary, builtin)  # type: ignore[arg-type]
        request = IssueRequest(csr_der=make_csr(["a.test"])[0], names=("a.test",), order_id="o1")
        issued = issuer.issue(
            request, order_id="o1", token_id="t1", cas=["builtin"], deadline=self.clock.seconds() + 60
        )
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(issued)).ca_name, "builtin")
        self.assertEqual(reserved, [])
        self.successResultOf(self.issue(issuer, ["primary"]))
        self.assertEqual(reserved, ["primary"])

    def test_no_ca_has_room(self) -> None:
        ledger = BudgetLedger(
            self.store, self.clock, {"primary": (CALimit(ORDERS, 1, 50),), "backup": (CALimit(ORDERS, 1, 30),)}
        )
        primary, backup = ScriptedCA("primary", [OK], self.clock), ScriptedCA("backup", [OK], self.clock)
        issuer = self.issuer(ledger, primary, backup)
        self.successResultOf(self.issue(issuer, ["primary", "backup"]))
        self.successResultOf(self.issue(issuer, ["primary", "backup"]))
        failure = self.failureResultOf(self.issue(issuer, ["primary", "backup"]), BudgetExhausted)
        self.assertEqual(failure.value.until, self.clock.seconds() + 30)
        self.assertEqual(len(self.notes.of_kind(CaBudgetExhausted)), 3)

    def test_failed_issue_refunds_the_certificate(self) -> None:
        refused = CAError("CAA forbids it", transient=False, problem_type=ProblemType.CAA)
        ledger = BudgetLedger(self.store, self.clock, {"primary": (CALimit(NAME_SET, 1, WEEK),)})
        primary = ScriptedCA("primary", [refused, OK], self.clock)
        issuer = self.issuer(ledger, primary)
        self.failureResultOf(self.issue(issuer, ["primary"]), CAError)
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary"])).ca_name, "primary")

    def test_rate_limited_goes_to_backup(self) -> None:
        """
        A C{rateLimited} answer: that limit is used up until the CA's
        C{Retry-After}, at once (no retry, no failure counted), and the
        order goes to the backup.
        """
        ledger = BudgetLedger(self.store, self.clock, {})
        primary = ScriptedCA("primary", [RATE_LIMITED, OK], self.clock)
        backup = ScriptedCA("backup", [OK], self.clock)
        issuer = self.issuer(ledger, primary, backup)
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary", "backup"])).ca_name, "backup")
        self.assertEqual(len(primary.calls), 1)
        [event] = self.notes.of_kind(CaBudgetExhausted)
        self.assertEqual((event.ca, event.limit), ("primary", NAME_SET.value))
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary", "backup"])).ca_name, "backup")
        self.assertEqual(len(primary.calls), 1)
        # Other names, or later, go to the primary again.
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary"], ("b.test",))).ca_name, "primary")
        self.clock.advance(120)
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary", "backup"])).ca_name, "primary")

    def test_rate_limited_alone_waits(self) -> None:
        ledger = BudgetLedger(self.store, self.clock, {})
        primary = ScriptedCA("primary", [RATE_LIMITED], self.clock)
        d = self.issue(self.issuer(ledger, primary), ["primary"])
        self.clock.advance(1.0)
        failure = self.failureResultOf(d, BudgetExhausted)
        self.assertEqual(failure.value.until, self.clock.seconds() + 119)
        self.assertEqual(len(primary.calls), 1)


class JobTests(SynchronousTestCase):
    """
    Orders through the ACME server: spilled to the backup, or kept
    processing until a budget frees up.
    """

    def setUp(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000)
        chain = self_signed_pem("example.com")
        self.primary = ScriptedCA("primary", [OK], clock, chain)
        self.backup = ScriptedCA("backup", [OK], clock, chain)
        one = (CALimit(NAME_SET, 1, WEEK),)
        self.world = World(
            self,
            clock=clock,
            cas={"primary": self.primary, "backup": self.backup},
            ca_limits={"primary": one, "backup": one},
        )
        self.world.policies["shop"] = evolve(self.world.policies["shop"], primary_ca="primary", backup_ca="backup")
        self.notes = MemoryNotifier()
        self.world.issuance.events.subscribe(self.notes)

    def finalize(self) -> tuple[StubAcmeClient, str]:
        client = self.world.client()
        self.assertEqual(client.register().code, 201)
        response = client.new_order(["example.com"])
        finalized = client.finalize(response.json(), make_csr(["example.com"])[0])
        self.assertEqual(finalized.json()["status"], "processing", finalized.body)
        return client, response.location

    def status(self, client: StubAcmeClient, url: str) -> tuple[str, str | None]:
        response = client.post(url, None)
        headers = response.headers.getRawHeaders("retry-after")
        return response.json()["status"], headers[0] if headers else None

    def test_spill_then_wait_then_resume(self) -> None:
        orders = [self.finalize() for _ in range(3)]
        self.assertEqual([self.status(*o)[0] for o in orders], ["valid", "valid", "processing"])
        self.assertEqual((len(self.primary.calls), len(self.backup.calls)), (1, 1))
        self.assertEqual(
            [(e.ca, e.limit) for e in self.notes.of_kind(CaBudgetExhausted)],
            [("primary", NAME_SET.value), ("primary", NAME_SET.value), ("backup", NAME_SET.value)],
        )
        # Long past the order deadline, the order still waits, without error.
        for _ in range(6):
            self.world.clock.advance(DAY)
            status, retry_after = self.status(*orders[2])
            self.assertEqual(status, "processing")
            self.assertIsNotNone(retry_after)
        self.world.clock.advance(DAY)
        self.assertEqual(self.status(*orders[2])[0], "valid")
        self.assertEqual(len(self.primary.calls), 2)
        self.assertEqual(self.notes.of(EventName.ORDER_FAILED), [])

    def test_stopping_leaves_no_budget_timer(self) -> None:
        self.world.issuance.startService()
        self.finalize()
        self.world.issuance.stopService()
        self.assertEqual(self.world.clock.getDelayedCalls(), [])


class StatsTests(SynchronousTestCase):
    def test_metrics_and_dashboard(self) -> None:
        clock = Clock()
        metrics = Metrics()
        events = EventBus(clock)
        events.subscribe(metrics.observe)
        metrics.budgets([BudgetUse("le", "orders", 3, 300), BudgetUse("le", NAME_SET.value, 5, 5)])
        events.emit(CaBudgetExhausted, ca="le", limit=NAME_SET.value, free_at="2027-01-01T00:00:00Z")
        self.assertEqual(metrics.value("acme_appliance_ca_budget_used", ca="le", limit="orders"), 3)
        self.assertEqual(metrics.value("acme_appliance_ca_budget_max", ca="le", limit="orders"), 300)
        self.assertEqual(metrics.value("acme_appliance_ca_budget_exhausted_total", ca="le", limit=NAME_SET.value), 1)
        self.assertIn(b"acme_appliance_ca_budget_used{", metrics.exposition())
        data = self.successResultOf(
            Deferred.fromCoroutine(dashboard_data(EventJournal(MemoryStore(clock)), {}, 0, metrics.budget_rows()))
        )
        self.assertEqual(
            data["budgets"],
            [
                {"ca": "le", "limit": NAME_SET.value, "used": 5, "max": 5},
                {"ca": "le", "limit": "orders", "used": 3, "max": 300},
            ],
        )


class WiringTests(SynchronousTestCase):
    def test_limits_reach_the_metrics(self) -> None:
        """
        The appliance's issuance counts a CA's configured limits, and its
        metrics show them from start-up on, refreshed every minute.
        """
        path = config_file(self)
        with open(path, encoding="utf-8") as f:
            text = f.read().replace(
                'kind = "local"\n', 'kind = "local"\nlimits = [{ what = "orders", max = 7, window = "1h" }]\n'
            )
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        reactor = MemoryReactorClock()
        store = MemoryStore(reactor)
        service = ApplianceService(load_config(path), store, reactor)  # type: ignore[arg-type]
        service.issuance.startService()
        self.addCleanup(service.issuance.stopService)
        metrics = service.metrics
        self.assertEqual(metrics.value("acme_appliance_ca_budget_max", ca="builtin", limit="orders"), 7)
        self.assertEqual(metrics.value("acme_appliance_ca_budget_used", ca="builtin", limit="orders"), 0)
        # Another process sharing the store took from the budget.
        other = BudgetLedger(store, reactor, {"builtin": (CALimit(ORDERS, 7, 3600),)})
        self.successResultOf(Deferred.fromCoroutine(other.reserve("builtin", ["example.com"])))
        reactor.advance(60)
        self.assertEqual(metrics.value("acme_appliance_ca_budget_used", ca="builtin", limit="orders"), 1)


class RetryAfterTests(SynchronousTestCase):
    def reply(self, retry_after: str | None) -> Reply:
        headers = Headers({"content-type": ["application/problem+json"]})
        if retry_after is not None:
            headers.setRawHeaders("retry-after", [retry_after])
        body = b'{"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many new orders (300) recently"}'
        return Reply(429, headers, body, "https://ca.test/new-order")

    def test_rate_limited_carries_retry_after(self) -> None:
        """
        An upstream C{rateLimited} answer's C{Retry-After} reaches the
        L{CAError}, for the budget to block that long.
        """
        error = problem_error("le", self.reply("3600"))
        self.assertIs(error.problem_type, ProblemType.RATE_LIMITED)
        self.assertEqual(error.retry_after, 3600.0)
        for unusable in (None, "Wed, 21 Oct 2026 07:28:00 GMT", "nan", "inf"):
            self.assertIsNone(problem_error("le", self.reply(unusable)).retry_after, unusable)
        self.assertEqual(problem_error("le", self.reply("-5")).retry_after, 0.0)
