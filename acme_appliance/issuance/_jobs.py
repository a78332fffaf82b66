"""
Issuance as background jobs: finalize queues the order, a job asks the CA and
records the outcome.  Queued jobs survive restarts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from attrs import evolve
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..ca import CAError, CertificateAuthority, ChallengeType, IssuedCertificate, IssueRequest
from ..core import AcmeProblem, ProblemType, Unavailable, both, report_failure, while_unavailable
from ..notify import CertificateIssued, Event, EventBus, EventJournal, EventName
from ..orders import AcmeRepository, CertificateRecord, Limit, Order, OrderStatus, RateLimiter, new_id, recheck_names
from ..policy import Policy, TokenRegistry, ValidationMethod
from ..storage import Lease, Write, keys
from ..wire import b64decode
from ._budget import MIN_WAIT, BudgetExhausted, BudgetLedger
from ._failover import FailoverIssuer
from ._health import CAHealth
from ._locks import LEASE, JobLeases, OrderLocks, order_key
from ._reuse import IssueMode, UpstreamOrder, UpstreamReuse

#: How much a new job duration counts in the running estimate.
ESTIMATE_WEIGHT = 0.3

#: Seconds between readings of the CA budgets for the metrics.
BUDGET_REFRESH = 60.0

#: How long a finished job waits for an away store to record its
#: certificate.
STORE_PATIENCE = 120.0

T = TypeVar("T")
U = TypeVar("U")

CHALLENGE_FOR_METHOD = {
    ValidationMethod.DNS_CNAME: ChallengeType.DNS_01,
    ValidationMethod.FILE_PROXY: ChallengeType.HTTP_01,
    ValidationMethod.NONE: None,
}


async def _store_valid(
    repo: AcmeRepository, order: Order, record: CertificateRecord, mode: IssueMode, now: float, leaf: x509.Certificate
) -> Order | None:
    """
    Store C{record} and its indexes, then the order made valid with it (it
    points to the record); the order as stored afterwards.
    """

    def valid(o: Order) -> Order | None:
        if o.status is not OrderStatus.PROCESSING:
            return None
        return evolve(
            o,
            status=OrderStatus.VALID,
            certificate_id=record.id,
            ca_name=record.ca_name,
            completed=now,
            issue_mode=mode.value,
        )

    # The order as this job read it: no second read to change it.
    return await repo.put_certificate_of(record, order, valid, leaf)


class DurationEstimate:
    """
    How long issuance takes, per policy (which fixes the CA and the
    validation method): an exponentially weighted mean of the durations of
    recent jobs, the newest weighing C{weight}.
    """

    def __init__(self, weight: float = ESTIMATE_WEIGHT) -> None:
        self._weight = weight
        self._means: dict[str, float] = {}

    def observe(self, policy: str, seconds: float) -> None:
        """
        Count one job of C{policy} that took C{seconds}.
        """
        mean = self._means.get(policy)
        self._means[policy] = seconds if mean is None else mean + self._weight * (seconds - mean)

    def __call__(self, policy: str) -> float | None:
        """
        The expected seconds a job of C{policy} takes; C{None} before any
        job of it finished.
        """
        return self._means.get(policy)


class IssuanceService(Service):
    """
    Runs one job per C{processing} order and resumes queued jobs at start-up.

    Jobs for the same order key (token + set of names) take turns: the
    first validates upstream under the key's lock; the others wait, then
    re-issue against that validation (concurrently once it is done) for as
    long as C{reuse_window} says it is fresh.  The lock is a lease in the
    store (C{lease} seconds, polled every C{lease_poll} seconds), so that it
    holds across the processes sharing the store.

    Before asking a CA, a job checks the order's names against its token
    (C{tokens}) and policy as they are now, so that narrowing
    C{allowed_domains} stops issuance for names made before.  A finished
    job first waits for one of its token's finalize slots (C{limiter},
    polled every C{slot_poll} seconds) and gives it back when done.

    L{when_done} lets finalize wait for a job for a moment;
    L{expected_seconds} says how long jobs of a policy take (from the jobs
    issued here).

    An order no CA has budget for (in C{budgets}, a L{BudgetLedger})
    stays C{processing}: its job waits until the earliest budget frees up
    and tries again, with its deadline counted from then.

    @ivar deadline: seconds after finalize after which an order that could
        not be issued becomes C{invalid}.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        repository: AcmeRepository,
        cas: Mapping[str, CertificateAuthority],
        policies: Mapping[str, Policy],
        clock: IReactorTime,
        events: EventBus | None = None,
        health: CAHealth | None = None,
        deadline: float = 600.0,
        reuse_window: float = 3600.0,
        attempts_per_ca: int = 2,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
        lease: float = LEASE,
        lease_poll: float = 0.25,
        tokens: TokenRegistry | None = None,
        limiter: RateLimiter | None = None,
        slot_poll: float = 1.0,
        budgets: BudgetLedger | None = None,
        journal: EventJournal | None = None,
        node: str = "",
        sweep: float | None = None,
    ) -> None:
        self._repo = repository
        self._tokens = tokens
        self._limiter = limiter
        self._slot_poll = slot_poll
        self._policies = policies
        self._clock = clock
        self.events = events if events is not None else EventBus(clock)
        self.health = (
            health if health is not None else CAHealth(clock, on_change=self._health_changed, store=repository.store)
        )
        self.budgets = budgets if budgets is not None else BudgetLedger(repository.store, clock, {})
        self._journal = journal
        self._budget_refresh = LoopingCall(lambda: Deferred.fromCoroutine(self.budgets.refresh()))
        self._budget_refresh.clock = clock
        self._upstream = FailoverIssuer(
            cas=cas,
            health=self.health,
            clock=clock,
            events=self.events,
            attempts_per_ca=attempts_per_ca,
            retry_delays=retry_delays,
            budgets=self.budgets,
        )
        self._deadline = deadline
        self.locks = OrderLocks(repository.store, clock, lease=lease, poll=lease_poll, node=node)
        self._node = node
        self.jobs = JobLeases(repository.store, clock, node=node, lease=lease)
        self._sweep = LoopingCall(self._sweep_once)
        self._sweep.clock = clock
        self._sweep_interval = sweep if sweep is not None else lease / 3
        # Entries younger than a lease may be a finalize (here or on another
        # node) that queued its order and has not yet made it processing:
        # its own job issues it, and a job started now would find the order
        # still ready and drop the entry.
        self._queue_grace = lease
        self.reuse = UpstreamReuse(repository.store, clock, self.locks, reuse_window)
        self._running: dict[str, Deferred[None]] = {}
        self._submitted: dict[str, float] = {}
        self._waiters: dict[str, list[Deferred[Order | None]]] = {}
        #: The outcome of jobs still tidying up (C{None}: not known).
        self._settled: dict[str, Order | None] = {}
        #: How long jobs took here, per policy.
        self.durations = DurationEstimate()

    def _health_changed(self, ca: str, up: bool) -> None:
        self.events.emit(Event, name=EventName.CA_UP if up else EventName.CA_DOWN, ca=ca)

    def startService(self) -> None:
        super().startService()
        self._resumed = ensureDeferred(self._resume())
        if self.budgets.limits:
            # Other processes sharing the store use the budgets too.
            self._budget_refresh.start(BUDGET_REFRESH, now=True)
        self._sweep.start(self._sweep_interval, now=False)

    async def _sweep_once(self) -> None:
        """
        Every C{sweep} seconds: learn the CA health other nodes found, and
        resume the queued jobs nobody runs (their node died: its job lease
        ran out).
        """
        try:
            await self.health.refresh()
        except Exception:
            report_failure(self._log, "cannot read the CA health shared by the cluster")
        try:
            queued = await self._repo.queued(before=self._clock.seconds() - self._queue_grace)
        except Exception:
            report_failure(self._log, "cannot read the issuance queue")
            return
        for order_id in queued:
            self.submit(order_id)

    def stopService(self) -> Deferred[object]:
        super().stopService()
        if self._budget_refresh.running:
            self._budget_refresh.stop()
        self.budgets.stop()
        if self._sweep.running:
            self._sweep.stop()
        running = list(self._running.values())
        for job in running:
            job.cancel()
        return DeferredList(running, consumeErrors=True)  # type: ignore[return-value]

    async def _resume(self) -> None:
        try:
            queued = await self._repo.queued()
        except Exception:
            report_failure(self._log, "cannot read the issuance queue")
            return
        if queued:
            self._log.info("resuming {count} queued issuance job(s)", count=len(queued))
        for order_id in queued:
            self.submit(order_id)

    def submit(self, order_id: str, domains: tuple[str, ...] | None = None) -> None:
        """
        Start (or resume) the job of C{order_id} unless it runs here;
        C{domains}: its token's names, as finalize just checked them (the
        job then does not read the token again).
        """
        if order_id in self._running:
            return
        self._submitted[order_id] = self._clock.seconds()
        job = Deferred.fromCoroutine(self._leased_job(order_id, domains))
        self._running[order_id] = job

        def done(result: object) -> None:
            self._ended(order_id)
            if isinstance(result, Failure) and not result.check(CancelledError):
                # Recording the outcome failed too (the store away): the
                # order stays queued for the sweep.
                report_failure(self._log, "issuance job of order {order_id} ended early", result, order_id=order_id)

        job.addBoth(done)

    def _ended(self, order_id: str) -> None:
        self._running.pop(order_id, None)
        self._submitted.pop(order_id, None)
        self._settle(order_id, None)
        self._settled.pop(order_id, None)

    def _settle(self, order_id: str, order: Order | None) -> None:
        """
        The job of C{order_id} stored its outcome, C{order} (or ended,
        C{None}): finalize waiting for it answers now, with that order, not
        after the job's tidying up.
        """
        self._settled.setdefault(order_id, order)
        for waiter in self._waiters.pop(order_id, []):
            waiter.callback(order)

    def running_jobs(self) -> frozenset[str]:
        return frozenset(self._running)

    def when_done(self, order_id: str) -> Deferred[Order | None]:
        """
        A Deferred that fires when the job of C{order_id} running here has
        stored the order's outcome (with the order as stored) or ended
        without, however it ends (with C{None}); at once when none runs
        here.  Cancelling it forgets it.
        """
        if order_id not in self._running:
            return succeed(None)
        if order_id in self._settled:
            return succeed(self._settled[order_id])
        waiters = self._waiters.setdefault(order_id, [])

        def forget(waiter: Deferred[Order | None]) -> None:
            waiters.remove(waiter)
            if not waiters and self._waiters.get(order_id) is waiters:
                del self._waiters[order_id]

        waiter: Deferred[Order | None] = Deferred(forget)
        waiters.append(waiter)
        return waiter

    def expected_seconds(self, policy: str) -> float | None:
        """
        How long a job of C{policy} is expected to take; C{None}: no idea yet.
        """
        return self.durations(policy)

    def waiting(self) -> int:
        """
        How many L{when_done} Deferreds are still waiting.
        """
        return sum(len(waiters) for waiters in self._waiters.values())

    async def _finalizing(self, order_id: str) -> bool:
        """
        Whether the ready order C{order_id} was queued less than a lease
        ago: a finalize queued it and will make it processing (its own job
        issues it, or the sweep).
        """
        queued_at = await self._repo.queued_at(order_id)
        return queued_at is not None and queued_at > self._clock.seconds() - self._queue_grace

    async def _leased_job(self, order_id: str, domains: tuple[str, ...] | None) -> None:
        """
        The job under its lease: not at all while another node runs it.
        """
        try:
            lease = await self.jobs.take(order_id)
        except CancelledError:
            raise
        except Exception:
            report_failure(
                self._log, "cannot take the job lease of order {order_id}; retrying later", order_id=order_id
            )
            return
        if lease is None:
            return
        try:
            await self._job(order_id, domains, lease)
        finally:
            await lease.release()

    async def _job(self, order_id: str, domains: tuple[str, ...] | None, lease: Lease) -> None:
        try:
            await self._issue(order_id, domains, lease)
        except CancelledError:
            # Shutting down: the order stays queued and resumes at next start.
            raise
        except AcmeProblem as problem:
            await self._fail(order_id, problem)
        except CAError as e:
            await self._fail(order_id, AcmeProblem(e.problem_type, e.detail), ca=e.ca)
        except Unavailable as e:
            # The order stays processing; the sweep resumes it once the
            # store is back and this job's lease has run out.
            self._log.warn("order {order_id} waits for the store: {error}", order_id=order_id, error=e)
        except Exception:
            self._log.failure("issuance of order {order_id} failed unexpectedly", order_id=order_id)
            await self._fail(
                order_id, AcmeProblem(ProblemType.SERVER_INTERNAL, "issuance failed; the operator has the details")
            )

    async def _issue(self, order_id: str, domains: tuple[str, ...] | None, lease: Lease) -> None:
        # Read once the lease is held (another node's job may have finished
        # the order), together with the order's budget wait mark.
        order, budget_wait = await both(self._repo.order(order_id), self._repo.store.get(keys.budget_wait(order_id)))
        if order is not None and order.status is OrderStatus.VALID:
            # The job that made it valid died before it was done: announce
            # it unless the journal has.
            await self._announce_again(order)
        if order is not None and order.status is OrderStatus.READY and await self._finalizing(order_id):
            return
        if order is None or order.status is not OrderStatus.PROCESSING:
            await self._repo.dequeue(order_id)
            if order is not None:
                await self._release(order)
            return
        policy = self._policies.get(order.policy)
        if policy is None:
            raise AcmeProblem(ProblemType.SERVER_INTERNAL, f"policy {order.policy!r} is no longer configured")
        if domains is None:
            token = None if self._tokens is None else await self._tokens.get(order.token_id)
            domains = () if token is None else token.domains
        recheck_names(domains, policy, order.names)
        cas = policy.cas
        built_in = self._upstream.built_in(cas)
        if not built_in:
            await self._slot(order)
        assert order.csr is not None
        request = IssueRequest(
            csr_der=b64decode(order.csr, "csr"),
            names=order.names,
            order_id=order.id,
            challenge_type=CHALLENGE_FOR_METHOD[policy.validation],
            profile=order.profile,
        )
        since = self._deadline_start(order, budget_wait is not None)

        async def reissue(fresh: UpstreamOrder) -> IssuedCertificate:
            # The CA that validated first: its authorizations are the ones to re-use.
            ordered = [fresh.ca] + [c for c in cas if c != fresh.ca] if fresh.ca in cas else cas
            return await self._ask(order, evolve(request, allow_validation=False), ordered, since)

        async def validate() -> IssuedCertificate:
            return await self._ask(order, request, cas, since)

        while True:
            try:
                issued, mode = await self.reuse.obtain(
                    order_key(order.token_id, order.names),
                    order.id,
                    reissue=reissue,
                    validate=validate,
                    # A built-in CA validates nothing: no validation to
                    # share, so no turns under the order key's lock.
                    exclusive=not built_in,
                )
            except BudgetExhausted as e:
                since = await self._wait_for_budget(order, e.until)
            else:
                break
        await self._complete(order, issued, mode, lease)

    async def _ask(self, order: Order, request: IssueRequest, cas: list[str], since: float) -> IssuedCertificate:
        return await self._upstream.issue(
            request, order_id=order.id, token_id=order.token_id, cas=cas, deadline=since + self._deadline
        )

    def _deadline_start(self, order: Order, waited_for_budget: bool) -> float:
        """
        When the order's deadline starts counting: at finalize, or now (its
        job restarting) if it has waited for a CA budget.
        """
        now = self._clock.seconds()
        if waited_for_budget:
            return now
        return order.processing_since or now

    async def _wait_for_budget(self, order: Order, until: float) -> float:
        """
        Wait until clock time C{until} (a CA budget frees up), marking the
        order in the store so that its deadline restarts after a restart;
        the time it is over.
        """
        wait = max(until - self._clock.seconds(), MIN_WAIT)
        await self._repo.store.set(keys.budget_wait(order.id), b"1", ttl=wait + 2 * self._deadline)
        self._log.info(
            "order {order_id}: no CA has budget left; waiting {seconds:.0f} seconds", order_id=order.id, seconds=wait
        )
        await deferLater(self._clock, wait)
        return self._clock.seconds()

    async def _complete(self, order: Order, issued: IssuedCertificate, mode: IssueMode, lease: Lease) -> None:
        # Parsed once (not at all when the CA hands over what it built):
        # the serial and the certID index come from it.
        leaf = issued.leaf if issued.leaf is not None else x509.load_pem_x509_certificate(issued.chain_pem)
        unnumbered = CertificateRecord(
            id=new_id(),
            order_id=order.id,
            token_id=order.token_id,
            account_id=order.account_id,
            names=order.names,
            chain_pem=issued.chain_pem.decode("ascii"),
            serial=format(leaf.serial_number, "x"),
            ca_name=issued.ca_name,
            issued=self._clock.seconds(),
            alternates=tuple(chain.decode("ascii") for chain in issued.alternates),
        )
        # The CA issued: the store being away for a moment must not lose it.
        # Numbered once, so that trying again keeps its renewal slot.
        record = await self._stored(lambda: self._repo.numbered(unnumbered))
        now = self._clock.seconds()
        self.durations.observe(order.policy, now - self._submitted.get(order.id, now))
        stored = await self._stored(lambda: _store_valid(self._repo, order, record, mode, now, leaf))
        self._settle(order.id, stored)
        if stored is not None and stored.certificate_id == record.id:
            # This job made the order valid (not one that resumed it): it tells.
            self._announce(order, record, mode, now)
            if self._journal is not None:
                # Dequeued only once journaled: a node that dies before
                # leaves the order to be announced by the one that resumes it.
                await self._journal.written(order.id)
        # Dequeued, then the lease given back, in one write; the finalize
        # slot in the same round trip: it only waits for the order to be valid.
        tidy: list[Write] = [self._repo.dequeue_write(order.id), lease.release_write()]
        await self._stored(lambda: both(self._repo.store.write_in_order(tidy), self._release(order)))

    async def _announce_again(self, order: Order) -> None:
        if self._journal is None or order.certificate_id is None:
            return
        history = await self._journal.order_history(order.id)
        if any(event.name is EventName.CERTIFICATE_ISSUED for event in history):
            return
        record = await self._repo.certificate(order.certificate_id)
        if record is None:
            return
        mode = IssueMode(order.issue_mode) if order.issue_mode else IssueMode.NEW
        self._announce(order, record, mode, order.completed or self._clock.seconds())
        await self._journal.written(order.id)

    def _announce(self, order: Order, record: CertificateRecord, mode: IssueMode, now: float) -> None:
        self._log.info(
            "order {order_id} issued by {ca} ({mode}, serial {serial})",
            order_id=order.id,
            ca=record.ca_name,
            mode=mode.value,
            serial=record.serial,
            node=self._node,
        )
        self.events.emit(
            CertificateIssued,
            order_id=order.id,
            token_id=order.token_id,
            names=order.names,
            ca=record.ca_name,
            outcome="valid",
            mode=mode.value,
            serial=record.serial,
            seconds=now - (order.processing_since or now),
            replaces=order.replaces,
        )

    async def _stored(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await while_unavailable(self._clock, operation, patience=STORE_PATIENCE)

    async def _slot(self, order: Order) -> None:
        """
        Wait for one of the token's finalize slots (C{[limits]
        token_finalizes}), polling every C{slot_poll} seconds.

        @raise AcmeProblem: C{rateLimited} when the order deadline passes
            first.
        """
        if self._limiter is None:
            return
        give_up = self._deadline + (order.processing_since or self._clock.seconds())
        waited = False
        while not await self._limiter.take_slot(order.token_id, order.id):
            if not waited:
                waited = True
                self._limiter.limited(Limit.TOKEN_FINALIZES)
                self._log.info("order {order_id} waits for a finalize slot of its token", order_id=order.id)
            if self._clock.seconds() >= give_up:
                raise AcmeProblem(
                    ProblemType.RATE_LIMITED,
                    f"this token had {self._limiter.limits.token_finalizes} orders being issued "
                    "until the order deadline; order again",
                )
            await deferLater(self._clock, self._slot_poll, lambda: None)

    async def _release(self, order: Order) -> None:
        # The job of a policy whose CAs are all built-in took no slot.
        policy = self._policies.get(order.policy)
        if self._limiter is not None and (policy is None or not self._upstream.built_in(policy.cas)):
            await self._limiter.release_slot(order.token_id, order.id)

    async def _fail(self, order_id: str, problem: AcmeProblem, ca: str | None = None) -> None:
        now = self._clock.seconds()
        failed = await self._repo.update_order(
            order_id,
            lambda o: (
                evolve(o, status=OrderStatus.INVALID, error=problem.to_json(), completed=now, ca_name=ca or o.ca_name)
                if o.status is OrderStatus.PROCESSING
                else None
            ),
        )
        self._settle(order_id, failed)
        await self._repo.dequeue(order_id)
        if failed is not None:
            await self._release(failed)
        self._log.warn("order {order_id} failed: {detail}", order_id=order_id, detail=problem.detail)
        self.events.emit(
            Event,
            name=EventName.ORDER_FAILED,
            order_id=order_id,
            token_id=failed.token_id if failed else None,
            names=failed.names if failed else (),
            ca=ca,
            outcome="invalid",
            error=f"{problem.type.value}: {problem.detail}",
        )


class Revoker:
    """
    Revokes certificates at the CA that issued them and records it.
    """

    _log = Logger()

    def __init__(
        self, repository: AcmeRepository, cas: Mapping[str, CertificateAuthority], clock: IReactorTime
    ) -> None:
        self._repo = repository
        self._cas = cas
        self._clock = clock

    async def revoke(self, record: CertificateRecord, reason: int | None) -> None:
        ca = self._cas.get(record.ca_name)
        if ca is None:
            raise AcmeProblem(
                ProblemType.SERVER_INTERNAL, f"CA {record.ca_name!r} that issued it is no longer configured"
            )
        leaf = x509.load_pem_x509_certificate(record.chain_pem.encode())
        try:
            await ca.revoke(leaf.public_bytes(Encoding.DER), reason)
        except CAError as e:
            raise AcmeProblem(e.problem_type, f"CA {ca.name} refused the revocation: {e.detail}") from None
        now = self._clock.seconds()
        await self._repo.update_certificate(record.id, lambda c: evolve(c, revoked_at=now, revocation_reason=reason))
