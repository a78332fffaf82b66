"""
Issuance as background jobs: finalize queues the order, a job asks the CA and
records the outcome.  Queued jobs survive restarts.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import evolve
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..acme._jws import b64decode
from ..acme._problems import AcmeProblem, ProblemType
from ..acme._records import AcmeRepository, CertificateRecord, Order, OrderStatus, new_id
from ..ca import CAError, CertificateAuthority, ChallengeType, IssuedCertificate, IssueRequest
from ..config import PolicyConfig, ValidationMethod

CHALLENGE_FOR_METHOD = {
    ValidationMethod.DNS_CNAME: ChallengeType.DNS_01,
    ValidationMethod.FILE_PROXY: ChallengeType.HTTP_01,
    ValidationMethod.NONE: None,
}


class IssuanceService(Service):
    """
    Runs one job per C{processing} order and resumes queued jobs at start-up.

    @ivar deadline: seconds after finalize after which an order that could
        not be issued becomes C{invalid}.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        repository: AcmeRepository,
        cas: Mapping[str, CertificateAuthority],
        policies: Mapping[str, PolicyConfig],
        clock: IReactorTime,
        deadline: float = 600.0,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
    ) -> None:
        self._repo = repository
        self._cas = cas
        self._policies = policies
        self._clock = clock
        self._deadline = deadline
        self._retry_delays = retry_delays
        self._running: dict[str, Deferred[None]] = {}

    def startService(self) -> None:
        super().startService()
        self._resumed = ensureDeferred(self._resume())

    def stopService(self) -> Deferred[object]:
        super().stopService()
        running = list(self._running.values())
        for job in running:
            job.cancel()
        return DeferredList(running, consumeErrors=True)  # type: ignore[return-value]

    async def _resume(self) -> None:
        try:
            queued = await self._repo.queued()
        except Exception:
            self._log.failure("cannot read the issuance queue")
            return
        if queued:
            self._log.info("resuming {count} queued issuance job(s)", count=len(queued))
        for order_id in queued:
            self.submit(order_id)

    def submit(self, order_id: str) -> None:
        if order_id in self._running:
            return
        job = Deferred.fromCoroutine(self._job(order_id))
        self._running[order_id] = job

        def done(result: object) -> None:
            self._running.pop(order_id, None)

        job.addBoth(done)

    def running_jobs(self) -> frozenset[str]:
        return frozenset(self._running)

    async def _job(self, order_id: str) -> None:
        try:
            await self._issue(order_id)
        except CancelledError:
            # Shutting down: the order stays queued and resumes at next start.
            raise
        except AcmeProblem as problem:
            await self._fail(order_id, problem)
        except CAError as e:
            await self._fail(order_id, AcmeProblem(e.problem_type, e.detail))
        except Exception:
            self._log.failure("issuance of order {order_id} failed unexpectedly", order_id=order_id)
            await self._fail(
                order_id, AcmeProblem(ProblemType.SERVER_INTERNAL, "issuance failed; the operator has the details")
            )

    async def _issue(self, order_id: str) -> None:
        order = await self._repo.order(order_id)
        if order is None or order.status is not OrderStatus.PROCESSING:
            await self._repo.dequeue(order_id)
            return
        policy = self._policies.get(order.policy)
        if policy is None:
            raise AcmeProblem(ProblemType.SERVER_INTERNAL, f"policy {order.policy!r} is no longer configured")
        ca = self._cas[policy.primary_ca]
        assert order.csr is not None
        request = IssueRequest(
            csr_der=b64decode(order.csr, "csr"),
            names=order.names,
            order_id=order.id,
            challenge_type=CHALLENGE_FOR_METHOD[policy.validation],
        )
        issued = await self._with_retries(order, ca, request)
        await self._complete(order, issued)

    async def _with_retries(self, order: Order, ca: CertificateAuthority, request: IssueRequest) -> IssuedCertificate:
        started = order.processing_since or self._clock.seconds()
        attempt = 0
        while True:
            try:
                return await ca.issue(request)
            except CAError as e:
                delay = self._retry_delays[min(attempt, len(self._retry_delays) - 1)]
                if not e.transient or self._clock.seconds() + delay > started + self._deadline:
                    raise
                self._log.warn(
                    "CA {ca} failed for order {order_id} ({error}); retrying in {delay}s",
                    ca=ca.name, order_id=order.id, error=e.detail, delay=delay,
                )
                attempt += 1
                await deferLater(self._clock, delay)

    async def _complete(self, order: Order, issued: IssuedCertificate) -> None:
        leaf = x509.load_pem_x509_certificate(issued.chain_pem)
        record = CertificateRecord(
            id=new_id(),
            order_id=order.id,
            token_id=order.token_id,
            account_id=order.account_id,
            names=order.names,
            chain_pem=issued.chain_pem.decode("ascii"),
            serial=format(leaf.serial_number, "x"),
            ca_name=issued.ca_name,
            issued=self._clock.seconds(),
        )
        await self._repo.put_certificate(record)
        now = self._clock.seconds()
        await self._repo.update_order(
            order.id,
            lambda o: evolve(o, status=OrderStatus.VALID, certificate_id=record.id, ca_name=issued.ca_name, completed=now)
            if o.status is OrderStatus.PROCESSING
            else None,
        )
        await self._repo.dequeue(order.id)
        self._log.info(
            "order {order_id} issued by {ca} (serial {serial})", order_id=order.id, ca=issued.ca_name, serial=record.serial
        )

    async def _fail(self, order_id: str, problem: AcmeProblem) -> None:
        now = self._clock.seconds()
        await self._repo.update_order(
            order_id,
            lambda o: evolve(o, status=OrderStatus.INVALID, error=problem.to_json(), completed=now)
            if o.status is OrderStatus.PROCESSING
            else None,
        )
        await self._repo.dequeue(order_id)
        self._log.warn("order {order_id} failed: {detail}", order_id=order_id, detail=problem.detail)


class Revoker:
    """
    Revokes certificates at the CA that issued them and records it.
    """

    _log = Logger()

    def __init__(self, repository: AcmeRepository, cas: Mapping[str, CertificateAuthority], clock: IReactorTime) -> None:
        self._repo = repository
        self._cas = cas
        self._clock = clock

    async def revoke(self, record: CertificateRecord, reason: int | None) -> None:
        ca = self._cas.get(record.ca_name)
        if ca is None:
            raise AcmeProblem(ProblemType.SERVER_INTERNAL, f"CA {record.ca_name!r} that issued it is no longer configured")
        leaf = x509.load_pem_x509_certificate(record.chain_pem.encode())
        try:
            await ca.revoke(leaf.public_bytes(Encoding.DER), reason)
        except CAError as e:
            raise AcmeProblem(e.problem_type, f"CA {ca.name} refused the revocation: {e.detail}") from None
        await self._repo.put_certificate(evolve(record, revoked_at=self._clock.seconds(), revocation_reason=reason))
