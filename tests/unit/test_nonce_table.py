"""
The nonce table the worker processes of one box share: any process
redeems any process's nonce, once.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.acme import NonceTable
from acme_appliance.acme import _nonce_table as module

NOW = 1_800_000_000.0


class NonceTableTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.main = NonceTable.create()
        self.addCleanup(self.main.close)
        # A worker maps the same memory through the descriptor it inherits.
        self.worker = NonceTable(self.main.fileno())

    def test_once_anywhere(self) -> None:
        """
        A nonce one process gave is accepted once, by whichever process
        sees it first.
        """
        nonce = self.main.new(NOW + 60)
        self.assertTrue(self.worker.redeem(nonce, NOW))
        self.assertFalse(self.main.redeem(nonce, NOW))
        self.assertFalse(self.worker.redeem(nonce, NOW))
        other = self.worker.new(NOW + 60)
        self.assertTrue(self.main.redeem(other, NOW))
        self.assertFalse(self.worker.redeem(other, NOW))

    def test_distinct_across_processes(self) -> None:
        """
        The processes take blocks of numbers from the table: their nonces
        never collide, and redeeming one leaves the others good.
        """
        nonces = [table.new(NOW + 60) for _ in range(module.BLOCK + 3) for table in (self.main, self.worker)]
        self.assertEqual(len(set(nonces)), len(nonces))
        self.assertEqual([self.worker.redeem(n, NOW) for n in nonces], [True] * len(nonces))

    def test_refused(self) -> None:
        """
        Expired, forged, garbled and foreign nonces are refused.
        """
        self.assertFalse(self.main.redeem(self.main.new(NOW), NOW))
        nonce = self.main.new(NOW + 60)
        self.assertFalse(self.main.redeem(nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB"), NOW))
        self.assertFalse(self.main.redeem("not base64url!", NOW))
        self.assertFalse(self.main.redeem("", NOW))
        stranger = NonceTable.create()
        self.addCleanup(stranger.close)
        self.assertFalse(stranger.redeem(nonce, NOW))
        self.assertTrue(self.main.redeem(nonce, NOW))

    def test_too_old(self) -> None:
        """
        A nonce more than L{RING} numbers old is refused: its bit serves a
        newer one.
        """
        self.patch(module, "RING", 4 * module.BLOCK)
        old = self.main.new(NOW + 60)
        for _ in range(4 * module.BLOCK):
            self.worker.new(NOW + 60)
        self.assertFalse(self.main.redeem(old, NOW))

    def test_reused_bits_cleared(self) -> None:
        """
        A number whose bit was set a ring ago starts unredeemed.
        """
        self.patch(module, "RING", 2 * module.BLOCK)
        first = [self.main.new(NOW + 60) for _ in range(module.BLOCK)]
        self.assertTrue(all(self.main.redeem(n, NOW) for n in first))
        for _ in range(module.BLOCK):
            self.main.new(NOW + 60)
        again = self.main.new(NOW + 60)
        self.assertTrue(self.main.redeem(again, NOW))
