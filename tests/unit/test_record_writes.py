"""
The repository starts writes that do not depend on each other together (a
store may commit them in one transaction) and keeps the order that makes a
crash harmless: authorizations, then the order, then its indexes.
"""

from __future__ import annotations

from attrs import evolve
from twisted.internet.defer import Deferred

from acme_appliance.orders import AcmeRepository, order_cursor
from acme_appliance.storage import MemoryStore, keys

from .test_limits import Fixture


class GatedStore(MemoryStore):
    """A memory store whose writes complete only when L{release}d."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store._clock)
        self.started: list[str] = []
        self._gates: list[Deferred[None]] = []

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.started.append(key)
        gate: Deferred[None] = Deferred()
        self._gates.append(gate)
        await gate
        await super().set(key, value, ttl=ttl)

    def release(self) -> None:
        gates, self._gates = self._gates, []
        for gate in gates:
            gate.callback(None)


class TogetherTests(Fixture):
    def test_add_order_in_three_steps(self) -> None:
        order = self.wait(self.order())
        first = self.wait(self.repo.authorization(order.authz_ids[0]))
        assert first is not None
        second = evolve(first, id="second")
        gated = GatedStore(self.store)
        done = Deferred.fromCoroutine(AcmeRepository(gated).add_order(order, [first, second]))
        steps = []
        while gated._gates:
            steps.append(sorted(gated.started))
            gated.started.clear()
            gated.release()
        self.successResultOf(done)
        day = int(order.created // 86400)
        indexes = [
            keys.account_orders(order.account_id) + order.id,
            keys.order_by_time(day, order_cursor(order)),
            keys.order_day(day),
        ]
        self.assertEqual(
            steps,
            [
                sorted([keys.authorization(first.id), keys.authorization("second")]),
                [keys.order(order.id)],
                sorted(indexes),
            ],
        )
