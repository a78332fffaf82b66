"""
Events as JSON POSTs to webhooks, signed with HMAC-SHA256, retried with
backoff from a bounded queue that never holds issuance up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import deque
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

from ._events import Event

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
    def __init__(self, hook: Webhook) -> None:
        self.hook = hook
        self.queue: deque[tuple[Event, bytes]] = deque()
        self.worker: Deferred[None] | None = None


class WebhookNotifier(Service):
    """
    An L{EventBus} subscriber that POSTs each event as JSON to every
    webhook.  Each webhook has its own queue (at most C{queue_size} events;
    the oldest is dropped) and a worker that delivers in order, retrying a
    failure (network, timeout, non-2xx) after each of C{retry_delays}
    before dropping the event.  Dropped events go to C{on_drop}.
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
        retry_delays: Sequence[float] = (1.0, 5.0, 30.0, 120.0),
        on_drop: Callable[[Event], object] = lambda event: None,
    ) -> None:
        self._deliveries = [_Delivery(h) for h in hooks]
        self._http = http
        self._clock = clock
        self._queue_size = queue_size
        self._timeout = timeout
        self._delays = tuple(retry_delays)
        self._on_drop = on_drop

    def __call__(self, event: Event) -> None:
        body = json.dumps(event.to_json(), sort_keys=True).encode()
        for delivery in self._deliveries:
            delivery.queue.append((event, body))
            while len(delivery.queue) > self._queue_size:
                dropped, _ = delivery.queue.popleft()
                self._drop(delivery, dropped, "queue full")
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
        self._log.warn("webhook {url}: dropped event {event} ({why})", url=delivery.hook.url, event=event.name.value,
                       why=why)
        self._on_drop(event)

    async def _work(self, delivery: _Delivery) -> None:
        while delivery.queue:
            event, body = delivery.queue[0]
            problem = None
            for attempt in range(len(self._delays) + 1):
                problem = await self._post(delivery.hook, body)
                if problem is None or not self._queued_first(delivery, event):
                    break
                if attempt < len(self._delays):
                    await deferLater(self._clock, self._delays[attempt])
            # A full queue may have dropped it meanwhile.
            if self._queued_first(delivery, event):
                delivery.queue.popleft()
                if problem is not None:
                    self._drop(delivery, event, problem)

    @staticmethod
    def _queued_first(delivery: _Delivery, event: Event) -> bool:
        return bool(delivery.queue) and delivery.queue[0][0] is event

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
