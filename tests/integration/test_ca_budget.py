"""
CA rate budgets with two real Pebbles: the primary's budget for one set of
names spills the fleet's further orders over to the backup, and no client
sees an error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from .test_fleet import metrics, obtain
from .test_pebble import PebbleWorld
from .tools import wait_for
from .world import Pebble

PER_NAME_SET = "certificates_per_name_set"


class BudgetWorld(PebbleWorld):
    """
    Two Pebbles; the primary (C{pebble}) allows three certificates per set
    of names per week.
    """

    backup: Pebble

    def __init__(self, case: SynchronousTestCase) -> None:
        super().__init__(case, backup=True)

    def _cas(self) -> str:
        limits = f'limits = [{{ what = "{PER_NAME_SET}", max = 3, window = "7d" }}]\n'
        contact = 'contact = ["mailto:ops@example.net"]\n'
        return super()._cas().replace(contact, contact + limits, 1)

    def issuer(self, chain_pem: str) -> str:
        """
        Which Pebble issued C{chain_pem}: the one whose root signed its top.
        """
        top = x509.load_pem_x509_certificates(chain_pem.encode())[-1]
        roots = {
            name: x509.load_pem_x509_certificate(ca.root_pem().encode()).subject
            for name, ca in (("pebble", self.pebble), ("backup", self.backup))
        }
        [name] = [name for name, subject in roots.items() if subject == top.issuer]
        return name


class BudgetSpillTests(SynchronousTestCase):
    def test_six_boxes_three_from_each_ca(self) -> None:
        """
        Six edge boxes (their own accounts and keys, one token) ask at once
        for the same name: all six get a certificate, three from each CA.
        """
        world = BudgetWorld(self)
        directory = world.appliance.directory("dns")
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: obtain(world, directory, ["api.shop.test"]), range(6)))
        issuers = sorted(world.issuer(chain) for chain, _ in results)
        self.assertEqual(issuers, ["backup"] * 3 + ["pebble"] * 3, world.appliance.log()[-3000:])
        labels = (("ca", "pebble"), ("limit", PER_NAME_SET))
        wait_for(
            lambda: metrics(world).get(("acme_appliance_ca_budget_used", labels)) == 3,
            10,
            "the primary's budget use in /metrics",
        )
        values = metrics(world)
        self.assertEqual(values[("acme_appliance_ca_budget_used", labels)], 3)
        self.assertEqual(values[("acme_appliance_ca_budget_max", labels)], 3)
        self.assertGreaterEqual(values[("acme_appliance_ca_budget_exhausted_total", labels)], 3)
        for ca in ("pebble", "backup"):
            issued = sum(
                value
                for (name, found), value in values.items()
                if name == "acme_appliance_certificates_issued_total" and ("ca", ca) in found
            )
            self.assertEqual(issued, 3, ca)
        self.assertNotIn("Traceback", world.appliance.log())
        # A seventh, in sequence: the backup again.
        chain, _ = obtain(world, directory, ["api.shop.test"])
        self.assertEqual(world.issuer(chain), "backup")
