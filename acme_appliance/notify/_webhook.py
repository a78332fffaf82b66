"""
Events as JSON POSTs to webhooks, signed with HMAC-SHA256, retried with
backoff from a bounded queue that never holds issuance up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

from attrs import frozen
from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ..core import Backoff
from ._events import Event
from ._queue import BoundedQueue

SIGNATURE_HEADER = b"X-Signature"


def sign(body: bytes, secret: str) -> str:
    """
    The C{X-Signature} of C{body}: C{sha256=<hex HMAC-SHA256>}.
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@frozen
class Webhook:
    """
    One receiver: its URL and the secret its bodies are signed with.
    """

    url: str
    secret: str | None = None


class _Delivery:
    def __init__(self, hook: Webhook, queue_size: int, on_drop: Callable[[_Delivery, Event, str], None]) -> None:
        self.hook = hook
        self.queue: BoundedQueue[tuple[Event, bytes]] = BoundedQueue(
            queue_size, lambda item: on_drop(self, item[0], "queue full")
        )
        self.worker: Deferred[None] | None = None

    def first_is(self, event: Event) -> bool:
        """
        Whether C{event} is still the next to deliver (a full queue may have
        dropped it).
        """
        first = self.queue.first()
        return first is not None and first[0] is event


class WebhookNotifier(Service):
    """
    An L{EventBus} subscriber that POSTs each event as JSON to every
    webhook.  Each webhook has its own queue (at most C{queue_size} events;
    the oldest is dropped) and a worker that delivers in order, retrying a
    failure (network, timeout, non-2xx) after each of C{retry_delays}
    (a L{Backoff} or its delays) before dropping the event.  Dropped events
    go to C{on_drop}.
    """

    _log = Logger()

    def __init__(
        self,
        hooks: Sequence[Webhook],
        *,
        http: HTTPClient,
        clock: IReactorTime,
        queue_size: int = 1000,
        timeout: float = 10.0,
        retry_delays: Sequence[float] | Backoff = Backoff((1.0, 5.0, 30.0, 120.0)),
        on_drop: Callable[[Event], object] = lambda event: None,
    ) -> None:
        self._deliveries = [_Delivery(h, queue_size, self._drop) for h in hooks]
        self._http = http
        self._clock = clock
        self._timeout = timeout
        self._backoff = retry_delays if isinstance(retry_delays, Backoff) else Backoff(retry_delays)
        self._on_drop = on_drop

    def __call__(self, event: Event) -> None:
        body = json.dumps(event.to_json(), sort_keys=True).encode()
        for delivery in self._deliveries:
            delivery.queue.append((event, body))
            if delivery.worker is None and self.running:
                self._start(delivery)

    def startService(self) -> None:
        super().startService()
        for delivery in self._deliveries:
            if delivery.queue and delivery.worker is None:
                self._start(delivery)

    def stopService(self) -> None:
        super().stopService()
        for delivery in self._deliveries:
            if delivery.worker is not None:
                delivery.worker.cancel()

    def pending(self) -> int:
        return sum(len(d.queue) for d in self._deliveries)

    def _start(self, delivery: _Delivery) -> None:
        worker = Deferred.fromCoroutine(self._work(delivery))
        delivery.worker = worker

        def done(result: object) -> None:
            delivery.worker = None

        worker.addErrback(lambda f: f.trap(CancelledError))
        worker.addBoth(done)

    def _drop(self, delivery: _Delivery, event: Event, why: str) -> None:
        self._log.warn(
            "webhook {url}: dropped event {event} ({why})", url=delivery.hook.url, event=event.name.value, why=why
        )
        self._on_drop(event)

    async def _work(self, delivery: _Delivery) -> None:
        while (first := delivery.queue.first()) is not None:
            event, body = first
            problem = await self._post(delivery.hook, body)
            for delay in self._backoff:
                if problem is None or not delivery.first_is(event):
                    break
                await deferLater(self._clock, delay)
                problem = await self._post(delivery.hook, body)
            if delivery.first_is(event):
                delivery.queue.popleft()
                if problem is not None:
                    self._drop(delivery, event, problem)

    async def _post(self, hook: Webhook, body: bytes) -> str | None:
        headers = Headers({b"Content-Type": [b"application/json"], b"User-Agent": [b"acme-appliance"]})
        if hook.secret is not None:
            headers.setRawHeaders(SIGNATURE_HEADER, [sign(body, hook.secret).encode()])
        try:
            response: Any = await self._http.post(
                hook.url, data=body, headers=headers, timeout=self._timeout, reactor=cast(Any, self._clock)
            )
            await response.content()
        except CancelledError:
            raise
        except Exception as e:
            return f"{e.__class__.__name__}: {e}"
        if not 200 <= response.code < 300:
            return f"HTTP {response.code}"
        return None
