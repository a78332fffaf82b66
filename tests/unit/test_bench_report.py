"""
The benches' ratios against their targets: the printed figure never reads
as meeting a target the ratio misses.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench._report import against


class AgainstTests(SynchronousTestCase):
    def test_at_least(self) -> None:
        """
        A floor: the figure rounds down, so a ratio just under the target
        does not print as the target.
        """
        self.assertEqual(against(0.9988, 1.0), ("0.99x", "misses"))
        self.assertEqual(against(1.0, 1.0), ("1.00x", "meets"))
        self.assertEqual(against(1.15, 1.0), ("1.15x", "meets"))
        self.assertEqual(against(1.1999, 1.0), ("1.19x", "meets"))

    def test_at_most(self) -> None:
        """
        A ceiling: the figure rounds up, so a ratio just over the target
        does not print as the target.
        """
        self.assertEqual(against(1.2504, 1.25, at_most=True), ("1.26x", "misses"))
        self.assertEqual(against(1.25, 1.25, at_most=True), ("1.25x", "meets"))
        self.assertEqual(against(1.07, 1.25, at_most=True), ("1.07x", "meets"))
        self.assertEqual(against(1.0401, 1.25, at_most=True), ("1.05x", "meets"))
