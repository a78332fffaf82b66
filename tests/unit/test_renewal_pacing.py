"""
Renewal windows paced by the CA budgets (issue 13): L{budget_window}'s
grid, L{BudgetPacer}'s pace from C{[[ca]] limits} and the policies'
backups, and the appliance answering renewal info at that pace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import evolve
from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.config import load_config
from acme_appliance.issuance import BudgetKind, BudgetPacer, CALimit
from acme_appliance.orders import CertificateRecord, RenewalWindows, Window, budget_window, cert_id_of
from acme_appliance.orders._renewal import base_window, paced_window
from acme_appliance.policy import Policy
from acme_appliance.storage import MemoryStore
from acme_appliance.tap import ApplianceService
from acme_appliance.testing import World, issued, sample_policy

from .test_renewal import seconds
from .test_tap_wiring import config_file

DAY = 86400.0
WEEK = 7 * DAY
NAME_SET = BudgetKind.CERTIFICATES_PER_NAME_SET
DOMAIN = BudgetKind.CERTIFICATES_PER_REGISTERED_DOMAIN
#: Let's Encrypt's limit: 5 certificates per exact set of names per week.
FIVE_A_WEEK = (CALimit(NAME_SET, 5, WEEK),)
NOT_BEFORE = 1_800_000_000.0
NOT_AFTER = NOT_BEFORE + 90 * DAY


def run(case: SynchronousTestCase, coroutine: Any) -> Any:
    return case.successResultOf(Deferred.fromCoroutine(coroutine))


def busiest_week(starts: Sequence[float]) -> int:
    """
    The most window starts any 7-day span holds.
    """
    ordered = sorted(starts)
    return max(sum(1 for other in ordered if start <= other < start + WEEK) for start in ordered)


def fleet_windows(size: int, spacing: float = WEEK / 5, issued_every: float = 0.0) -> list[Window]:
    """
    The windows of C{size} 90-day certificates for one set of names, the
    C{n}th issued C{n * issued_every} seconds after the first.
    """
    return [
        budget_window(NOT_BEFORE + n * issued_every, NOT_AFTER + n * issued_every, n, size, spacing)
        for n in range(size)
    ]


class BudgetWindowTests(SynchronousTestCase):
    def assertInLastHalf(self, windows: Sequence[Window], issued_every: float = 0.0) -> None:
        for n, window in enumerate(windows):
            shift = n * issued_every
            base = base_window(NOT_BEFORE + shift, NOT_AFTER + shift)
            self.assertTrue(NOT_BEFORE + shift + 45 * DAY <= window.start < window.end <= base.end, (n, window))

    def test_small_fleet_stays_in_the_default_span(self) -> None:
        """
        Four certificates fit the default span (days 60 to 70) at five a
        week: their windows stay there, with different starts.
        """
        base = base_window(NOT_BEFORE, NOT_AFTER)
        windows = fleet_windows(4)
        for window in windows:
            self.assertTrue(base.start <= window.start < window.end <= base.end, window)
        self.assertEqual(len({w.start for w in windows}), 4)
        self.assertLessEqual(busiest_week([w.start for w in windows]), 5)

    def test_widens_to_keep_the_pace(self) -> None:
        """
        Fourteen certificates at five a week do not fit the default span:
        their windows start earlier, inside the last half, all different,
        never more than five starts in a week.
        """
        windows = fleet_windows(14)
        starts = [w.start for w in windows]
        self.assertInLastHalf(windows)
        self.assertEqual(len(set(starts)), 14)
        self.assertLess(min(starts), base_window(NOT_BEFORE, NOT_AFTER).start - WEEK)
        self.assertLessEqual(busiest_week(starts), 5)
        # The default slots would put them all inside ten days.
        self.assertGreater(
            busiest_week([paced_window(base_window(NOT_BEFORE, NOT_AFTER), n).start for n in range(14)]), 5
        )

    def test_paced_whenever_issued(self) -> None:
        """
        The slots are points in absolute time: certificates issued at
        different times keep the pace too.
        """
        every = 0.37 * DAY
        windows = fleet_windows(12, issued_every=every)
        self.assertInLastHalf(windows, every)
        self.assertLessEqual(busiest_week([w.start for w in windows]), 5)

    def test_too_many_spread_over_the_last_half(self) -> None:
        """
        Forty certificates cannot keep five a week: their windows spread
        over the whole last half, all with different starts.
        """
        windows = fleet_windows(40)
        starts = [w.start for w in windows]
        self.assertInLastHalf(windows)
        self.assertEqual(len(set(starts)), 40)
        self.assertLess(min(starts), NOT_BEFORE + 47 * DAY)
        # As evenly as the last half allows: about 40 / 22.5 days a week.
        self.assertLessEqual(busiest_week(starts), 15)

    def test_stable_when_another_is_issued(self) -> None:
        """
        Another certificate (within the fleet's level) moves no window;
        crossing a level moves windows only earlier.
        """
        before = fleet_windows(9)
        self.assertEqual(fleet_windows(10)[:9], before)
        small = fleet_windows(4)
        grown = fleet_windows(5)[:4]
        self.assertTrue(all(g.start <= s.start for g, s in zip(grown, small, strict=True)), (small, grown))

    def test_short_lived(self) -> None:
        """
        A 6-day certificate cannot keep five a week even alone: windows
        still lie inside its last half.
        """
        for rank in range(5):
            window = budget_window(NOT_BEFORE, NOT_BEFORE + 6 * DAY, rank, 5, WEEK / 5)
            self.assertTrue(NOT_BEFORE + 3 * DAY <= window.start < window.end <= NOT_BEFORE + 6 * DAY, window)


def record(ca: str) -> CertificateRecord:
    return CertificateRecord(
        id="c", order_id="o", token_id="t", account_id="a", names=("example.com",), chain_pem="", serial="1",
        ca_name=ca, issued=0.0,
    )  # fmt: skip


def policy(primary: str, backup: str | None) -> Policy:
    return evolve(sample_policy(), primary_ca=primary, backup_ca=backup)


class BudgetPacerTests(SynchronousTestCase):
    def test_no_limits_no_pace(self) -> None:
        pacer = BudgetPacer({}, [policy("le", None)])
        self.assertIsNone(pacer.spacing(record("le")))
        orders_only = BudgetPacer({"le": (CALimit(BudgetKind.ORDERS, 300, 3 * 3600),)}, [policy("le", None)])
        self.assertIsNone(orders_only.spacing(record("le")))

    def test_tightest_limit(self) -> None:
        pacer = BudgetPacer({"le": (CALimit(DOMAIN, 50, WEEK), *FIVE_A_WEEK)}, [policy("le", None)])
        self.assertAlmostEqual(pacer.spacing(record("le")) or 0, WEEK / 5)

    def test_backup_adds_its_budget(self) -> None:
        """
        The backup's budget takes the spill-over: renewals may come at both
        CAs' pace, whichever of them issued the certificate.
        """
        limits = {"le": FIVE_A_WEEK, "zerossl": (CALimit(NAME_SET, 5, WEEK),)}
        pacer = BudgetPacer(limits, [policy("le", "zerossl")])
        self.assertAlmostEqual(pacer.spacing(record("le")) or 0, WEEK / 10)
        self.assertAlmostEqual(pacer.spacing(record("zerossl")) or 0, WEEK / 10)

    def test_unlimited_backup_no_pace(self) -> None:
        pacer = BudgetPacer({"le": FIVE_A_WEEK}, [policy("le", "builtin")])
        self.assertIsNone(pacer.spacing(record("le")))


def renewal_starts(world: World, count: int, every: float = 0.0) -> tuple[list[float], list[x509.Certificate]]:
    """
    The renewal windows' starts of C{count} certificates for one name, one
    issued every C{every} seconds, once all are issued, and the
    certificates.
    """
    client = world.client()
    leaves = []
    for _ in range(count):
        world.clock.advance(every)
        order, _ = issued(world, client, ["example.com"])
        leaves.append(x509.load_pem_x509_certificate(client.post(order["certificate"], None).body))
    starts = []
    for leaf in leaves:
        answer = client.get(client.directory["renewalInfo"] + "/" + cert_id_of(leaf))
        world.case.assertEqual(answer.code, 200, answer.body)
        starts.append(seconds(answer.json()["suggestedWindow"]["start"]))
    return starts, leaves


class ApplianceTests(SynchronousTestCase):
    def test_world_paced_by_budget(self) -> None:
        """
        Renewal info of twelve certificates for one name issued at once by a
        CA allowing twelve in 16.8 days (one every 1.4 days): starts inside
        the last half, all different, five a week at most; without limits,
        the default slots (all within ten days).
        """
        budget = (CALimit(NAME_SET, 12, 2.4 * WEEK),)
        starts, leaves = renewal_starts(World(self, ca_limits={"builtin": budget}), 12)
        self.assertEqual(len(set(starts)), 12)
        self.assertLessEqual(busiest_week(starts), 5)
        for start, leaf in zip(starts, leaves, strict=True):
            not_before, not_after = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
            self.assertGreaterEqual(start, (not_before + not_after) / 2)
        unpaced, _ = renewal_starts(World(self), 12)
        self.assertLess(max(unpaced) - min(unpaced), 10 * DAY)
        self.assertGreater(busiest_week(unpaced), 5)

    def test_world_paced_when_issued_apart(self) -> None:
        """
        Twelve certificates at five a week, issued as the budget frees up:
        still five renewals a week at most.
        """
        starts, _ = renewal_starts(World(self, ca_limits={"builtin": FIVE_A_WEEK}), 12, every=1.5 * DAY)
        self.assertEqual(len(set(starts)), 12)
        self.assertLessEqual(busiest_week(starts), 5)

    def test_configured_limits_pace_the_appliance(self) -> None:
        """
        The appliance's renewal windows keep the pace of C{[[ca]] limits}.
        """
        path = config_file(self)
        with open(path, encoding="utf-8") as f:
            text = f.read().replace(
                'kind = "local"\n',
                'kind = "local"\nlimits = [{ what = "certificates_per_name_set", max = 5, window = "7d" }]\n',
            )
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        reactor = MemoryReactorClock()
        service = ApplianceService(load_config(path), MemoryStore(reactor), reactor)  # type: ignore[arg-type]
        world = World(self)
        client = world.client()
        order, _ = issued(world, client, ["example.com"])
        cert = run(self, world.repo.certificate_by_cert_id(cert_id_of(self.leaf(client, order))))
        cert = run(self, service.repository.put_certificate(evolve(cert, ca_name="builtin", slot=None)))
        leaf = x509.load_pem_x509_certificate(cert.chain_pem.encode())
        not_before, not_after = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
        expected = budget_window(not_before, not_after, 0, 1, WEEK / 5)
        self.assertEqual(run(self, service.renewals.window(cert)), expected)
        # The ACME server answers renewal info with these windows.
        self.assertIs(service.acme._renewals, service.renewals)
        self.assertNotEqual(expected, paced_window(base_window(not_before, not_after), 0))

    def leaf(self, client: Any, order: dict[str, Any]) -> x509.Certificate:
        return x509.load_pem_x509_certificate(client.post(order["certificate"], None).body)

    def test_unpaced_windows_unchanged(self) -> None:
        """
        Without limits, the windows are the default slots.
        """
        world = World(self)
        client = world.client()
        order, _ = issued(world, client, ["example.com"])
        cert = run(self, world.repo.certificate_by_cert_id(cert_id_of(self.leaf(client, order))))
        leaf = x509.load_pem_x509_certificate(cert.chain_pem.encode())
        base = base_window(leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp())
        self.assertEqual(run(self, world.renewals.window(cert)), paced_window(base, cert.slot))
        self.assertEqual(run(self, RenewalWindows(world.repo, world.clock).window(cert)), paced_window(base, cert.slot))
