"""
Issuing at the primary CA with retries, and at the backup when the primary
keeps failing for reasons another CA may not share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attrs import define, evolve, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..ca import CAError, CertificateAuthority, ChallengeType, IssuedCertificate, IssueRequest
from ..ca.local import LocalCA
from ..core import Backoff, ProblemType, rfc3339
from ..notify import CaBudgetExhausted, CaFailover, EventBus, EventName, UpstreamOrdered, ValidationEvent
from ..policy import ValidationMethod
from ._budget import BudgetExhausted, BudgetLedger, NoRoom, Reservation
from ._health import CAHealth


def _method(challenge: ChallengeType) -> str:
    """
    The policy's validation method answered with C{challenge}.
    """
    method = ValidationMethod.DNS_CNAME if challenge is ChallengeType.DNS_01 else ValidationMethod.FILE_PROXY
    return str(method.value)


@frozen
class OrderEvents:
    """
    A L{ValidationObserver} that reports an order's upstream progress as
    appliance events (C{upstream.order}, C{validation.*}).
    """

    events: EventBus
    order_id: str
    token_id: str

    def ordered(self, ca: str, names: tuple[str, ...], url: str) -> None:
        self.events.emit(
            UpstreamOrdered, order_id=self.order_id, token_id=self.token_id, names=names, ca=ca, upstream_order=url
        )

    def started(self, ca: str, names: tuple[str, ...], challenge: ChallengeType) -> None:
        self._validation(EventName.VALIDATION_STARTED, ca, names, challenge)

    def succeeded(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, seconds: float) -> None:
        self._validation(EventName.VALIDATION_SUCCEEDED, ca, names, challenge, outcome="valid", seconds=seconds)

    def failed(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, error: str) -> None:
        self._validation(EventName.VALIDATION_FAILED, ca, names, challenge, outcome="invalid", error=error)

    def _validation(
        self,
        name: EventName,
        ca: str,
        names: tuple[str, ...],
        challenge: ChallengeType,
        *,
        outcome: str | None = None,
        error: str | None = None,
        seconds: float | None = None,
    ) -> None:
        self.events.emit(
            ValidationEvent,
            name=name,
            order_id=self.order_id,
            token_id=self.token_id,
            names=names,
            ca=ca,
            outcome=outcome,
            error=error,
            method=_method(challenge),
            seconds=seconds,
        )


@define
class _Run:
    """
    One L{FailoverIssuer.issue} call's state.

    @ivar last: the last transient error.
    @ivar current: the CA asked last.
    @ivar budget_until: the earliest time a CA out of budget frees up.
    """

    request: IssueRequest
    order_id: str
    token_id: str
    cas: Sequence[str]
    deadline: float
    last: CAError | None = None
    current: str | None = None
    budget_until: float | None = None


class FailoverIssuer:
    """
    Tries the CAs of a policy in order.  A transient failure (network,
    timeout, 5xx, C{serverInternal}) is retried with backoff
    C{attempts_per_ca} times, then the next CA is tried; a CA that
    L{CAHealth} knows to be down is skipped (but probed now and then).  The
    rounds repeat until the order's deadline.  A client error
    (C{badCSR}, C{rejectedIdentifier}, C{caa}, ...) fails at once: another
    CA would refuse it too.

    With C{budgets}, each try first takes budget at its CA: a CA without
    room (or that answered C{rateLimited}) is passed over with a
    C{ca.budget_exhausted} event, and when no CA had room,
    L{BudgetExhausted} says when the earliest frees up.  Without, a
    C{rateLimited} answer is retried like any transient failure.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        cas: Mapping[str, CertificateAuthority],
        health: CAHealth,
        clock: IReactorTime,
        events: EventBus,
        attempts_per_ca: int = 2,
        retry_delays: Sequence[float] = (1.0, 2.0, 5.0, 10.0, 30.0),
        budgets: BudgetLedger | None = None,
    ) -> None:
        self._cas = cas
        self._health = health
        self._clock = clock
        self._events = events
        self._attempts = attempts_per_ca
        self._backoff = Backoff(retry_delays)
        self._budgets = budgets

    def built_in(self, cas: Sequence[str]) -> bool:
        """
        Whether every CA of C{cas} is a built-in CA: one that validates
        nothing and has no upstream order to share.
        """
        return all(isinstance(self._cas.get(name), LocalCA) for name in cas)

    async def _sleep(self, seconds: float) -> None:
        await deferLater(self._clock, seconds)

    def _attempt(self, name: str, run: _Run) -> Deferred[IssuedCertificate]:
        """
        One call to CA C{name}, cancelled (with whatever it is doing: the
        preflight fetch, polling the CA) when the order's deadline comes.
        """

        def too_late(result: object, timeout: float) -> Failure:
            earlier = f"; last error: {run.last.detail}" if run.last else ""
            return Failure(self._deadline_passed(run.cas, name, f"CA {name} was still working on it{earlier}"))

        attempt = Deferred.fromCoroutine(self._cas[name].issue(run.request))
        return attempt.addTimeout(max(0.0, run.deadline - self._clock.seconds()), self._clock, onTimeoutCancel=too_late)

    @staticmethod
    def _deadline_passed(cas: Sequence[str], current: str | None, what: str) -> CAError:
        return CAError(
            f"no CA could issue before the order's deadline ({', '.join(cas)}); {what}",
            transient=False,
            problem_type=ProblemType.SERVER_INTERNAL,
            ca=current,
        )

    async def _serving(self, cas: Sequence[str], profile: str | None, order_id: str) -> Sequence[str]:
        """
        The CAs of C{cas} that can issue with C{profile}; one that cannot
        tell (unreachable) stays: its attempt will fail over as usual.

        @raise CAError: C{invalidProfile} when none of them offers it.
        """
        if profile is None:
            return cas
        serving = []
        for name in cas:
            try:
                if not await self._cas[name].supports_profile(profile):
                    self._log.info(
                        "order {order_id}: CA {ca} does not offer profile {profile}",
                        order_id=order_id,
                        ca=name,
                        profile=profile,
                    )
                    continue
            except CAError:
                pass
            serving.append(name)
        if not serving:
            raise CAError(
                f"no CA of this policy offers profile {profile!r} (asked: {', '.join(cas)})",
                transient=False,
                problem_type=ProblemType.INVALID_PROFILE,
            )
        return serving

    async def issue(
        self, request: IssueRequest, *, order_id: str, token_id: str, cas: Sequence[str], deadline: float
    ) -> IssuedCertificate:
        """
        Issue at the first of C{cas} that succeeds.

        @param deadline: clock time after which no further attempt starts.
        @raise CAError: a client error, L{ValidationRequired}, or (not
            transient) every CA failed until the deadline.
        @raise BudgetExhausted: no CA had budget in a round, or a CA out of
            budget might still have issued by the deadline.
        """
        request = evolve(request, observer=OrderEvents(self._events, order_id, token_id))
        cas = await self._serving(cas, request.profile, order_id)
        run = _Run(request, order_id, token_id, cas, deadline)
        round_ = 0
        while True:
            tried = False
            for name in cas:
                # A known-down CA is skipped while another may work; alone, it
                # is still tried (by probes) rather than not at all.
                if not self._health.should_try(name) and len(cas) > 1:
                    continue
                issued, asked = await self._at(run, name)
                tried = tried or asked
                if issued is not None:
                    return issued
            if run.budget_until is not None and not tried:
                raise BudgetExhausted(run.budget_until)
            delay = self._backoff.delay(round_)
            round_ += 1
            if self._clock.seconds() + delay >= deadline:
                if run.budget_until is not None:
                    raise BudgetExhausted(run.budget_until)
                detail = run.last.detail if run.last else "no CA could be reached"
                raise self._deadline_passed(cas, run.current, f"last error: {detail}")
            await self._sleep(delay)

    async def _at(self, run: _Run, name: str) -> tuple[IssuedCertificate | None, bool]:
        """
        Up to C{attempts_per_ca} tries at CA C{name}: what it issued, if
        anything, and whether it was asked at all.
        """
        asked = False
        for attempt in range(self._attempts):
            reservation = await self._reserve(run, name)
            if reservation is None:
                return None, asked
            asked = True
            self._switch(run, name)
            try:
                issued = await self._attempt(name, run)
            except CAError as e:
                await self._refund(reservation)
                if not await self._retry(run, name, e, attempt):
                    return None, asked
            else:
                self._health.succeeded(name)
                return issued, asked
        return None, asked

    async def _retry(self, run: _Run, name: str, e: CAError, attempt: int) -> bool:
        """
        Whether to ask CA C{name} again after C{e}, having waited for it.

        @raise CAError: C{e}, when no other CA would do better.
        """
        if self._budgets is not None and e.problem_type is ProblemType.RATE_LIMITED:
            self._no_room(run, await self._budgets.rate_limited(name, run.request.names, e.detail, e.retry_after))
            return False
        if e.problem_type is ProblemType.INVALID_PROFILE and name != run.cas[-1]:
            # A CA whose directory could not be read up front refused the
            # profile: the next CA may offer it.
            run.last = e
            return False
        if not e.transient:
            e.ca = e.ca or name
            raise e
        run.last = e
        self._health.failed(name)
        self._log.warn("order {order_id}: CA {ca} failed ({error})", order_id=run.order_id, ca=name, error=e.detail)
        delay = self._backoff.delay(attempt)
        if attempt + 1 < self._attempts and self._clock.seconds() + delay < run.deadline:
            await self._sleep(delay)
            return True
        return False

    def _switch(self, run: _Run, name: str) -> None:
        if run.current is not None and run.current != name:
            self._log.warn(
                "order {order_id}: failing over from CA {from_ca} to {to_ca}",
                order_id=run.order_id,
                from_ca=run.current,
                to_ca=name,
            )
            self._events.emit(
                CaFailover,
                order_id=run.order_id,
                token_id=run.token_id,
                names=run.request.names,
                ca=name,
                error=run.last.detail if run.last else None,
                from_ca=run.current,
                to_ca=name,
            )
        run.current = name

    async def _reserve(self, run: _Run, name: str) -> Reservation | None:
        """
        Budget for one order at CA C{name}; C{None} when it has no room.
        """
        if self._budgets is None or (self.built_in([name]) and not self._budgets.limits.get(name)):
            # A built-in CA without limits refuses nothing: no ledger to read.
            return Reservation(name)
        got = await self._budgets.reserve(name, run.request.names)
        if isinstance(got, NoRoom):
            self._no_room(run, got)
            return None
        return got

    async def _refund(self, reservation: Reservation) -> None:
        if self._budgets is not None:
            await self._budgets.refund(reservation)

    def _no_room(self, run: _Run, room: NoRoom) -> None:
        run.budget_until = room.until if run.budget_until is None else min(run.budget_until, room.until)
        self._log.info(
            "order {order_id}: CA {ca} has no budget left under {limit} until {free_at}",
            order_id=run.order_id,
            ca=room.ca,
            limit=room.limit,
            free_at=rfc3339(room.until, fraction=False),
        )
        self._events.emit(
            CaBudgetExhausted,
            order_id=run.order_id,
            token_id=run.token_id,
            names=run.request.names,
            ca=room.ca,
            limit=room.limit,
            free_at=rfc3339(room.until, fraction=False),
        )
