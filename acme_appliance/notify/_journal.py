"""
The event journal: events kept in the store, so that an order's history and
the recent past (for the dashboard) survive restarts.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..core import UNAVAILABLE_RETRY, Backoff, Unavailable, report_failure, while_unavailable
from ..storage import Put, Store, keys
from ._events import EVENT_TYPES, Event, EventName

RETENTION = 30 * 86400.0

#: How long an event is kept for a store that is away, at most.
MAX_AGE = 3600.0

#: How many events are kept for a store that is away; beyond, they are lost
#: (and logged).
MAX_PENDING = 10_000

#: The most events gathered into one write.
MAX_GATHERED = 500

#: Seconds the appliance's journal gathers events before writing them.
JOURNAL_WINDOW = 0.02


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


#: An event to write and its key.
_Entry = tuple[Event, str]


class EventJournal:
    """
    An L{EventBus} subscriber that writes every event to the store (kept
    C{retention} seconds), indexed by time and by order.  Writing happens in
    the background: a slow or failing store never delays the emitter.

    With a C{window} (and a clock), the events of each C{window} seconds
    are gathered and written together, in one store write (at most
    L{MAX_GATHERED} at once): under load, one commit for many events instead
    of one each.
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
        window: float = 0.0,
    ) -> None:
        self._store = store
        self._retention = retention
        self._sequence = itertools.count()
        self._clock = clock
        self._retry = retry
        self._max_pending = max_pending
        self._window = window
        #: Events waiting for the store to come back.
        self.pending = 0
        #: The events gathered for the next write, each with what it fires.
        self._gathered: list[tuple[_Entry, Deferred[None]]] = []
        self._write_call: IDelayedCall | None = None
        #: The events handed to the journal and not yet written (or given
        #: up on), by key, each with what fires once it is: its readers see
        #: them too, and L{written} waits for them.
        self._unwritten: dict[str, tuple[Event, Deferred[None]]] = {}

    def __call__(self, event: Event) -> None:
        key = self._key(event)
        if self._clock is not None and self._window > 0:
            d = self._gather(self._clock, (event, key))
        else:
            d = Deferred.fromCoroutine(self._keep([(event, key)]))
        d.addErrback(lambda f: report_failure(self._log, "cannot journal event {event}", f, event=event.name.value))
        # Kept before the forgetting is added: a write may be done already.
        self._unwritten[key] = (event, d)
        d.addBoth(lambda _: self._forget(key))

    def _forget(self, key: str) -> None:
        """
        The event at C{key} is written, or given up on.
        """
        del self._unwritten[key]

    def _gather(self, clock: IReactorTime, entry: _Entry) -> Deferred[None]:
        """
        Add C{entry} to the next write; what fires with that write.
        """
        if self._write_call is None:
            self._write_call = clock.callLater(self._window, self._write_gathered)
        d: Deferred[None] = Deferred()
        self._gathered.append((entry, d))
        if len(self._gathered) >= MAX_GATHERED:
            self._write_gathered()
        return d

    def _write_gathered(self, patience: float | None = None) -> Deferred[None]:
        """
        Start the write of the gathered events; what fires (with C{None})
        once it is done and each event was told.
        """
        gathered, self._gathered = self._gathered, []
        if self._write_call is not None and self._write_call.active():
            self._write_call.cancel()
        self._write_call = None
        if not gathered:
            return succeed(None)

        def tell(result: object) -> None:
            # Each event on its own, so that a failure is reported once an event.
            for _, d in gathered:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)

        return Deferred.fromCoroutine(self._keep([entry for entry, _ in gathered], patience)).addBoth(tell)

    async def flush(self) -> None:
        """
        Write the gathered events now, trying once (for a stop): they are
        lost (each reported) if the store is away.
        """
        await self._write_gathered(patience=0.0)

    async def written(self, order_id: str) -> None:
        """
        Wait until the events of C{order_id} handed to the journal so far
        are written (or given up on).
        """
        writing = [d for event, d in self._unwritten.values() if event.order_id == order_id]
        if writing:
            await DeferredList(writing, consumeErrors=True)

    async def _keep(self, entries: list[_Entry], patience: float | None = None) -> None:
        """
        Write C{entries}; while the store is away (and a clock was given),
        again and again for up to L{MAX_AGE} seconds after the first event
        (or C{patience} seconds), with at most L{MAX_PENDING} events waiting
        at once.  When several events cannot be written for another reason,
        each is written on its own, so that one bad event loses only itself.
        """
        if self._clock is None:
            await self._write(entries)
            return
        if patience is None:
            patience = max(0.0, entries[0][0].time + MAX_AGE - self._clock.seconds())
        if self.pending >= self._max_pending:
            patience = 0.0
        self.pending += len(entries)
        try:
            await while_unavailable(self._clock, lambda: self._write(entries), patience=patience, retry=self._retry)
            return
        except Unavailable:
            raise
        except Exception:
            if len(entries) == 1:
                raise
        finally:
            self.pending -= len(entries)
        for entry in entries:
            try:
                await self._keep([entry], patience)
            except Exception:
                report_failure(self._log, "cannot journal event {event}", event=entry[0].name.value)

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
        await self._write([(event, self._key(event))])

    async def _write(self, entries: list[_Entry]) -> None:
        # Grouped by hour, so that the recent past is read without scanning
        # the whole retention period.  One write (one round trip, one
        # commit); an event not written is written again, under the same
        # key, by the retry.
        puts = []
        for event, key in entries:
            data = _dump(event)
            puts.append(Put(f"{_hour_prefix(event.time)}{key}", data, self._retention))
            if event.order_id is not None:
                puts.append(Put(keys.order_events(event.order_id) + key, data, self._retention))
        await self._store.write_in_order(puts)

    async def order_history(self, order_id: str) -> list[Event]:
        """
        The events of one order, oldest first (with those this journal was
        handed and has not written yet).
        """
        prefix = keys.order_events(order_id)
        found = {key[len(prefix) :]: event_from_json(json.loads(v)) for key, v in await self._store.scan(prefix)}
        return self._with_unwritten(found, lambda event: event.order_id == order_id)

    async def between(self, start: float, end: float) -> list[Event]:
        """
        Every journaled event from clock time C{start} to C{end}, oldest
        first (with those this journal was handed and has not written yet).
        """
        found = {}
        for hour in range(int(start // 3600), int(end // 3600) + 1):
            prefix = _hour_prefix(hour * 3600)
            for key, value in await self._store.scan(prefix):
                event = event_from_json(json.loads(value))
                if start <= event.time <= end:
                    found[key[len(prefix) :]] = event
        return self._with_unwritten(found, lambda event: start <= event.time <= end)

    def _with_unwritten(self, found: dict[str, Event], wanted: Callable[[Event], bool]) -> list[Event]:
        """
        The events C{found} in the store and the unwritten ones that are
        C{wanted}, by key (oldest first).
        """
        for key, (event, _) in self._unwritten.items():
            if wanted(event):
                found.setdefault(key, event)
        return [found[key] for key in sorted(found)]
