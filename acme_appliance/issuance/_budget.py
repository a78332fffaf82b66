"""
CA rate budgets: how much of each upstream CA's own limits (C{[[ca]]
limits}) the fleet has used, shared by every process through the store.

Each limit is a set of C{max} slots per subject (the CA's whole account, an
exact set of names, a registered domain).  Taking one is a store C{add} of a
free slot that expires one window later, so a window slides, and two
orders racing for the last slot cannot both get it.  A C{rateLimited}
answer from the CA blocks the limit it names until the CA's C{Retry-After}.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum

from attrs import frozen
from publicsuffixlist import PublicSuffixList
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..core import report_failure
from ..storage import Store, keys

#: The C{limit} of a block that covers every limit of a CA (a
#: C{rateLimited} answer that names none the appliance knows).
ANY_LIMIT = "any"

#: How long a C{rateLimited} answer without a C{Retry-After} blocks.
DEFAULT_BLOCK = 600.0

#: The shortest a job waits for budget, so that a limit freeing up right
#: now does not make it spin.
MIN_WAIT = 1.0

#: Seconds after a change of the budgets before C{on_change} hears of it.
REFRESH_DELAY = 0.5

_ALL = "all"


class BudgetKind(Enum):
    """
    What a CA limit counts (C{[[ca]] limits} C{what}; the C{limit} label).
    """

    ORDERS = "orders"
    CERTIFICATES_PER_NAME_SET = "certificates_per_name_set"
    CERTIFICATES_PER_REGISTERED_DOMAIN = "certificates_per_registered_domain"


@frozen
class CALimit:
    """
    At most C{max} of C{what} per C{window} seconds at one CA.
    """

    what: BudgetKind
    max: int
    window: float


@frozen
class Reservation:
    """
    Slots taken for one upstream order; C{refundable} are the certificate
    slots, given back when the CA issued nothing.
    """

    ca: str
    refundable: tuple[tuple[str, bytes], ...] = ()


@frozen
class NoRoom:
    """
    CA C{ca} has no room under C{limit} (a L{BudgetKind} value or
    L{ANY_LIMIT}) until clock time C{until}.
    """

    ca: str
    limit: str
    until: float


@frozen
class BudgetUse:
    """
    How much of one CA limit is used: for per-subject limits, by the most
    used subject; a blocked limit counts as full.
    """

    ca: str
    limit: str
    used: int
    max: int


class BudgetExhausted(Exception):
    """
    No CA of an order has budget left; the earliest frees at C{until}.
    """

    def __init__(self, until: float) -> None:
        super().__init__(f"no CA has budget left until {until:.0f}")
        self.until = until


@functools.cache
def _suffixes() -> PublicSuffixList:
    # Parsing the bundled list takes a moment: once per process.
    return PublicSuffixList()


def registered_domain(name: str) -> str:
    """
    The registered domain of C{name} (its public suffix and one label more,
    from the Public Suffix List); a public suffix itself is its own.
    """
    bare = name.removeprefix("*.")
    return _suffixes().privatesuffix(bare) or bare


def _name_set(names: Iterable[str]) -> str:
    joined = ",".join(sorted(set(names)))
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def subjects(what: BudgetKind, names: Sequence[str]) -> tuple[str, ...]:
    """
    What C{what} counts an order for C{names} against.
    """
    if what is BudgetKind.ORDERS:
        return (_ALL,)
    if what is BudgetKind.CERTIFICATES_PER_NAME_SET:
        return (_name_set(names),)
    return tuple(sorted({registered_domain(name) for name in names}))


def limit_in(detail: str) -> BudgetKind | None:
    """
    The limit a CA's C{rateLimited} detail names, as Let's Encrypt words
    them; C{None} when it names none of them.
    """
    text = detail.lower()
    if "exact set" in text or "same set" in text:
        return BudgetKind.CERTIFICATES_PER_NAME_SET
    if "new orders" in text:
        return BudgetKind.ORDERS
    if "certificates" in text:
        return BudgetKind.CERTIFICATES_PER_REGISTERED_DOMAIN
    return None


def _time(value: bytes) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


class BudgetLedger:
    """
    The budgets of every CA with C{limits}, in C{store}.  C{on_change}
    hears every CA's L{BudgetUse} (for the metrics): L{REFRESH_DELAY}
    seconds after the ledger changed, and at each L{refresh}.
    """

    _log = Logger()

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        limits: Mapping[str, Sequence[CALimit]],
        *,
        on_change: Callable[[Sequence[BudgetUse]], object] = lambda uses: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.limits = {ca: tuple(found) for ca, found in limits.items() if found}
        self._on_change = on_change
        self._pending: IDelayedCall | None = None

    async def reserve(self, ca: str, names: Sequence[str]) -> Reservation | NoRoom:
        """
        Take one slot of every limit of C{ca} for an order of C{names}, or
        none of them when one has no room.
        """
        blocked = await self._blocked(ca, names)
        if blocked is not None:
            return blocked
        taken: list[tuple[str, bytes, BudgetKind]] = []
        for limit in self.limits.get(ca, ()):
            for subject in subjects(limit.what, names):
                got = await self._take(ca, limit, subject)
                if isinstance(got, NoRoom):
                    await self._give_back((key, value) for key, value, _ in taken)
                    return got
                taken.append((*got, limit.what))
        if taken:
            self._changed()
        refundable = tuple((key, value) for key, value, what in taken if what is not BudgetKind.ORDERS)
        return Reservation(ca, refundable)

    async def refund(self, reservation: Reservation) -> None:
        """
        The CA issued nothing for C{reservation}: give back its certificate
        slots (its order slot stays used, as at the CA).
        """
        if reservation.refundable:
            await self._give_back(reservation.refundable)
            self._changed()

    async def rate_limited(self, ca: str, names: Sequence[str], detail: str, retry_after: float | None) -> NoRoom:
        """
        CA C{ca} answered C{rateLimited} for C{names}: block the limit its
        C{detail} names for C{retry_after} seconds (L{DEFAULT_BLOCK} when it
        gave none); a limit it does not name blocks the whole CA.
        """
        what = limit_in(detail)
        seconds = retry_after if retry_after is not None and retry_after > 0 else DEFAULT_BLOCK
        until = self._clock.seconds() + seconds
        found = subjects(what, names) if what is not None else (_ALL,)
        limit = what.value if what is not None else ANY_LIMIT
        for subject in found:
            await self._store.set(keys.ca_budget_block(ca, limit, subject), repr(until).encode(), ttl=seconds)
        self._log.warn(
            "CA {ca} refused an order for {names} by its rate limit {limit}: treated as used up for {seconds} seconds",
            ca=ca,
            names=",".join(names),
            limit=limit,
            seconds=seconds,
        )
        self._changed()
        return NoRoom(ca, limit, until)

    async def _blocked(self, ca: str, names: Sequence[str]) -> NoRoom | None:
        prefix = keys.ca_budget_blocks(ca)
        blocks = await self._store.scan(prefix)
        if not blocks:
            return None
        wanted = {keys.ca_budget_block(ca, ANY_LIMIT, _ALL): ANY_LIMIT}
        for what in BudgetKind:
            for subject in subjects(what, names):
                wanted[keys.ca_budget_block(ca, what.value, subject)] = what.value
        found = [NoRoom(ca, wanted[key], _time(value)) for key, value in blocks if key in wanted]
        return max(found, key=lambda room: room.until) if found else None

    async def _take(self, ca: str, limit: CALimit, subject: str) -> tuple[str, bytes] | NoRoom:
        prefix = keys.ca_budget(ca, limit.what.value, subject)
        while True:
            held = dict(await self._store.scan(prefix))
            if len(held) >= limit.max:
                return NoRoom(ca, limit.what.value, min(_time(value) for value in held.values()))
            value = repr(self._clock.seconds() + limit.window).encode()
            for index in range(limit.max):
                key = prefix + str(index)
                if key not in held and await self._store.add(key, value, ttl=limit.window):
                    return key, value
            # Others took the free slots first: look again (one may have
            # expired meanwhile), and report when the earliest frees.

    async def _give_back(self, slots: Iterable[tuple[str, bytes]]) -> None:
        for key, value in slots:
            await self._store.compare_and_set(key, value, None)

    async def usage(self) -> list[BudgetUse]:
        """
        Every configured limit's use now, by CA.
        """
        uses = []
        for ca, limits in sorted(self.limits.items()):
            base, blocks = keys.ca_budgets(ca), keys.ca_budget_blocks(ca)
            slots = [key[len(base) :].split("/") for key, _ in await self._store.scan(base)]
            blocked = {key[len(blocks) :].split("/")[0] for key, _ in await self._store.scan(blocks)}
            for limit in limits:
                counts = Counter(parts[1] for parts in slots if parts[0] == limit.what.value)
                full = bool(blocked & {limit.what.value, ANY_LIMIT})
                used = limit.max if full else max(counts.values(), default=0)
                uses.append(BudgetUse(ca, limit.what.value, used, limit.max))
        return uses

    def _changed(self) -> None:
        # Reading every slot of a CA is a scan: at most one per
        # REFRESH_DELAY, however many orders there are.
        if self._pending is None and self.limits:
            self._pending = self._clock.callLater(REFRESH_DELAY, self._refresh_later)

    def stop(self) -> None:
        """
        Cancel the refresh a change scheduled (the service stops).
        """
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _refresh_later(self) -> None:
        self._pending = None
        Deferred.fromCoroutine(self.refresh())

    async def refresh(self) -> None:
        """
        Tell C{on_change} every limit's use (never fails: the figures are
        for the metrics).
        """
        if not self.limits:
            return
        try:
            uses = await self.usage()
        except Exception:
            report_failure(self._log, "cannot read the CA budgets")
            return
        self._on_change(uses)
