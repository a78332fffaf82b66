"""
One upstream validation per order key: later orders for the same key
re-issue against it for as long as it is fresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..ca import CAError, IssuedCertificate, ValidationRequired
from ..core import ProblemType, Unavailable
from ..storage import Store, dump_record, get_record, keys, put_record
from ._locks import OrderLocks


class IssueMode(Enum):
    """
    How a certificate was obtained upstream; the values are those of the
    C{mode} event detail and metrics label.
    """

    NEW = "new"
    REISSUE = "reissue"


@frozen
class UpstreamOrder:
    """
    A validated upstream order that later orders for the same key may
    re-issue against (kept in the store for the re-use window).
    """

    ca: str
    order_id: str
    at: float


#: Seconds an order key's failed validation is remembered: the orders that
#: waited for it, and those that come meanwhile, fail with its problem
#: rather than have the CA validate again (CAs limit failed validations:
#: Let's Encrypt allows five an hour for a name).
FAILURE_WINDOW = 60.0

#: The refusals that concern the names (so every order of the key), not
#: one order's CSR.
_NAME_FAILURES = frozenset(
    {
        ProblemType.UNAUTHORIZED,
        ProblemType.INCORRECT_RESPONSE,
        ProblemType.DNS,
        ProblemType.CONNECTION,
        ProblemType.CAA,
        ProblemType.REJECTED_IDENTIFIER,
    }
)


@frozen
class FailedValidation:
    """
    A validation the CA refused, kept in the store for the failure window.
    """

    ca: str | None
    problem_type: str
    detail: str
    at: float


Reissue = Callable[[UpstreamOrder], Awaitable[IssuedCertificate]]
Validate = Callable[[], Awaitable[IssuedCertificate]]


class UpstreamReuse:
    """
    Whether an order key has a fresh upstream validation (an
    L{UpstreamOrder} kept C{window} seconds in the store), and the way to
    issue for it with at most one validation at a time per key.
    """

    _log = Logger()

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        locks: OrderLocks,
        window: float,
        failure_window: float = FAILURE_WINDOW,
    ) -> None:
        self._store = store
        self._clock = clock
        self.locks = locks
        self._window = window
        self._failure_window = failure_window

    async def fresh(self, key: str) -> UpstreamOrder | None:
        """
        The validation order key C{key} may re-issue against, if any.
        """
        return await get_record(self._store, UpstreamOrder, keys.upstream_order(key))

    async def remember(self, key: str, ca: str, order_id: str) -> None:
        """
        Order C{order_id} of C{key} was just validated at C{ca}.
        """
        record = UpstreamOrder(ca=ca, order_id=order_id, at=self._clock.seconds())
        await put_record(self._store, keys.upstream_order(key), record, ttl=self._window)

    async def forget(self, key: str, record: UpstreamOrder) -> None:
        """
        The CA no longer honours C{record}.  A newer validation remembered in
        the meantime stays.
        """
        await self._store.compare_and_set(keys.upstream_order(key), dump_record(record), None)

    async def obtain(
        self, key: str, order_id: str, *, reissue: Reissue, validate: Validate, exclusive: bool = True
    ) -> tuple[IssuedCertificate, IssueMode]:
        """
        Issue for order C{order_id} of C{key}: by C{reissue} against a fresh
        validation, else by C{validate} under the key's lock, which is
        remembered for the orders that waited for it.

        @param reissue: Asks the CA without validating; raises
            L{ValidationRequired} when the CA wants a new validation.
        @param validate: Asks the CA, validating as needed.
        @param exclusive: C{False} when C{validate} validates nothing (the
            built-in CA): there is no validation to share or re-use, so
            C{validate} issues at once, with no lock, no store read and
            nothing remembered.
        """
        if not exclusive:
            # Nothing to re-use or to remember: a new certificate each time.
            return await validate(), IssueMode.NEW
        while True:
            issued = await self._reissue(key, reissue)
            if issued is not None:
                return issued, IssueMode.REISSUE
            async with self.locks.hold(key):
                await self._failed_lately(key)
                if await self.fresh(key) is None:
                    try:
                        issued = await validate()
                    except CAError as e:
                        if not e.transient and e.problem_type in _NAME_FAILURES:
                            await self._remember_failure(key, e)
                        raise
                    await self._remember(key, issued.ca_name, order_id)
                    return issued, IssueMode.NEW
            # Another job validated while this one waited: re-issue against
            # that outside the lock, together with the other waiters.  Each
            # further turn needs yet another job's validation, so this ends.

    async def _remember(self, key: str, ca: str, order_id: str) -> None:
        try:
            await self.remember(key, ca, order_id)
        except Unavailable as e:
            # Only re-use is lost (the waiters validate again), never the
            # certificate the CA issued.
            self._log.warn("cannot remember the validation of {key}: {error}", key=key, error=e)

    async def _failed_lately(self, key: str) -> None:
        """
        @raise CAError: the CA refused C{key}'s validation less than the
            failure window ago.
        """
        failed = await get_record(self._store, FailedValidation, keys.failed_validation(key))
        if failed is None:
            return
        ago = self._clock.seconds() - failed.at
        raise CAError(
            f"{failed.detail} (the validation of these names failed {ago:.0f} s ago; "
            f"order again after {max(self._failure_window - ago, 1):.0f} s)",
            transient=False,
            problem_type=ProblemType(failed.problem_type),
            ca=failed.ca,
        )

    async def _remember_failure(self, key: str, error: CAError) -> None:
        record = FailedValidation(error.ca, error.problem_type.value, error.detail, self._clock.seconds())
        try:
            await put_record(self._store, keys.failed_validation(key), record, ttl=self._failure_window)
        except Unavailable as e:
            self._log.warn("cannot remember the failed validation of {key}: {error}", key=key, error=e)

    async def _reissue(self, key: str, reissue: Reissue) -> IssuedCertificate | None:
        fresh = await self.fresh(key)
        if fresh is None:
            return None
        try:
            return await reissue(fresh)
        except ValidationRequired:
            await self.forget(key, fresh)
            return None
