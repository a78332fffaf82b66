"""
Finalize holds its answer for a bounded moment (C{[acme] finalize_wait})
and answers C{valid} when the job ends in time, otherwise C{processing}
with a C{Retry-After} of the expected remaining time.
"""

from __future__ import annotations

from typing import Any, cast

import treq
from attrs import evolve
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from acme_appliance.acme._resources import MAX_RETRY_AFTER, retry_after
from acme_appliance.ca import CAError
from acme_appliance.issuance import DurationEstimate
from acme_appliance.orders import Order, OrderService, OrderStatus
from acme_appliance.storage import StorageError
from acme_appliance.testing import ScriptedCA, StubAcmeClient, StubResponse, World, b64, make_csr, sign

JOSE = {b"Content-Type": [b"application/jose+json"]}


class FinalizeWaitTests(SynchronousTestCase):
    def ordered(self, world: World) -> tuple[StubAcmeClient, StubResponse]:
        """A registered client and its new order for example.com."""
        client = world.client()
        self.assertEqual(client.register().code, 201)
        order = client.new_order(["example.com"])
        self.assertEqual(order.code, 201, order.body)
        return client, order

    def send_finalize(self, world: World, client: StubAcmeClient, order: StubResponse) -> Deferred[IResponse]:
        """Finalize C{order}, without waiting for the answer."""
        url = order.json()["finalize"]
        body = sign(
            client.key, {"csr": b64(make_csr(["example.com"])[0])}, url=url, nonce=client.nonce(), kid=client.kid
        )
        sent: Deferred[IResponse] = cast(Any, world.treq).post(url, data=body, headers=JOSE)
        world.treq.flush()
        return sent

    def answer(self, world: World, sent: Deferred[IResponse]) -> StubResponse:
        world.treq.flush()
        response = self.successResultOf(sent)
        return StubResponse(response.code, response.headers, self.successResultOf(treq.content(response)))

    def answered_after(self, world: World, client: StubAcmeClient, order: StubResponse, wait: float) -> StubResponse:
        """Finalize C{order}: no answer until C{wait} seconds passed, then the answer."""
        sent = self.send_finalize(world, client, order)
        world.clock.advance(wait - 0.01)
        world.treq.flush()
        self.assertNoResult(sent)
        world.clock.advance(0.01)
        return self.answer(world, sent)

    def test_issued_within_the_wait(self) -> None:
        """
        The job ends before C{finalize_wait} passes: finalize answers then,
        C{valid} with the certificate URL and no C{Retry-After}.
        """
        world = World(self, issue_delay=0.5, finalize_wait=1.0)
        client, order = self.ordered(world)
        answer = self.answered_after(world, client, order, 0.5)
        self.assertEqual((answer.code, answer.json()["status"]), (200, "valid"), answer.body)
        self.assertIn("/cert/", answer.json()["certificate"])
        self.assertIsNone(answer.header("retry-after"))
        self.assertEqual(world.issuance.waiting(), 0)
        # The time-out was cancelled: nothing is left on the clock.
        self.assertEqual(world.clock.getDelayedCalls(), [])

    def test_not_issued_within_the_wait(self) -> None:
        """
        The job takes longer: after C{finalize_wait}, C{processing} with
        the expected remaining time as C{Retry-After}; polls count down.
        """
        world = World(self, issue_delay=30, finalize_wait=1.0)
        world.issuance.durations.observe("shop", 10.0)
        client, order = self.ordered(world)
        answer = self.answered_after(world, client, order, 1.0)
        self.assertEqual((answer.json()["status"], answer.header("retry-after")), ("processing", "9"))
        self.assertEqual(world.issuance.waiting(), 0)
        world.clock.advance(2.5)
        polled = client.post(order.location, None)
        self.assertEqual((polled.json()["status"], polled.header("retry-after")), ("processing", "7"))
        world.clock.advance(20)
        polled = client.post(order.location, None)
        self.assertEqual((polled.json()["status"], polled.header("retry-after")), ("processing", "1"))

    def test_store_gone_after_the_wait(self) -> None:
        """
        The job ended without saying how (its outcome unknown here) and the
        order cannot be read again (the store went away): finalize was
        accepted, so the answer is the order as it was (C{processing}), not
        a 503 a client would retry into C{orderNotReady}.
        """
        world = World(self, issue_delay=0.5, finalize_wait=1.0)
        self.patch(world.issuance, "when_done", lambda order_id: deferLater(world.clock, 0.5, lambda: None))
        answer = self.answered_store_gone(world)
        self.assertEqual((answer.code, answer.json()["status"]), (200, "processing"), answer.body)

    def answered_store_gone(self, world: World) -> StubResponse:
        """Finalize; the order cannot be read again after it: the answer after 0.5 seconds."""
        client, order = self.ordered(world)
        sent = self.send_finalize(world, client, order)

        async def gone(*args: object) -> Order:
            raise StorageError("redis at 127.0.0.1:6379 is unavailable")

        self.patch(OrderService, "order", gone)
        world.clock.advance(0.5)
        return self.answer(world, sent)

    def test_outcome_from_the_job(self) -> None:
        """
        The job hands finalize the order as it stored it: the answer is
        C{valid} without reading the order again.
        """
        answer = self.answered_store_gone(World(self, issue_delay=0.5, finalize_wait=1.0))
        self.assertEqual((answer.code, answer.json()["status"]), (200, "valid"), answer.body)
        self.assertIn("certificate", answer.json())

    def test_retry_after_capped(self) -> None:
        world = World(self, issue_delay=300, finalize_wait=0.5)
        world.issuance.durations.observe("shop", 120.0)
        client, order = self.ordered(world)
        answer = self.answered_after(world, client, order, 0.5)
        self.assertEqual(answer.header("retry-after"), str(MAX_RETRY_AFTER))

    def test_no_wait(self) -> None:
        """
        C{finalize_wait = 0}: C{processing} at once, as before, with the
        configured C{Retry-After} while nothing was measured.
        """
        world = World(self, issue_delay=0.1, finalize_wait=0)
        client, order = self.ordered(world)
        answer = self.answer(world, self.send_finalize(world, client, order))
        self.assertEqual((answer.json()["status"], answer.header("retry-after")), ("processing", "2"))
        self.assertEqual(world.issuance.waiting(), 0)

    def test_failed_job_ends_the_wait(self) -> None:
        """
        A job that fails while finalize waits: the answer is the C{invalid}
        order at once, and no waiter is left behind.
        """
        down = CAError("down", transient=True)
        refused = CAError("refused", transient=False)
        clock = Clock()
        clock.advance(1_800_000_000)
        scripted = ScriptedCA("scripted", [down, refused], clock)
        world = World(self, clock=clock, finalize_wait=5.0, cas={"scripted": scripted})
        world.policies["shop"] = evolve(world.policies["shop"], primary_ca="scripted")
        client, order = self.ordered(world)
        sent = self.send_finalize(world, client, order)
        world.treq.flush()
        self.assertNoResult(sent)
        self.assertEqual(world.issuance.waiting(), 1)
        world.clock.advance(1.0)
        answer = self.answer(world, sent)
        self.assertEqual(answer.json()["status"], "invalid", answer.body)
        self.assertIsNone(answer.header("retry-after"))
        self.assertEqual(world.issuance.waiting(), 0)
        self.assertEqual(world.clock.getDelayedCalls(), [])

    def test_valid_order_poll(self) -> None:
        """
        A poll of a finished order answers at once with no C{Retry-After}.
        """
        world = World(self, finalize_wait=1.0)
        client, order = self.ordered(world)
        finalized = client.finalize(order.json(), make_csr(["example.com"])[0])
        self.assertEqual(finalized.json()["status"], "valid", finalized.body)
        polled = client.post(order.location, None)
        self.assertEqual((polled.json()["status"], polled.header("retry-after")), ("valid", None))

    def test_estimate_learnt_from_jobs(self) -> None:
        """
        Once a job was issued here, C{Retry-After} is its duration, not the
        configured default.
        """
        world = World(self, issue_delay=4)
        client, order = self.ordered(world)
        self.assertEqual(client.finalize(order.json(), make_csr(["example.com"])[0]).header("retry-after"), "2")
        world.clock.advance(4)
        self.assertEqual(world.issuance.expected_seconds("shop"), 4.0)
        self.assertIsNone(world.issuance.expected_seconds("other"))
        second = client.new_order(["example.com"])
        answer = client.finalize(second.json(), make_csr(["example.com"])[0])
        self.assertEqual((answer.json()["status"], answer.header("retry-after")), ("processing", "4"))


