"""
Tests for L{acme_appliance.notify.BoundedQueue}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.notify import BoundedQueue


class BoundedQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dropped: list[int] = []
        self.queue: BoundedQueue[int] = BoundedQueue(3, self.dropped.append)

    def test_fifo(self) -> None:
        for i in range(3):
            self.queue.append(i)
        self.assertEqual(len(self.queue), 3)
        self.assertEqual(self.queue.first(), 0)
        self.assertEqual([self.queue.popleft() for _ in range(3)], [0, 1, 2])
        self.assertFalse(self.queue)
        self.assertIsNone(self.queue.first())
        self.assertRaises(IndexError, self.queue.popleft)
        self.assertEqual(self.dropped, [])

    def test_drop_oldest(self) -> None:
        """
        Appending to a full queue drops the oldest items, each told to
        C{on_drop}.
        """
        for i in range(5):
            self.queue.append(i)
        self.assertEqual(self.dropped, [0, 1])
        self.assertEqual(len(self.queue), 3)
        self.assertEqual(self.queue.first(), 2)

    def test_drop_all(self) -> None:
        for i in range(2):
            self.queue.append(i)
        self.queue.drop_all()
        self.assertEqual(self.dropped, [0, 1])
        self.assertEqual(len(self.queue), 0)

    def test_size_zero(self) -> None:
        """
        A queue of size 0 drops every item at once.
        """
        dropped: list[str] = []
        queue: BoundedQueue[str] = BoundedQueue(0, dropped.append)
        queue.append("x")
        self.assertEqual(dropped, ["x"])
        self.assertFalse(queue)

    def test_negative_size(self) -> None:
        self.assertRaises(ValueError, BoundedQueue, -1, self.dropped.append)
