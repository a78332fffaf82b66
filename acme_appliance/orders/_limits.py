"""
Rate limits: how many new accounts and orders a token (and an account) may
make per window, and how many of a token's orders may be issuing at once.

Counters live in the store (fixed windows, one key per window with a TTL),
so every process sharing the store counts together.  An exceeded limit is a
C{429} C{rateLimited} problem whose C{Retry-After} says when the window
ends.  Finalize slots (also in the store) make a token's issuance jobs wait
their turn instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum

from attrs import field, frozen
from twisted.internet.interfaces import IReactorTime

from ..core import AcmeProblem, ProblemType
from ..storage import Store, keys

#: How long a finalize slot is held at most, should the process holding it
#: die without a restart that resumes (and then releases) its job.
SLOT_LEASE = 3600.0


class Limit(Enum):
    """
    The rate limits (also the C{limit} label of the metric).
    """

    ACCOUNT_ORDERS = "account_orders"
    TOKEN_ORDERS = "token_orders"
    TOKEN_ACCOUNTS = "token_accounts"
    TOKEN_FINALIZES = "token_finalizes"


@frozen
class Rate:
    """
    At most C{count} events per C{period} seconds; C{count} 0 turns it off.
    """

    count: int
    period: float


@frozen
class Limits:
    """
    C{[limits]}.  The defaults are far above what a fleet does: Let's
    Encrypt's 300 new orders per account per 3 hours; per token (a fleet
    shares one) 1,000 new accounts and 10,000 new orders per 3 hours; and 20
    orders of one token asking upstream CAs at once (further finalized
    orders wait, C{processing}, for a slot), so that one tenant cannot fire
    hundreds of upstream orders at the CA account every tenant shares.  0
    turns a limit off.
    """

    account_orders: Rate = Rate(300, 3 * 3600.0)
    token_orders: Rate = Rate(10_000, 3 * 3600.0)
    token_accounts: Rate = Rate(1_000, 3 * 3600.0)
    token_finalizes: int = 20


def _rate_limited(limit: Limit, detail: str, retry_after: float) -> AcmeProblem:
    seconds = max(1, math.ceil(retry_after))
    return AcmeProblem(
        ProblemType.RATE_LIMITED, f"{detail}; retry after {seconds} seconds", headers={"Retry-After": str(seconds)}
    )


@frozen(kw_only=True)
class RateLimiter:
    """
    Checks and counts L{Limits} in C{store}; C{on_limited} hears of every
    refusal (for the metrics).
    """

    _store: Store = field(alias="store")
    _clock: IReactorTime = field(alias="clock")
    limits: Limits = Limits()
    _on_limited: Callable[[Limit], None] = field(default=lambda limit: None, alias="on_limited")

    async def _count(self, limit: Limit, rate: Rate, subject: str, what: str) -> None:
        if rate.count <= 0:
            return
        now = self._clock.seconds()
        window = int(now // rate.period)
        key = keys.rate_window(limit.value, subject, window)
        # One write: the window's counter is created with a TTL, which later
        # increments keep.
        if await self._store.increment(key, ttl=2 * rate.period) > rate.count:
            self._on_limited(limit)
            raise _rate_limited(
                limit,
                f"too many {what}: at most {rate.count} per {rate.period:g} seconds",
                (window + 1) * rate.period - now,
            )

    async def new_account(self, token_id: str) -> None:
        """
        Count a new account of C{token_id}.

        @raise AcmeProblem: C{rateLimited} when the token has made too many.
        """
        await self._count(Limit.TOKEN_ACCOUNTS, self.limits.token_accounts, token_id, "new accounts for this token")

    async def new_order(self, token_id: str, account_id: str) -> None:
        """
        Count a new order of C{account_id} under C{token_id}.

        @raise AcmeProblem: C{rateLimited} when the account or the token has
            made too many.
        """
        await self._count(Limit.ACCOUNT_ORDERS, self.limits.account_orders, account_id, "new orders for this account")
        await self._count(Limit.TOKEN_ORDERS, self.limits.token_orders, token_id, "new orders for this token")

    def limited(self, limit: Limit) -> None:
        """
        Report a request held back by C{limit} (for the metrics).
        """
        self._on_limited(limit)

    async def take_slot(self, token_id: str, order_id: str) -> bool:
        """
        Take one of C{token_id}'s finalize slots for C{order_id} until
        L{release_slot}; C{False} when every slot is taken (try again later).
        """
        slots = self.limits.token_finalizes
        if slots <= 0:
            return True
        prefix = keys.finalize_slots(token_id)
        held = {key[len(prefix) :]: value for key, value in await self._store.scan(prefix)}
        if order_id.encode() in held.values():
            return True
        for index in range(slots):
            if str(index) not in held and await self._store.add(prefix + str(index), order_id.encode(), ttl=SLOT_LEASE):
                return True
        return False

    async def release_slot(self, token_id: str, order_id: str) -> None:
        """
        Give back the finalize slot C{order_id} holds, if any.
        """
        for key, value in await self._store.scan(keys.finalize_slots(token_id)):
            if value == order_id.encode():
                await self._store.compare_and_set(key, value, None)
