"""
The event journal: events kept in the store, so that an order's history and
the recent past (for the dashboard) survive restarts.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..core import UNAVAILABLE_RETRY, Backoff, report_failure, while_unavailable
from ..storage import Put, Store, keys
from ._events import EVENT_TYPES, Event, EventName

RETENTION = 30 * 86400.0

#: How long an event is kept for a store that is away, at most.
MAX_AGE = 3600.0

#: How many events are kept for a store that is away; beyond, they are lost
#: (and logged).
MAX_PENDING = 10_000


def event_from_json(data: dict[str, Any]) -> Event:
    """
    An event as L{EventJournal} stores it: typed C{data} since events are
    typed, C{details} text in older records.
    """
    name = EventName(data["event"])
    kind = EVENT_TYPES[name]
    own = set(kind.data_fields())
    values: dict[str, Any]
    if "data" in data:
        values = {k: v for k, v in data["data"].items() if k in own}
    else:
        values = _legacy_details(data.get("details", {}), own)
    return kind(
        float(data["t"]),
        name=name,
        order_id=data.get("order_id"),
        token_id=data.get("token_id"),
        names=tuple(data.get("names", ())),
        ca=data.get("ca"),
        outcome=data.get("outcome"),
        error=data.get("error"),
        node=data.get("node"),
        **values,
    )


def _legacy_details(details: dict[str, Any], own: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: str(v) for k, v in details.items() if k in own}
    if "seconds" in values:
        # The one number the old text form held; an unreadable one counted
        # as absent.
        try:
            values["seconds"] = float(values["seconds"])
        except ValueError:
            values["seconds"] = None
    return values


def _dump(event: Event) -> bytes:
    data = event.data()
    body = event.to_json(data)
    body["t"] = event.time
    if data:
        body["data"] = data
    return json.dumps(body, separators=(",", ":")).encode()


def _hour_prefix(seconds: float) -> str:
    return keys.journal_hour(int(seconds // 3600))


def _key_time(seconds: float) -> str:
    return f"{int(seconds * 1_000_000):020d}"


class EventJournal:
    """
    An L{EventBus} subscriber that writes every event to the store (kept
    C{retention} seconds), indexed by time and by order.  Writing happens in
    the background: a slow or failing store never delays the emitter.
    """

    _log = Logger()

    def __init__(
        self,
        store: Store,
        *,
        retention: float = RETENTION,
        clock: IReactorTime | None = None,
        retry: Backoff = UNAVAILABLE_RETRY,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._store = store
        self._retention = retention
        self._sequence = itertools.count()
        self._clock = clock
        self._retry = retry
        self._max_pending = max_pending
        #: Events waiting for the store to come back.
        self.pending = 0
        self._writing: dict[str, list[Deferred[None]]] = {}

    def __call__(self, event: Event) -> None:
        d = Deferred.fromCoroutine(self._keep(event, self._key(event)))
        d.addErrback(lambda f: report_failure(self._log, "cannot journal event {event}", f, event=event.name.value))
        if event.order_id is not None:
            writing = self._writing.setdefault(event.order_id, [])
            writing.append(d)
            d.addBoth(lambda _: self._written(event.order_id, d))

    def _written(self, order_id: str | None, d: Deferred[None]) -> None:
        writing = self._writing.get(order_id or "", [])
        if d in writing:
            writing.remove(d)
        if not writing:
            self._writing.pop(order_id or "", None)

    async def written(self, order_id: str) -> None:
        """
        Wait until the events of C{order_id} handed to the journal so far
        are written (or given up on).
        """
        writing = list(self._writing.get(order_id, ()))
        if writing:
            await DeferredList(writing, consumeErrors=True)

    async def _keep(self, event: Event, key: str) -> None:
        """
        Write C{event}; while the store is away (and a clock was given),
        again and again for up to L{MAX_AGE} seconds after the event, with
        at most L{MAX_PENDING} events waiting at once.
        """
        if self._clock is None:
            await self._write(event, key)
            return
        if self.pending >= self._max_pending:
            patience = 0.0
        else:
            patience = max(0.0, event.time + MAX_AGE - self._clock.seconds())
        self.pending += 1
        try:
            await while_unavailable(self._clock, lambda: self._write(event, key), patience=patience, retry=self._retry)
        finally:
            self.pending -= 1

    def _key(self, event: Event) -> str:
        key = f"{_key_time(event.time)}-{next(self._sequence) % 1_000_000:06d}"
        if event.node is not None:
            # Every node counts from 0: its name keeps two nodes' keys apart.
            key += f"-{event.node}"
        return key

    async def record(self, event: Event) -> None:
        """
        Write C{event} now (once).
        """
        await self._write(event, self._key(event))

    async def _write(self, event: Event, key: str) -> None:
        data = _dump(event)
        # Grouped by hour, so that the recent past is read without scanning
        # the whole retention period.  One write (one round trip, one
        # commit); an event not written is written again, under the same
        # key, by the retry.
        puts = [Put(f"{_hour_prefix(event.time)}{key}", data, self._retention)]
        if event.order_id is not None:
            puts.append(Put(keys.order_events(event.order_id) + key, data, self._retention))
        await self._store.write_in_order(puts)

    async def order_history(self, order_id: str) -> list[Event]:
        """
        The events of one order, oldest first.
        """
        return [event_from_json(json.loads(v)) for _, v in await self._store.scan(keys.order_events(order_id))]

    async def between(self, start: float, end: float) -> list[Event]:
        """
        Every journaled event from clock time C{start} to C{end}, oldest
        first.
        """
        events = []
        for hour in range(int(start // 3600), int(end // 3600) + 1):
            for _, value in await self._store.scan(_hour_prefix(hour * 3600)):
                event = event_from_json(json.loads(value))
                if start <= event.time <= end:
                    events.append(event)
        return events
