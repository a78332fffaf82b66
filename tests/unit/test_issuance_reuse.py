"""
One upstream validation per order key (L{UpstreamReuse}) with a Clock and a
scripted CA: waiters re-issue, also when the CA wants a new validation, and
also across two processes sharing the store.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, IssuedCertificate, ValidationRequired
from acme_appliance.core import ProblemType
from acme_appliance.issuance import FAILURE_WINDOW, IssueMode, OrderLocks, UpstreamOrder, UpstreamReuse
from acme_appliance.storage import MemoryStore, keys

KEY = "t1/a.test"


class ScriptedCA:
    """
    Validating and re-issuing each take C{seconds}; re-issuing against a
    validation in C{stale} is refused with L{ValidationRequired}.
    """

    def __init__(self, clock: Clock, seconds: float = 10.0) -> None:
        self.clock = clock
        self.seconds = seconds
        self.validations: list[str] = []
        self.reissues: list[tuple[str, str]] = []
        self.stale: set[str] = set()
        self.slow: dict[str, float] = {}
        #: What validating raises, if anything.
        self.refusal: CAError | None = None

    async def validate(self, order_id: str) -> IssuedCertificate:
        self.validations.append(order_id)
        await deferLater(self.clock, self.seconds)
        if self.refusal is not None:
            raise self.refusal
        return IssuedCertificate(chain_pem=b"chain", ca_name="ca")

    async def reissue(self, order_id: str, fresh: UpstreamOrder) -> IssuedCertificate:
        await deferLater(self.clock, self.slow.get(order_id, self.seconds))
        if fresh.order_id in self.stale:
            raise ValidationRequired(f"validation of {fresh.order_id} is no longer valid")
        self.reissues.append((order_id, fresh.order_id))
        return IssuedCertificate(chain_pem=b"chain", ca_name="ca")


class UpstreamReuseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self.ca = ScriptedCA(self.clock)
        self.reuse = self.process()

    def process(self) -> UpstreamReuse:
        """
        Another process on the same store: its own locks and reuse.
        """
        return UpstreamReuse(self.store, self.clock, OrderLocks(self.store, self.clock, poll=0.5), window=3600)

    def obtain(self, reuse: UpstreamReuse, order_id: str) -> Deferred[tuple[IssuedCertificate, IssueMode]]:
        return Deferred.fromCoroutine(
            reuse.obtain(
                KEY,
                order_id,
                reissue=lambda fresh: self.ca.reissue(order_id, fresh),
                validate=lambda: self.ca.validate(order_id),
            )
        )

    def run_all(self, jobs: list[Deferred[tuple[IssuedCertificate, IssueMode]]]) -> list[IssueMode]:
        for _ in range(200):
            self.clock.advance(0.5)
        return [self.successResultOf(job)[1] for job in jobs]

    def fresh(self) -> UpstreamOrder | None:
        return self.successResultOf(Deferred.fromCoroutine(self.reuse.fresh(KEY)))

    def assertNothingLeft(self, *processes: UpstreamReuse) -> None:
        for reuse in processes:
            self.assertEqual(len(reuse.locks), 0)
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(self.store.get(keys.order_lock(KEY)))))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waiters_reissue_on_one_validation(self) -> None:
        jobs = [self.obtain(self.reuse, f"o{i}") for i in range(5)]
        modes = self.run_all(jobs)
        self.assertEqual(modes, [IssueMode.NEW] + [IssueMode.REISSUE] * 4)
        self.assertEqual(self.ca.validations, ["o0"])
        self.assertEqual(sorted(self.ca.reissues), [(f"o{i}", "o0") for i in range(1, 5)])
        self.assertEqual(self.fresh(), UpstreamOrder(ca="ca", order_id="o0", at=10.0))
        self.assertNothingLeft(self.reuse)

    def test_fresh_validation_reissues_at_once(self) -> None:
        self.successResultOf(Deferred.fromCoroutine(self.reuse.remember(KEY, "ca", "old")))
        modes = self.run_all([self.obtain(self.reuse, f"o{i}") for i in range(3)])
        self.assertEqual(modes, [IssueMode.REISSUE] * 3)
        self.assertEqual(self.ca.validations, [])
        self.assertNothingLeft(self.reuse)

    def test_ca_wants_a_new_validation(self) -> None:
        """
        The CA refuses re-issues against the fresh validation: the first job
        to take the lock validates again, once; the others re-issue against
        that.
        """
        self.successResultOf(Deferred.fromCoroutine(self.reuse.remember(KEY, "ca", "old")))
        self.ca.stale.add("old")
        jobs = [self.obtain(self.reuse, f"o{i}") for i in range(5)]
        modes = self.run_all(jobs)
        self.assertEqual(self.ca.validations, ["o0"])
        self.assertEqual(modes, [IssueMode.NEW] + [IssueMode.REISSUE] * 4)
        self.assertEqual(sorted(self.ca.reissues), [(f"o{i}", "o0") for i in range(1, 5)])
        self.assertEqual(self.fresh(), UpstreamOrder(ca="ca", order_id="o0", at=20.0))
        self.assertNothingLeft(self.reuse)

    def test_late_refusal_keeps_the_newer_validation(self) -> None:
        """
        A refusal for the old validation that arrives after another job
        validated again forgets the old one only: that job re-issues
        against the new one.
        """
        self.successResultOf(Deferred.fromCoroutine(self.reuse.remember(KEY, "ca", "old")))
        self.ca.stale.add("old")
        self.ca.slow["late"] = 25
        modes = self.run_all([self.obtain(self.reuse, "o0"), self.obtain(self.reuse, "late")])
        self.assertEqual(modes, [IssueMode.NEW, IssueMode.REISSUE])
        self.assertEqual(self.ca.validations, ["o0"])
        self.assertEqual(self.ca.reissues, [("late", "o0")])
        self.assertNothingLeft(self.reuse)

    def test_two_processes_validate_once(self) -> None:
        other = self.process()
        jobs = [self.obtain(reuse, f"{name}{i}") for i in range(3) for name, reuse in (("a", self.reuse), ("b", other))]
        modes = self.run_all(jobs)
        self.assertEqual(self.ca.validations, ["a0"])
        self.assertEqual(modes.count(IssueMode.NEW), 1)
        self.assertEqual(len(self.ca.reissues), 5)
        self.assertNothingLeft(self.reuse, other)

    def test_reuse_window(self) -> None:
        self.run_all([self.obtain(self.reuse, "o0")])
        self.clock.advance(3600)
        self.assertIsNone(self.fresh())
        self.assertEqual(self.run_all([self.obtain(self.reuse, "o1")]), [IssueMode.NEW])
        self.assertEqual(self.ca.validations, ["o0", "o1"])

    def refused(self, jobs: list[Deferred[tuple[IssuedCertificate, IssueMode]]]) -> list[CAError]:
        for _ in range(200):
            self.clock.advance(0.5)
        return [self.failureResultOf(job, CAError).value for job in jobs]

    def test_failed_validation_fails_the_waiters(self) -> None:
        """
        The CA refused the names: the orders that waited, and those that
        come within the failure window, fail with its problem and no
        validation of their own.
        """
        refusal = CAError("a.test: no TXT value", transient=False, problem_type=ProblemType.UNAUTHORIZED, ca="ca")
        self.ca.refusal = refusal
        jobs = [self.obtain(self.reuse, f"o{i}") for i in range(3)] + [self.obtain(self.process(), "o3")]
        self.clock.pump([0.5] * 60)
        errors = self.refused([*jobs, self.obtain(self.reuse, "o4")])
        self.assertEqual(self.ca.validations, ["o0"])
        self.assertIs(errors[0], self.ca.refusal)
        for error in errors[1:]:
            self.assertEqual((error.problem_type, error.ca, error.transient), (ProblemType.UNAUTHORIZED, "ca", False))
            self.assertIn("a.test: no TXT value (the validation of these names failed", error.detail)
        self.assertNothingLeft(self.reuse)
        self.clock.advance(FAILURE_WINDOW)
        self.ca.refusal = None
        self.assertEqual(self.run_all([self.obtain(self.reuse, "o5")]), [IssueMode.NEW])

    def test_one_orders_refusal_is_not_remembered(self) -> None:
        """
        A refusal of one order's CSR, or a transient failure, concerns that
        order only: the next one validates.
        """
        for refusal in [
            CAError("weak key", transient=False, problem_type=ProblemType.BAD_CSR),
            CAError("CA down", transient=True, problem_type=ProblemType.UNAUTHORIZED),
        ]:
            self.ca.refusal = refusal
            self.ca.validations = []
            self.refused([self.obtain(self.reuse, f"o{i}") for i in range(2)])
            self.assertEqual(self.ca.validations, ["o0", "o1"])
