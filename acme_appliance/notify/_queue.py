"""
The queue a sink keeps while it cannot send: bounded, dropping the oldest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """
    A FIFO of at most C{size} items: appending to a full queue drops the
    oldest, and every item dropped (here or by L{drop_all}) goes to
    C{on_drop}, so that nothing is lost silently.
    """

    def __init__(self, size: int, on_drop: Callable[[T], object]) -> None:
        if size < 0:
            raise ValueError(f"a queue size must not be negative, not {size}")
        self._items: deque[T] = deque()
        self._size = size
        self._on_drop = on_drop

    def append(self, item: T) -> None:
        """
        Add C{item} at the end, dropping the oldest when full.
        """
        self._items.append(item)
        while len(self._items) > self._size:
            self._on_drop(self._items.popleft())

    def first(self) -> T | None:
        """
        The oldest item, left in the queue; C{None} when empty.
        """
        return self._items[0] if self._items else None

    def popleft(self) -> T:
        """
        Remove and return the oldest item.

        @raise IndexError: the queue is empty.
        """
        return self._items.popleft()

    def drop_all(self) -> None:
        """
        Empty the queue, telling C{on_drop} of each item, oldest first.
        """
        while self._items:
            self._on_drop(self._items.popleft())

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)
