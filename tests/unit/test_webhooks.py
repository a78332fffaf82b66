"""
Webhooks: signed JSON POSTs, retries with backoff, a bounded queue; a
receiver in memory (a Klein-less Resource through StubTreq) and a Clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acme_appliance.notify import (
    CertificateIssued,
    Event,
    EventBus,
    EventName,
    PolicyEvent,
    Webhook,
    WebhookNotifier,
    sign,
)


class Receiver(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[tuple[bytes, str | None]] = []
        self.status = 200
        self.hang = False

    def render_POST(self, request: Request) -> Any:
        if self.hang:
            return NOT_DONE_YET
        assert request.content is not None
        body = request.content.read()
        signature = request.getHeader("x-signature")
        self.bodies.append((body, signature))
        request.setResponseCode(self.status)
        return b"ok"


class WebhookTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.receiver = Receiver()
        self.http = StubTreq(self.receiver)
        self.dropped: list[Any] = []
        self.hook = WebhookNotifier(
            [Webhook("https://hooks.test/a", "s3cret")],
            http=self.http,  # type: ignore[arg-type]
            clock=self.clock,
            queue_size=3,
            timeout=10,
            retry_delays=(1.0, 2.0),
            on_drop=self.dropped.append,
        )
        self.hook.startService()
        self.addCleanup(self.hook.stopService)
        self.bus = EventBus(self.clock)
        self.bus.subscribe(self.hook)

    def test_signed_json(self) -> None:
        self.bus.emit(CertificateIssued, order_id="o1", token_id="t1", names=["a.test"], ca="le")
        self.http.flush()
        [(body, signature)] = self.receiver.bodies
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        self.assertEqual(signature, expected)
        self.assertEqual(sign(body, "s3cret"), expected)
        data = json.loads(body)
        self.assertEqual(
            (data["event"], data["order_id"], data["names"], data["ca"]), ("certificate.issued", "o1", ["a.test"], "le")
        )
        self.assertEqual(self.hook.pending(), 0)

    def test_retry_with_backoff_then_drop(self) -> None:
        self.receiver.status = 503
        self.bus.emit(Event, name=EventName.ORDER_FAILED, order_id="o1")
        self.http.flush()
        self.assertEqual(len(self.receiver.bodies), 1)
        self.clock.advance(1.0)
        self.http.flush()
        self.assertEqual(len(self.receiver.bodies), 2)
        self.clock.advance(2.0)
        self.http.flush()
        self.assertEqual(len(self.receiver.bodies), 3)
        self.assertEqual([e.name for e in self.dropped], [EventName.ORDER_FAILED])
        self.assertEqual(self.hook.pending(), 0)
        self.flushLoggedErrors()

    def test_recovers(self) -> None:
        self.receiver.status = 500
        self.bus.emit(Event, name=EventName.CA_DOWN, ca="le")
        self.http.flush()
        self.receiver.status = 204
        self.clock.advance(1.0)
        self.http.flush()
        self.assertEqual(len(self.receiver.bodies), 2)
        self.assertEqual(self.dropped, [])

    def test_hanging_receiver_never_blocks_and_queue_is_bounded(self) -> None:
        """
        A receiver that never answers: emitting returns at once, the queue
        keeps at most 3 events and counts the ones it drops; timeouts free
        the worker.
        """
        self.receiver.hang = True
        for i in range(6):
            self.bus.emit(PolicyEvent, name=EventName.ORDER_CREATED, order_id=f"o{i}")
        self.http.flush()
        self.assertEqual(self.hook.pending(), 3)
        self.assertEqual([e.order_id for e in self.dropped], ["o0", "o1", "o2"])
        # The POST of o0 times out after 10 s; o0 was dropped meanwhile, so
        # the worker goes on with o3.
        self.receiver.hang = False
        self.clock.advance(10)
        self.http.flush()
        self.assertEqual([json.loads(b)["order_id"] for b, _ in self.receiver.bodies], ["o3", "o4", "o5"])
        self.assertEqual(self.hook.pending(), 0)
