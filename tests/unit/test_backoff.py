"""
Tests for L{acme_appliance.core.Backoff}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import Backoff


class BackoffTests(SynchronousTestCase):
    def test_iteration(self) -> None:
        """
        Iterating gives each delay once, in order: a bounded number of
        retries.
        """
        backoff = Backoff((1, 5.0, 30))
        self.assertEqual(list(backoff), [1.0, 5.0, 30.0])
        self.assertEqual(len(backoff), 3)

    def test_delay_keeps_the_last(self) -> None:
        """
        L{Backoff.delay} gives the delay before each retry, and the last one
        for every retry after the last.
        """
        backoff = Backoff([1.0, 2.0, 5.0])
        self.assertEqual([backoff.delay(a) for a in range(6)], [1.0, 2.0, 5.0, 5.0, 5.0, 5.0])

    def test_frozen_value(self) -> None:
        self.assertEqual(Backoff([1, 2]), Backoff((1.0, 2.0)))
        self.assertEqual(hash(Backoff([1, 2])), hash(Backoff((1.0, 2.0))))

    def test_no_delays(self) -> None:
        backoff = Backoff(())
        self.assertEqual(list(backoff), [])
        self.assertRaises(IndexError, backoff.delay, 0)

    def test_negative(self) -> None:
        self.assertRaises(ValueError, Backoff, (1.0, -1.0))
