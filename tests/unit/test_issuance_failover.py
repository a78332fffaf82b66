"""
Issuing with retries, backoff and failover (L{FailoverIssuer}), and the
issuance jobs' one-validation-per-order-key re-use, with a Clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, IssueRequest, ValidationRequired
from acme_appliance.core import ProblemType
from acme_appliance.issuance._failover import FailoverIssuer
from acme_appliance.issuance._health import CAHealth
from acme_appliance.notify import CaFailover, CertificateIssued, EventBus
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.storage import keys
from acme_appliance.testing import RefusingCA, ScriptedCA, StubAcmeClient, World, as_upstream, issued, make_csr

DOWN = CAError("connection refused", transient=True)
OK = "ok"


class FailoverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events = EventBus(self.clock)
        self.notes = MemoryNotifier()
        self.events.subscribe(self.notes)
        self.changes: list[tuple[str, bool]] = []
        self.health = CAHealth(
            self.clock, threshold=3, probe_interval=60, on_change=lambda ca, up: self.changes.append((ca, up))
        )

    def issuer(self, *cas: ScriptedCA) -> FailoverIssuer:
        return FailoverIssuer(
            cas={ca.name: ca for ca in cas},
            health=self.health,
            clock=self.clock,
            events=self.events,
            attempts_per_ca=2,
            retry_delays=(1.0, 2.0, 4.0),
        )

    def issue(self, issuer: FailoverIssuer, names: Sequence[str], deadline: float = 100.0) -> Deferred[Any]:
        request = IssueRequest(csr_der=b"", names=("a.test",), order_id="o1")
        return Deferred.fromCoroutine(issuer.issue(request, order_id="o1", token_id="t1", cas=names, deadline=deadline))

    def test_primary_works(self) -> None:
        primary = ScriptedCA("primary", [OK], self.clock)
        backup = ScriptedCA("backup", [OK], self.clock)
        result = self.successResultOf(self.issue(self.issuer(primary, backup), ["primary", "backup"]))
        self.assertEqual(result.ca_name, "primary")
        self.assertEqual(backup.calls, [])
        self.assertEqual(self.notes.events, [])

    def test_retry_with_backoff_then_failover(self) -> None:
        """
        A transient failure is retried once after the first backoff delay;
        then the backup is asked, and a C{ca.failover} event says so.
        """
        primary = ScriptedCA("primary", [DOWN], self.clock)
        backup = ScriptedCA("backup", [OK], self.clock)
        d = self.issue(self.issuer(primary, backup), ["primary", "backup"])
        self.assertEqual(primary.calls, [0.0])
        self.assertNoResult(d)
        self.clock.advance(1.0)
        self.assertEqual(primary.calls, [0.0, 1.0])
        self.assertEqual(self.successResultOf(d).ca_name, "backup")
        self.assertEqual(backup.calls, [1.0])
        [failover] = self.notes.of_kind(CaFailover)
        self.assertEqual((failover.from_ca, failover.to_ca), ("primary", "backup"))
        self.assertEqual(failover.order_id, "o1")
        self.assertEqual(failover.token_id, "t1")

    def test_recovers_at_primary(self) -> None:
        primary = ScriptedCA("primary", [DOWN, OK], self.clock)
        backup = ScriptedCA("backup", [OK], self.clock)
        d = self.issue(self.issuer(primary, backup), ["primary", "backup"])
        self.clock.advance(1.0)
        self.assertEqual(self.successResultOf(d).ca_name, "primary")
        self.assertEqual(backup.calls, [])

    def test_client_error_does_not_fail_over(self) -> None:
        refused = CAError("CA primary: CAA forbids it", transient=False, problem_type=ProblemType.CAA)
        primary = ScriptedCA("primary", [refused], self.clock)
        backup = ScriptedCA("backup", [OK], self.clock)
        failure = self.failureResultOf(self.issue(self.issuer(primary, backup), ["primary", "backup"]), CAError)
        self.assertIs(failure.value, refused)
        self.assertEqual(failure.value.ca, "primary")
        self.assertEqual(backup.calls, [])
        self.assertEqual(self.notes.of_kind(CaFailover), [])

    def test_validation_required_passes_through(self) -> None:
        primary = ScriptedCA("primary", [ValidationRequired("again")], self.clock)
        self.failureResultOf(self.issue(self.issuer(primary), ["primary"]), ValidationRequired)

    def test_every_ca_down_until_the_deadline(self) -> None:
        """
        Rounds over both CAs continue, with growing delays, until the next
        wait would pass the deadline; then the order fails with the last
        error.
        """
        primary = ScriptedCA("primary", [DOWN], self.clock)
        backup = ScriptedCA("backup", [DOWN], self.clock)
        d = self.issue(self.issuer(primary, backup), ["primary", "backup"], deadline=30.0)
        for _ in range(60):
            if d.called:
                break
            self.clock.advance(0.5)
        failure = self.failureResultOf(d, CAError)
        self.assertFalse(failure.value.transient)
        self.assertIn("no CA could issue before the order's deadline", failure.value.detail)
        self.assertIn("connection refused", failure.value.detail)
        self.assertEqual(failure.value.ca, "backup")
        self.assertLessEqual(self.clock.seconds(), 30.0)
        self.assertTrue(all(t < 30.0 for t in primary.calls + backup.calls))
        self.assertIn(("primary", False), self.changes)
        self.assertIn(("backup", False), self.changes)

    def test_known_down_ca_is_skipped_then_probed(self) -> None:
        """
        Once the circuit breaker has the primary down, orders go straight to
        the backup, until the probe interval has passed.
        """
        primary = ScriptedCA("primary", [DOWN], self.clock)
        backup = ScriptedCA("backup", [OK], self.clock)
        issuer = self.issuer(primary, backup)
        for _ in range(2):
            d = self.issue(issuer, ["primary", "backup"])
            self.clock.advance(1.0)
            self.successResultOf(d)
        self.assertFalse(self.health.is_up("primary"))
        calls = len(primary.calls)
        self.successResultOf(self.issue(issuer, ["primary", "backup"]))
        self.assertEqual(len(primary.calls), calls)
        self.assertEqual(len(self.notes.of_kind(CaFailover)), 2)
        # The probe: the primary is back.
        primary.outcomes = [OK]
        self.clock.advance(60)
        self.assertEqual(self.successResultOf(self.issue(issuer, ["primary", "backup"])).ca_name, "primary")
        self.assertTrue(self.health.is_up("primary"))
        self.assertEqual(self.changes, [("primary", False), ("primary", True)])


class ReuseTests(SynchronousTestCase):
    """
    Orders of one token for the same names validate once and re-issue
    afterwards, within the re-use window.
    """

    def setUp(self) -> None:
        self.world = World(self)
        as_upstream(self.world)
        self.notes = MemoryNotifier()
        self.world.issuance.events.subscribe(self.notes)

    def modes(self) -> list[str | None]:
        return [e.mode for e in self.notes.of_kind(CertificateIssued)]

    def test_new_then_reissue(self) -> None:
        directory = self.world.directory()
        for _ in range(3):
            order, _ = issued(self.world, self.world.client(directory), ["example.com"])
            self.assertEqual(order["status"], "valid")
        self.assertEqual(self.modes(), ["new", "reissue", "reissue"])

    def test_other_names_and_other_tokens_validate(self) -> None:
        directory = self.world.directory()
        issued(self.world, self.world.client(directory), ["example.com"])
        issued(self.world, self.world.client(directory), ["example.com", "www.example.com"])
        issued(self.world, self.world.client(), ["example.com"])
        self.assertEqual(self.modes(), ["new", "new", "new"])

    def test_reuse_window(self) -> None:
        directory = self.world.directory()
        issued(self.world, self.world.client(directory), ["example.com"])
        self.world.clock.advance(3601)
        issued(self.world, self.world.client(directory), ["example.com"])
        self.assertEqual(self.modes(), ["new", "new"])

    def finalized_together(self, world: World) -> tuple[MemoryNotifier, str, list[StubAcmeClient], list[str]]:
        """
        Three clients of a new directory finalize an order for example.com
        each, one after another: the events, the directory, the clients and
        their orders.
        """
        notes = MemoryNotifier()
        world.issuance.events.subscribe(notes)
        directory = world.directory()
        clients = [world.client(directory) for _ in range(3)]
        orders = []
        for client in clients:
            client.register()
            response = client.new_order(["example.com"])
            client.finalize(response.json(), make_csr(["example.com"])[0])
            orders.append(response.location)
        return notes, directory, clients, orders

    def test_waiters_reissue_after_the_first(self) -> None:
        """
        While the first order of a key is being issued (slowly, by a CA
        that is not a built-in one), the others wait for it, then re-issue.
        """
        world = World(self, issue_delay=10)
        as_upstream(world)
        notes, directory, clients, orders = self.finalized_together(world)
        self.assertEqual(len(world.issuance.locks), 1)
        world.clock.advance(10)
        self.assertEqual([e.mode for e in notes.of_kind(CertificateIssued)], ["new"])
        # The re-issues run together: one more delay for all of them.
        world.clock.advance(10)
        self.assertEqual([e.mode for e in notes.of_kind(CertificateIssued)], ["new", "reissue", "reissue"])
        for client, url in zip(clients, orders):
            self.assertEqual(client.post(url, None).json()["status"], "valid")
        self.assertEqual(len(world.issuance.locks), 0)

    def test_built_in_ca_takes_no_turns(self) -> None:
        """
        The built-in CA validates nothing, so there is no validation to
        share: orders of one key are issued together, without the order
        key's lock, each as new.
        """
        world = World(self, issue_delay=10)
        notes, directory, clients, orders = self.finalized_together(world)
        self.assertEqual(len(world.issuance.locks), 0)
        world.clock.advance(10)
        self.assertEqual([e.mode for e in notes.of_kind(CertificateIssued)], ["new", "new", "new"])
        for client, url in zip(clients, orders):
            self.assertEqual(client.post(url, None).json()["status"], "valid")
        # Nothing remembered (no store write for it): a later order is new too.
        self.assertEqual([k for k in world.store._entries if k.startswith(keys.upstream_order(""))], [])
        order, _ = issued(world, world.client(directory), ["example.com"])
        world.clock.advance(10)
        self.assertEqual(notes.of_kind(CertificateIssued)[-1].mode, "new")

    def test_ca_wants_validation_again(self) -> None:
        """
        A re-issue the CA refuses without a new validation is validated
        once, under the lock, and counts as new.
        """
        world = World(self)
        notes = MemoryNotifier()
        world.issuance.events.subscribe(notes)
        asked: list[bool] = []
        forgetful = RefusingCA(world.ca, asked, lambda: len(asked) == 2)
        world.issuance._upstream._cas = {"builtin": forgetful}
        directory = world.directory()
        for _ in range(3):
            order, _ = issued(world, world.client(directory), ["example.com"])
            self.assertEqual(order["status"], "valid")
        self.assertEqual([e.mode for e in notes.of_kind(CertificateIssued)], ["new", "new", "reissue"])
        self.assertEqual(asked, [True, False, True, False])

    def test_waiters_and_a_refused_validation(self) -> None:
        """
        Orders that arrive together while the CA no longer honours the
        key's fresh validation: one validates again, the others re-issue
        against that.
        """
        world = World(self, issue_delay=10)
        notes = MemoryNotifier()
        world.issuance.events.subscribe(notes)
        asked: list[bool] = []
        world.issuance._upstream._cas = {"builtin": RefusingCA(world.ca, asked, lambda: asked.count(True) < 2)}
        directory = world.directory()
        client = world.client(directory)
        client.register()
        client.finalize(client.new_order(["example.com"]).json(), make_csr(["example.com"])[0])
        world.clock.advance(10)
        for client in [world.client(directory) for _ in range(3)]:
            client.register()
            client.finalize(client.new_order(["example.com"]).json(), make_csr(["example.com"])[0])
        world.clock.advance(10)
        world.clock.advance(10)
        self.assertEqual([e.mode for e in notes.of_kind(CertificateIssued)], ["new", "new", "reissue", "reissue"])
        self.assertEqual(asked, [True, False, True, False, False])
        self.assertEqual(len(world.issuance.locks), 0)
