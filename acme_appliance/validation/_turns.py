"""
Turns at a dcv name: one process at a time publishes TXT values for it.

Each process answers the values it published from memory (L{TxtView}), and
a name it holds is answered from there alone; values that two processes
published at once for one name (a wildcard and its base name ordered
separately, handled by two workers or nodes) would each be missing from the
other's answers, and the CA's check of one of them would fail.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from ..core import KeyedLocks
from ..storage import Lease, Store, keys, wait_for_lease

#: Seconds a turn lasts unless renewed (every third of it, while its values
#: are published): a process that died frees its names this much later.
TURN_LEASE = 15.0

#: Seconds between tries at a name another process holds.
TURN_POLL = 0.25


class NameTurns:
    """
    Turns at dcv names, in the store shared by every process that publishes
    values.  Within one process a turn is shared (a wildcard and its base
    name, two orders for one name): it ends when the last of them gives it
    back.
    """

    def __init__(
        self, store: Store, clock: IReactorTime, *, lease: float = TURN_LEASE, poll: float = TURN_POLL
    ) -> None:
        self._store = store
        self._clock = clock
        self._lease = lease
        self._poll = poll
        # name -> (the turn's lease in the store, how many hold it here)
        self._held: dict[str, tuple[Lease, int]] = {}
        self._taking = KeyedLocks()

    async def take(self, name: str) -> None:
        """
        Wait for the turn at C{name} (normalised) unless this process has
        it, then hold it once more.

        @raise StorageError: The store failed; nothing is held.
        """
        async with self._taking.hold(name):
            if name not in self._held:
                key = keys.dcv_turn(name)
                lease = await wait_for_lease(self._store, self._clock, key, length=self._lease, poll=self._poll)
                self._held[name] = (lease, 0)
            lease, count = self._held[name]
            self._held[name] = (lease, count + 1)

    async def give_back(self, name: str) -> None:
        """
        Hold the turn at C{name} once less; the last gives it back.  Never
        fails: a turn that cannot be given back runs out.
        """
        held = self._held.get(name)
        if held is None:
            return
        lease, count = held
        if count > 1:
            self._held[name] = (lease, count - 1)
            return
        del self._held[name]
        await lease.release()
