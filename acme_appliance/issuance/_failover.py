"""
Issuing at the primary CA with retries, and at the backup when the primary
keeps failing for reasons another CA may not share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attrs import evolve, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..ca import CAError, CertificateAuthority, ChallengeType, IssuedCertificate, IssueRequest
from ..core import Backoff, ProblemType
from ..notify import CaFailover, EventBus, EventName, UpstreamOrdered, ValidationEvent
from ..policy import ValidationMethod
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


class FailoverIssuer:
    """
    Tries the CAs of a policy in order.  A transient failure (network,
    timeout, 5xx, C{serverInternal}, C{rateLimited}) is retried with backoff
    C{attempts_per_ca} times, then the next CA is tried; a CA that
    L{CAHealth} knows to be down is skipped (but probed now and then).  The
    rounds repeat until the order's deadline.  A client error
    (C{badCSR}, C{rejectedIdentifier}, C{caa}, ...) fails at once: another
    CA would refuse it too.
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
    ) -> None:
        self._cas = cas
        self._health = health
        self._clock = clock
        self._events = events
        self._attempts = attempts_per_ca
        self._backoff = Backoff(retry_delays)

    async def _sleep(self, seconds: float) -> None:
        await deferLater(self._clock, seconds)

    def _attempt(
        self, name: str, request: IssueRequest, cas: Sequence[str], deadline: float, last: CAError | None
    ) -> Deferred[IssuedCertificate]:
        """
        One call to CA C{name}, cancelled (with whatever it is doing: the
        preflight fetch, polling the CA) when the order's deadline comes.
        """

        def too_late(result: object, timeout: float) -> Failure:
            earlier = f"; last error: {last.detail}" if last else ""
            return Failure(self._deadline_passed(cas, name, f"CA {name} was still working on it{earlier}"))

        attempt = Deferred.fromCoroutine(self._cas[name].issue(request))
        return attempt.addTimeout(max(0.0, deadline - self._clock.seconds()), self._clock, onTimeoutCancel=too_late)

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
        """
        request = evolve(request, observer=OrderEvents(self._events, order_id, token_id))
        cas = await self._serving(cas, request.profile, order_id)
        last: CAError | None = None
        current: str | None = None
        round_ = 0
        while True:
            for name in cas:
                # A known-down CA is skipped while another may work; alone, it
                # is still tried (by probes) rather than not at all.
                if not self._health.should_try(name) and len(cas) > 1:
                    continue
                if current is not None and current != name:
                    self._log.warn(
                        "order {order_id}: failing over from CA {from_ca} to {to_ca}",
                        order_id=order_id,
                        from_ca=current,
                        to_ca=name,
                    )
                    self._events.emit(
                        CaFailover,
                        order_id=order_id,
                        token_id=token_id,
                        names=request.names,
                        ca=name,
                        error=last.detail if last else None,
                        from_ca=current,
                        to_ca=name,
                    )
                current = name
                for attempt in range(self._attempts):
                    try:
                        issued = await self._attempt(name, request, cas, deadline, last)
                    except CAError as e:
                        if not e.transient:
                            e.ca = e.ca or name
                            raise
                        last = e
                        self._health.failed(name)
                        self._log.warn(
                            "order {order_id}: CA {ca} failed ({error})", order_id=order_id, ca=name, error=e.detail
                        )
                        delay = self._backoff.delay(attempt)
                        if attempt + 1 < self._attempts and self._clock.seconds() + delay < deadline:
                            await self._sleep(delay)
                            continue
                        break
                    else:
                        self._health.succeeded(name)
                        return issued
            delay = self._backoff.delay(round_)
            round_ += 1
            if self._clock.seconds() + delay >= deadline:
                detail = last.detail if last else "no CA could be reached"
                raise self._deadline_passed(cas, current, f"last error: {detail}")
            await self._sleep(delay)
