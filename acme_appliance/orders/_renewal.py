"""
Renewal windows (RFC 9773, ACME Renewal Information): where in a
certificate's validity its clients should renew, paced across a fleet (and
by the issuing CA's rate budgets, L{budget_window}), and the operator's and
the revocations' moves of those windows into the past.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import Enum
from typing import Protocol

from attrs import evolve, frozen
from cryptography import x509
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..storage import keys
from ._certid import names_digest
from ._records import AcmeRepository, CertificateRecord

#: The part of a certificate's validity its renewal windows lie in: for a
#: 90-day certificate, days 60 to 70, as CAs suggest.
WINDOW_FROM = 2 / 3
WINDOW_TO = 7 / 9
#: The share of that part one certificate's window takes.
SLOT_WIDTH = 1 / 4
_GOLDEN = (math.sqrt(5) - 1) / 2
#: How early a window paced by a CA budget may start: the middle of the
#: validity.
PACED_FROM = 1 / 2
#: The share of a budget-paced slot that tells apart certificates sharing
#: it (only when the fleet is larger than the budget allows).
JITTER = 1 / 9
#: A moved window: from this many seconds before the move to this many.
MOVED_START = 120.0
MOVED_END = 1.0
#: How often clients ask again (seconds, RFC 9773 section 4.3): at most
#: this long, sooner when the window opens sooner, this once it is open.
RETRY_AFTER = 6 * 3600
RETRY_AFTER_OPEN = 3600
RETRY_AFTER_MIN = 60


class RenewalReason(Enum):
    """
    Why a certificate's window was moved into the past.
    """

    RENEW_NOW = "renew-now"
    REVOKED = "revoked"
    TOKEN_REVOKED = "token-revoked"
    UPSTREAM = "upstream"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    RenewalReason.RENEW_NOW: "The operator of this ACME server asked for these names to be renewed now.",
    RenewalReason.REVOKED: "This certificate was revoked; renew it now.",
    RenewalReason.TOKEN_REVOKED: "The directory this certificate was ordered through was revoked.",
    RenewalReason.UPSTREAM: "The certificate authority that issued this certificate asked for early renewal.",
}


@frozen
class Window:
    """
    A suggested renewal window, in seconds since the epoch.
    """

    start: float
    end: float


def validity(record: CertificateRecord) -> tuple[float, float]:
    """
    The leaf's notBefore and notAfter, in seconds since the epoch.
    """
    leaf = x509.load_pem_x509_certificate(record.chain_pem.encode())
    return leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()


def base_window(not_before: float, not_after: float) -> Window:
    """
    The part of the validity every window of this certificate lies in.
    """
    lifetime = not_after - not_before
    return Window(not_before + WINDOW_FROM * lifetime, not_before + WINDOW_TO * lifetime)


def paced_window(base: Window, rank: int) -> Window:
    """
    The slot of the C{rank}th certificate (from 0, in issuance order) for one
    set of names inside C{base}: slots start at the golden-ratio sequence
    C{frac(rank * 0.618...)}, so every certificate's start differs from the
    others' and a slot never moves when more certificates are issued.
    """
    span = base.end - base.start
    width = span * SLOT_WIDTH
    start = base.start + ((rank * _GOLDEN) % 1.0) * (span - width)
    return Window(start, start + width)


def budget_window(not_before: float, not_after: float, rank: int, fleet: int, spacing: float) -> Window:
    """
    The slot of the C{rank}th certificate for one set of names when the
    CA's budget allows one renewal of that set every C{spacing} seconds and
    C{fleet} certificates for it were issued within one lifetime.

    Slots are points of a grid in absolute time, C{step} apart (C{spacing}
    stretched so that the L{JITTER} keeps neighbours C{spacing} apart; or
    the whole last half for one point, when even that is too short, as for
    6-day certificates): certificate C{rank} takes the latest point whose number
    is C{rank} modulo C{count}, so any C{count} consecutive ranks (the
    fleet's current certificates) start at different points, at least
    C{spacing} apart, whenever each was issued: renewals arrive at the
    budget's pace.  C{count} is the smallest of C{first}, 2 C{first}, 4
    C{first}... that holds the fleet, where C{first} is how many points the
    default span (L{base_window} less one slot) holds: a small fleet stays
    in the default span, a larger one starts earlier, down to the middle of
    the validity (L{PACED_FROM}), which holds C{last} points.  A fleet
    larger than that shares points, told apart by the golden-ratio sequence
    of C{rank // count} inside the jitter, spread over the whole last half
    (the budget ledger spills or queues the excess).

    A slot depends only on C{rank}, the validity, C{spacing} and C{count}:
    it does not move when another certificate is issued, unless the fleet
    crosses a level; doubling C{count} keeps half the slots and moves the
    other half C{count} points earlier, never later.
    """
    base = base_window(not_before, not_after)
    width = (base.end - base.start) * SLOT_WIDTH
    top = base.end - width
    reach = top - (not_before + PACED_FROM * (not_after - not_before))
    step = min(spacing / (1 - JITTER), reach / (1 + JITTER))
    jitter = step * JITTER
    top -= jitter
    first = max(1, math.floor((top - base.start) / step))
    last = max(1, math.floor((reach - jitter) / step))
    count = first
    while count < min(fleet, last):
        count *= 2
    count = min(count, last)
    high = math.floor(top / step)
    point = high - (high - rank) % count
    start = point * step + ((rank // count * _GOLDEN) % 1.0) * jitter
    return Window(start, start + width)


def moved_window(moved: float) -> Window:
    """
    A window in the past: renew at once.
    """
    return Window(moved - MOVED_START, moved - MOVED_END)


def retry_after(window: Window, now: float) -> int:
    """
    The C{Retry-After} (seconds) of a renewal-info answer.
    """
    if now >= window.start:
        return RETRY_AFTER_OPEN
    return int(min(RETRY_AFTER, max(RETRY_AFTER_MIN, window.start - now)))


class WindowPacer(Protocol):
    """
    The pace a CA's rate budget sets for renewals (L{budget_window}).
    """

    def spacing(self, record: CertificateRecord) -> float | None:
        """
        The fewest seconds between two renewals of C{record}'s set of names
        the budgets allow; C{None} when they set no pace.
        """


class RenewalWindows:
    """
    The renewal windows of the certificates in a repository, and moving
    them into the past.
    """

    _log = Logger()

    def __init__(self, repository: AcmeRepository, clock: IReactorTime, pacer: WindowPacer | None = None) -> None:
        self._repo = repository
        self._clock = clock
        self._pacer = pacer

    async def window(self, record: CertificateRecord) -> Window:
        """
        C{record}'s suggested window: in the past once moved, else its slot
        (L{paced_window}, or L{budget_window} when the pacer sets a pace).
        The fleet a budget paces is the certificates for the set of names
        issued within one lifetime of C{record}: a fleet's renewals in
        progress count twice, which may choose a larger level, never a
        faster pace.  Clients ask again after L{retry_after}, so a window
        that moved with its level reaches them within hours.
        """
        if record.window_moved is not None:
            return moved_window(record.window_moved)
        not_before, not_after = validity(record)
        spacing = None if self._pacer is None else self._pacer.spacing(record)
        if spacing is None:
            return paced_window(base_window(not_before, not_after), await self._rank(record))
        same = await self._same_names(record)
        since = (self._clock.seconds() - (not_after - not_before)) * 1000
        fleet = sum(1 for issued, _ in same if issued > since)
        return budget_window(not_before, not_after, await self._rank(record, same), fleet, spacing)

    async def _same_names(self, record: CertificateRecord) -> list[tuple[int, str]]:
        """
        The certificates for C{record}'s set of names, oldest first: (issued
        in milliseconds, id).
        """
        digest = names_digest(record.names).encode()
        prefix = keys.certificates_of_name(record.names[0])
        found = [key[len(prefix) :].partition("-") for key, d in await self._repo.store.scan(prefix) if d == digest]
        return sorted((int(issued), cid) for issued, _, cid in found)

    async def _rank(self, record: CertificateRecord, same: list[tuple[int, str]] | None = None) -> int:
        if record.slot is not None:
            return record.slot
        # Stored before slots: its place among those in the name index.
        ids = [cid for _, cid in (same if same is not None else await self._same_names(record))]
        return ids.index(record.id) if record.id in ids else 0

    def current(self, record: CertificateRecord) -> bool:
        """
        Neither revoked nor expired.
        """
        return record.revoked_at is None and validity(record)[1] > self._clock.seconds()

    async def move(self, certificate_id: str, reason: RenewalReason) -> bool:
        """
        Move one certificate's window into the past, for C{reason}.
        """
        now = self._clock.seconds()
        moved = await self._repo.update_certificate(
            certificate_id, lambda c: evolve(c, window_moved=now, window_reason=reason.value)
        )
        return moved is not None

    async def _move_current(self, certificate_ids: Iterable[str], reason: RenewalReason) -> int:
        count = 0
        for certificate_id in sorted(set(certificate_ids)):
            record = await self._repo.certificate(certificate_id)
            if record is not None and self.current(record) and await self.move(certificate_id, reason):
                count += 1
        return count

    async def renew_now(self, names: Iterable[str]) -> int:
        """
        Move the windows of every current certificate covering any of
        C{names} (normalised) into the past; returns how many.
        """
        names = tuple(names)
        ids = [cid for name in names for cid, _ in await self._repo.certificates_of_name(name)]
        count = await self._move_current(ids, RenewalReason.RENEW_NOW)
        self._log.info("renew-now for {names}: {count} certificate(s) moved", names=",".join(names), count=count)
        return count

    async def token_revoked(self, token_id: str) -> int:
        """
        Move the windows of a revoked token's current certificates.
        """
        return await self._move_current(await self._repo.certificates_of_token(token_id), RenewalReason.TOKEN_REVOKED)
