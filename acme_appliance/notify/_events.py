"""
Events: one per state change of a token, an order, a validation or a CA.
Notifiers and statistics subscribe to the L{EventBus}; emitting never fails
or waits for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

from attrs import field, fields, frozen
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
    CA_BUDGET_EXHAUSTED = "ca.budget_exhausted"
    UPSTREAM_ORDER = "upstream.order"
    CA_RENEW_EARLY = "ca.renew_early"


P = ParamSpec("P")
E = TypeVar("E", bound="Event")


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _milliseconds(seconds: float | None) -> float | None:
    # Durations were always reported to the millisecond; metrics and the
    # dashboard see the same value as the wire.
    return None if seconds is None else round(float(seconds), 3)


def _text(value: str | float) -> str:
    return f"{value:.3f}" if isinstance(value, float) else value


#: Events an operator should look at.
WARNINGS = frozenset(
    {
        EventName.ORDER_FAILED,
        EventName.VALIDATION_FAILED,
        EventName.CA_FAILOVER,
        EventName.CA_DOWN,
        EventName.CA_RENEW_EARLY,
        EventName.CA_BUDGET_EXHAUSTED,
    }
)


@frozen
class Event:
    """
    Something that happened, with what every event has.  C{token_id} is the
    token's id, never the token itself.  Events that carry more are the
    subclasses, one for each kind of data (L{PolicyEvent},
    L{ValidationEvent}, L{UpstreamOrdered}, L{CertificateIssued},
    L{CaFailover}, L{CaBudgetExhausted}); a plain C{Event} is one of L{NAMES}.

    The bus sets C{time}: emitters name the class and the other fields,
    e.g. C{bus.emit(CaFailover, from_ca="a", to_ca="b")}.
    """

    NAMES: ClassVar[frozenset[EventName]] = frozenset(
        {EventName.ORDER_PROCESSING, EventName.ORDER_FAILED, EventName.CA_UP, EventName.CA_DOWN}
    )

    time: float
    name: EventName
    order_id: str | None = None
    token_id: str | None = None
    names: tuple[str, ...] = field(default=(), converter=_strings)
    ca: str | None = None
    outcome: str | None = None
    error: str | None = None
    #: The cluster node that made the change (C{[cluster] node_name}); set by the bus.
    node: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.name not in self.NAMES:
            raise ValueError(f"{type(self).__name__} cannot be a {self.name.value} event")

    @classmethod
    def data_fields(cls) -> tuple[str, ...]:
        """
        The names of what this kind of event carries beyond the common
        fields.
        """
        return _data_fields(cls)

    def data(self) -> dict[str, str | float]:
        """
        The kind's own fields that are set, by name, typed.
        """
        found = ((key, getattr(self, key)) for key in _data_fields(type(self)))
        return {key: value for key, value in found if value is not None}

    @property
    def details(self) -> tuple[tuple[str, str], ...]:
        """
        L{data} as the C{(key, text)} pairs the wire shows (durations to the
        millisecond).
        """
        return tuple((key, _text(value)) for key, value in self.data().items())

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
            ("node", self.node),
        ]
        found = [(k, v) for k, v in pairs if v is not None]
        found += list(self.details)
        if self.error is not None:
            found.append(("error", self.error))
        return found

    def to_json(self, data: Mapping[str, str | float] | None = None) -> dict[str, Any]:
        """
        The event as the wire shows it; C{data}: its L{data}, when the
        caller has it already.
        """
        body: dict[str, Any] = {"event": self.name.value, "time": rfc3339(self.time)}
        for key in ("order_id", "token_id", "ca", "outcome", "error", "node"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        body["names"] = list(self.names)
        if details := (self.data() if data is None else data):
            body["details"] = {key: _text(value) for key, value in details.items()}
        return body


_COMMON = frozenset(a.name for a in fields(Event))


_DATA_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def _data_fields(kind: type[Event]) -> tuple[str, ...]:
    found = _DATA_FIELDS.get(kind)
    if found is None:
        found = _DATA_FIELDS[kind] = tuple(a.name for a in fields(kind) if a.name not in _COMMON)
    return found


@frozen
class PolicyEvent(Event):
    """
    A token or an order, with the C{policy} it belongs to.
    """

    NAMES = frozenset({EventName.TOKEN_CREATED, EventName.TOKEN_REVOKED, EventName.ORDER_CREATED})

    policy: str | None = None


@frozen
class ValidationEvent(Event):
    """
    An upstream validation by C{method} (a policy's validation method);
    a success has the C{seconds} it took.
    """

    NAMES = frozenset({EventName.VALIDATION_STARTED, EventName.VALIDATION_SUCCEEDED, EventName.VALIDATION_FAILED})

    method: str | None = None
    seconds: float | None = field(default=None, converter=_milliseconds)


@frozen
class UpstreamOrdered(Event):
    """
    An order placed at an upstream CA, at URL C{upstream_order}.
    """

    NAMES = frozenset({EventName.UPSTREAM_ORDER})

    name: EventName = EventName.UPSTREAM_ORDER
    upstream_order: str | None = None


@frozen
class CertificateIssued(Event):
    """
    A certificate issued to a client: C{mode} is C{new} (validated) or
    C{reissue} (re-used a validation); C{seconds} from finalize to valid;
    C{replaces}: the certID of the certificate it renews (RFC 9773).
    """

    NAMES = frozenset({EventName.CERTIFICATE_ISSUED})

    name: EventName = EventName.CERTIFICATE_ISSUED
    mode: str | None = None
    serial: str | None = None
    seconds: float | None = field(default=None, converter=_milliseconds)
    replaces: str | None = None


@frozen
class CaFailover(Event):
    """
    An order moved from CA C{from_ca} to C{to_ca}.
    """

    NAMES = frozenset({EventName.CA_FAILOVER})

    name: EventName = EventName.CA_FAILOVER
    from_ca: str | None = None
    to_ca: str | None = None


@frozen
class RenewEarly(Event):
    """
    The upstream CA suggested renewing certificate C{serial} from
    C{upstream_start}, before its clients' window: that window moved into
    the past.
    """

    NAMES = frozenset({EventName.CA_RENEW_EARLY})

    name: EventName = EventName.CA_RENEW_EARLY
    serial: str | None = None
    upstream_start: str | None = None


@frozen
class CaBudgetExhausted(Event):
    """
    CA C{ca} has no room under its rate limit C{limit} until C{free_at}
    (RFC 3339): the order goes to the next CA, or waits for it.
    """

    NAMES = frozenset({EventName.CA_BUDGET_EXHAUSTED})

    name: EventName = EventName.CA_BUDGET_EXHAUSTED
    limit: str | None = None
    free_at: str | None = None


#: The class of each event.
EVENT_TYPES: Mapping[EventName, type[Event]] = {
    name: kind
    for kind in (
        Event,
        PolicyEvent,
        ValidationEvent,
        UpstreamOrdered,
        CertificateIssued,
        CaFailover,
        RenewEarly,
        CaBudgetExhausted,
    )
    for name in kind.NAMES
}


Subscriber = Callable[[Event], object]


class EventBus:
    """
    Hands every event to every subscriber, synchronously; a subscriber that
    raises is logged and skipped.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, *, node: str | None = None) -> None:
        self._clock = clock
        self._node = node
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

    def emit(self, kind: Callable[Concatenate[float, P], E], /, *args: P.args, **kwargs: P.kwargs) -> E:
        """
        Make a C{kind} event of the given fields, now, and hand it to every
        subscriber; the bus's C{node} names the node that emits it.
        """
        if self._node is not None:
            # Made with the node at once: no second event to build.
            kwargs["node"] = self._node
        event = kind(self._clock.seconds(), *args, **kwargs)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self._log.failure("a subscriber failed on event {event}", event=event.name.value)
        return event