class WhenDoneTests(SynchronousTestCase):
    def test_not_running(self) -> None:
        """No job of that order runs here: fires at once."""
        world = World(self)
        self.assertIsNone(self.successResultOf(world.issuance.when_done("nothing")))

    def test_cancelled_waiter_forgotten(self) -> None:
        """
        A waiter cancelled (its client went away) is no longer kept.
        """
        world = World(self, issue_delay=30)
        client = world.client()
        client.register()
        order = client.new_order(["example.com"])
        client.finalize(order.json(), make_csr(["example.com"])[0])
        order_id = order.location.rsplit("/", 1)[-1]
        first, second = world.issuance.when_done(order_id), world.issuance.when_done(order_id)
        self.assertEqual(world.issuance.waiting(), 2)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(world.issuance.waiting(), 1)
        world.clock.advance(30)
        outcome = self.successResultOf(second)
        assert outcome is not None
        self.assertEqual(outcome.status, OrderStatus.VALID)
        self.assertEqual(world.issuance.waiting(), 0)


class RetryAfterTests(SynchronousTestCase):
    def order(self, since: float | None) -> Order:
        return Order(
            id="o",
            token_id="t",
            account_id="a",
            policy="shop",
            names=("example.com",),
            status=OrderStatus.PROCESSING,
            created=0.0,
            expires=1000.0,
            authz_ids=(),
            processing_since=since,
        )

    def test_remaining(self) -> None:
        self.assertEqual(retry_after(self.order(100.0), 100.0, None, 3), 3)
        self.assertEqual(retry_after(self.order(100.0), 100.0, 7.2, 3), 8)
        self.assertEqual(retry_after(self.order(100.0), 105.0, 7.2, 3), 3)
        self.assertEqual(retry_after(self.order(100.0), 200.0, 7.2, 3), 1)
        self.assertEqual(retry_after(self.order(100.0), 100.0, 0.1, 3), 1)
        self.assertEqual(retry_after(self.order(100.0), 100.0, 1000.0, 3), MAX_RETRY_AFTER)
        self.assertEqual(retry_after(self.order(None), 100.0, 7.2, 3), 8)

    def test_moving_mean(self) -> None:
        estimate = DurationEstimate(weight=0.5)
        self.assertIsNone(estimate("shop"))
        estimate.observe("shop", 10.0)
        self.assertEqual(estimate("shop"), 10.0)
        estimate.observe("shop", 20.0)
        self.assertEqual(estimate("shop"), 15.0)
        estimate.observe("other", 1.0)
        self.assertEqual((estimate("shop"), estimate("other")), (15.0, 1.0))
