"""
In-memory notification helpers for tests.
"""

from __future__ import annotations

from typing import TypeVar

from ._events import Event, EventName

E = TypeVar("E", bound=Event)


class MemoryNotifier:
    """
    An L{EventBus} subscriber that keeps every event.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [e.name.value for e in self.events]

    def of(self, name: EventName) -> list[Event]:
        return [e for e in self.events if e.name is name]

    def of_kind(self, kind: type[E], name: EventName | None = None) -> list[E]:
        """
        The events of class C{kind} (and of C{name}, if given), typed.
        """
        return [e for e in self.events if isinstance(e, kind) and (name is None or e.name is name)]
