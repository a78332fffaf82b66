"""
Events: one per state change of a token, an order, a validation or a CA.
Notifiers and statistics subscribe to the L{EventBus}; emitting never fails
or waits for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..core import rfc3339


class EventName(Enum):
    """
    Every event the appliance emits, by its wire name.
    """

    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"
    ORDER_CREATED = "order.created"
    ORDER_PROCESSING = "order.processing"
    VALIDATION_STARTED = "validation.started"
    VALIDATION_SUCCEEDED = "validation.succeeded"
    VALIDATION_FAILED = "validation.failed"
    CERTIFICATE_ISSUED = "certificate.issued"
    ORDER_FAILED = "order.failed"
    CA_FAILOVER = "ca.failover"
    CA_DOWN = "ca.down"
    CA_UP = "ca.up"
    UPSTREAM_ORDER = "upstream.order"


#: Events an operator should look at.
WARNINGS = frozenset({EventName.ORDER_FAILED, EventName.VALIDATION_FAILED, EventName.CA_FAILOVER, EventName.CA_DOWN})


@frozen
class Event:
    """
    Something that happened.  C{token_id} is the token's id, never the
    token itself.

    @ivar details: event-specific C{(key, value)} pairs, e.g. C{mode} of a
        C{certificate.issued}, C{from_ca}/C{to_ca} of a C{ca.failover}.
    """

    name: EventName
    time: float
    order_id: str | None = None
    token_id: str | None = None
    names: tuple[str, ...] = ()
    ca: str | None = None
    outcome: str | None = None
    error: str | None = None
    details: tuple[tuple[str, str], ...] = ()

    def detail(self, key: str) -> str | None:
        for k, v in self.details:
            if k == key:
                return v
        return None

    def seconds(self) -> float | None:
        """
        The C{seconds} detail (a duration) as a number, if it has one.
        """
        value = self.detail("seconds")
        try:
            return None if value is None else float(value)
        except ValueError:
            return None

    def fields(self) -> list[tuple[str, str]]:
        """
        The set fields as C{(key, text)} pairs, details last: what a log
        line or a syslog message carries.
        """
        pairs = [
            ("order_id", self.order_id),
            ("token_id", self.token_id),
            ("names", ",".join(self.names) or None),
            ("ca", self.ca),
            ("outcome", self.outcome),
        ]
        found = [(k, v) for k, v in pairs if v is not None]
        found += list(self.details)
        if self.error is not None:
            found.append(("error", self.error))
        return found

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event": self.name.value, "time": rfc3339(self.time)}
        for key in ("order_id", "token_id", "ca", "outcome", "error"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        body["names"] = list(self.names)
        if self.details:
            body["details"] = dict(self.details)
        return body


Subscriber = Callable[[Event], object]


class EventBus:
    """
    Hands every event to every subscriber, synchronously; a subscriber that
    raises is logged and skipped.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """
        Add C{subscriber}; returns the function that removes it.
        """
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(
        self,
        name: EventName,
        *,
        order_id: str | None = None,
        token_id: str | None = None,
        names: Iterable[str] = (),
        ca: str | None = None,
        outcome: str | None = None,
        error: str | None = None,
        details: Iterable[tuple[str, str]] = (),
    ) -> Event:
        event = Event(
            name=name, time=self._clock.seconds(), order_id=order_id, token_id=token_id, names=tuple(names), ca=ca,
            outcome=outcome, error=error, details=tuple((str(k), str(v)) for k, v in details),
        )
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self._log.failure("a subscriber failed on event {event}", event=name.value)
        return event
