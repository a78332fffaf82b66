"""
The repository hands writes that must follow one another to the store as one
ordered write (L{Store.write_in_order}: SQLite commits them in one
transaction), in the order that makes a crash harmless: authorizations, then
the order, then its indexes; and every store applies such a write in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import evolve
from twisted.internet.defer import Deferred

from acme_appliance.orders import AcmeRepository, order_cursor
from acme_appliance.storage import MemoryStore, Put, Swap, Write, keys

from .test_limits import Fixture


class OrderedStore(MemoryStore):
    """A memory store that records its ordered writes."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store._clock)
        self._entries = store._entries
        self.ordered: list[list[str]] = []

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        self.ordered.append([write.key for write in writes])
        return await super().write_in_order(writes)


class GatedStore(MemoryStore):
    """A memory store whose single writes complete only when L{release}d."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store._clock)
        self.started: list[str] = []
        self._gates: list[Deferred[None]] = []

    async def _gate(self, key: str) -> None:
        self.started.append(key)
        gate: Deferred[None] = Deferred()
        self._gates.append(gate)
        await gate

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._gate(key)
        await super().set(key, value, ttl=ttl)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, *, ttl: float | None = None
    ) -> bool:
        await self._gate(key)
        return await super().compare_and_set(key, expected, value, ttl=ttl)

    def release(self) -> None:
        gates, self._gates = self._gates, []
        for gate in gates:
            gate.callback(None)


class OrderedWriteTests(Fixture):
    def test_add_order_in_one_ordered_write(self) -> None:
        order = self.wait(self.order())
        first = self.wait(self.repo.authorization(order.authz_ids[0]))
        assert first is not None
        second = evolve(first, id="second")
        store = OrderedStore(self.store)
        self.wait(AcmeRepository(store).add_order(order, [first, second]))
        day = int(order.created // 86400)
        self.assertEqual(
            store.ordered,
            [
                [
                    keys.authorization(first.id),
                    keys.authorization("second"),
                    keys.order(order.id),
                    keys.account_orders(order.account_id) + order.id,
                    keys.order_by_time(day, order_cursor(order)),
                    keys.order_day(day),
                ]
            ],
        )

    def test_in_turn_one_after_another(self) -> None:
        """
        A store whose single writes take time applies an ordered write one
        by one: each starts once the one before it is done, a swap that does
        not happen included.
        """
        gated = GatedStore(self.store)
        writes: list[Write] = [Put("a", b"1"), Swap("b", b"not there", b"2"), Put("c", None), Put("d", b"4")]
        done = Deferred.fromCoroutine(gated.write_in_order(writes))
        steps = []
        while gated._gates:
            steps.append(list(gated.started))
            gated.started.clear()
            gated.release()
        self.assertEqual(self.successResultOf(done), [True, False, True, True])
        self.assertEqual(steps, [["a"], ["b"], ["d"]])
        self.assertEqual(self.wait(gated.get("a")), b"1")
        self.assertIsNone(self.wait(gated.get("b")))
