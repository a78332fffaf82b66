"""
How many store round trips, one after another, stand between a finalize
request and its C{valid} answer (built-in CA, validation none, the event
journal on): each round is a hop to the store (on SQLite one commit shared by
the writes issued together), so the hot path keeps them few.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import treq
from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from acme_appliance.notify import Event, EventJournal, EventName
from acme_appliance.orders import AcmeRepository, Order, RateLimiter
from acme_appliance.storage import MemoryStore, Swap, Write, dump_record, keys
from acme_appliance.testing import StubAcmeClient, World, b64, make_csr, sign

from .test_limits import Fixture

JOSE = {b"Content-Type": [b"application/jose+json"]}

WRITES = frozenset({"set", "add", "compare_and_set", "increment", "delete"})


class RoundStore(MemoryStore):
    """
    A memory store whose operations complete only when L{step} ends the
    current round: the operations started since the last step make one
    round (as a store that commits what one reactor turn issued together).
    """

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store._clock)
        self.gating = False
        self.rounds: list[list[tuple[str, str]]] = []
        #: Parallel to C{rounds}: the operations of one L{write_in_order}
        #: share a number, each other operation has its own.
        self.groups: list[list[int]] = []
        self._current: list[tuple[str, str]] = []
        self._current_groups: list[int] = []
        self._gates: list[Deferred[None]] = []
        self._group = 0

    async def _gate(self, operation: str, key: str, *more: tuple[str, str]) -> None:
        if not self.gating:
            return
        self._group += 1
        for entry in [(operation, key), *more]:
            self._current.append(entry)
            self._current_groups.append(self._group)
        gate: Deferred[None] = Deferred()
        self._gates.append(gate)
        await gate

    def step(self) -> bool:
        """End the current round; whether there was one."""
        gates, self._gates = self._gates, []
        if not gates:
            return False
        self.rounds.append(self._current)
        self.groups.append(self._current_groups)
        self._current = []
        self._current_groups = []
        for gate in gates:
            gate.callback(None)
        return True

    async def get(self, key: str) -> bytes | None:
        await self._gate("get", key)
        return await super().get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._gate("set", key)
        await super().set(key, value, ttl=ttl)

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        await self._gate("add", key)
        return await super().add(key, value, ttl=ttl)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, *, ttl: float | None = None
    ) -> bool:
        await self._gate("compare_and_set", key)
        return await super().compare_and_set(key, expected, value, ttl=ttl)

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        await self._gate("increment", key)
        return await super().increment(key, amount, ttl=ttl)

    async def delete(self, key: str) -> bool:
        await self._gate("delete", key)
        return await super().delete(key)

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        await self._gate("scan", prefix)
        return await super().scan(prefix)

    async def write_in_order(self, writes: Sequence[Write]) -> list[bool]:
        named = [
            ("compare_and_set" if isinstance(w, Swap) else "set" if w.value is not None else "delete", w.key)
            for w in writes
        ]
        if named:
            await self._gate(*named[0], *named[1:])
        # One round: the single writes it is made of are not gated again.
        gating, self.gating = self.gating, False
        try:
            return await super().write_in_order(writes)
        finally:
            self.gating = gating


def write_rounds(rounds: list[list[tuple[str, str]]]) -> int:
    return sum(1 for batch in rounds if any(op in WRITES for op, _ in batch))


def writes(rounds: list[list[tuple[str, str]]]) -> int:
    return sum(1 for batch in rounds for op, _ in batch if op in WRITES)


Rounds = list[list[tuple[str, str]]]


class FinalizeRoundsTests(SynchronousTestCase):
    def step(self, world: World, store: RoundStore) -> bool:
        """Run what is due, end one round; whether anything was pending."""
        world.clock.advance(0)
        stepped = store.step()
        world.clock.advance(0)
        world.treq.flush()
        return stepped

    def world(self) -> tuple[World, RoundStore, StubAcmeClient]:
        """
        The built-in CA, the default limits, the journal and a finalize
        wait, on a round store; a registered client.
        """
        clock = World(self).clock
        store = RoundStore(MemoryStore(clock))
        world = World(self, store=store, clock=clock, finalize_wait=5.0, limiter=RateLimiter(store=store, clock=clock))
        journal = EventJournal(store, clock=world.clock)
        world.issuance.events.subscribe(journal)
        world.issuance._journal = journal
        client = world.client()
        self.assertEqual(client.register().code, 201)
        return world, store, client

    def post_rounds(
        self, world: World, store: RoundStore, url: str, body: bytes, code: int
    ) -> tuple[Rounds, Rounds, dict[str, Any]]:
        """
        POST C{body} to C{url}: the rounds until its answer (which must be
        C{code}), the rounds after it until the store is quiet, and the
        answer.
        """
        store.gating = True
        answered: list[IResponse] = []
        cast(Any, world.treq).post(url, data=body, headers=JOSE).addCallback(answered.append)
        world.treq.flush()
        while not answered and self.step(world, store):
            pass
        before, store.rounds = store.rounds, []
        before_groups, store.groups = store.groups, []
        while self.step(world, store):
            pass
        #: The rounds' L{RoundStore.groups}, before and after the answer.
        self.groups = before_groups + store.groups
        self.assertEqual(len(answered), 1)
        answer = self.successResultOf(treq.content(answered[0]))
        self.assertEqual(answered[0].code, code, answer)
        return before, store.rounds, cast(dict[str, Any], json.loads(answer))

    def finalize_rounds(self) -> tuple[Rounds, Rounds, dict[str, Any]]:
        """
        L{post_rounds} of one finalize.
        """
        world, store, client = self.world()
        order = client.new_order(["example.com"])
        self.assertEqual(order.code, 201, order.body)
        url = order.json()["finalize"]
        body = sign(
            client.key, {"csr": b64(make_csr(["example.com"])[0])}, url=url, nonce=client.nonce(), kid=client.kid
        )
        return self.post_rounds(world, store, url, body, 200)

    def test_new_order_rounds(self) -> None:
        """
        A new order: the token and account reads, the two rate counters,
        then one ordered write of the authorization, the order and its
        indexes (they were three rounds).
        """
        world, store, client = self.world()
        url = client.directory["newOrder"]
        payload = {"identifiers": [{"type": "dns", "value": "example.com"}]}
        body = sign(client.key, payload, url=url, nonce=client.nonce(), kid=client.kid)
        before, _, answer = self.post_rounds(world, store, url, body, 201)
        self.assertEqual(answer["status"], "ready")
        self.assertEqual((len(before), write_rounds(before), writes(before)), (5, 3, 7))
        self.assertEqual(
            [key.split("/")[0] for _, key in before[-1]], ["authz", "order", "acct-orders", "order-time", "order-day"]
        )
        self.assertEqual(len(set(self.groups[len(before) - 1])), 1)

    def test_rounds_until_valid(self) -> None:
        """
        From the request to its C{valid} answer: 8 round trips (30 before
        writes issued together shared them, 14 before the built-in CA
        skipped the budget ledger, 13 before it skipped the finalize slots
        and the re-use record, 10 before the writes that must follow one
        another went in one ordered write), 4 of them with writes (17
        before); the tidying up after the answer takes 2 more (the event
        journaled; the queue entry and the job's lease deleted in one
        ordered write).
        """
        before, after, answer = self.finalize_rounds()
        self.assertEqual(answer["status"], "valid")
        self.assertEqual((len(before), write_rounds(before), writes(before)), (8, 4, 12))
        self.assertEqual((len(after), write_rounds(after), writes(after)), (2, 2, 4))

    def test_crash_safe_order_kept(self) -> None:
        """
        Writes that must follow one another still do, in an earlier round
        or earlier in the same ordered write (L{Store.write_in_order}): the
        queue entry before the order is processing, the certificate and its
        indexes before the order that points to it, the event journaled
        before the queue entry goes.
        """
        before, after, _ = self.finalize_rounds()
        rounds = before + after
        #: Each write: its round, its group (an ordered write), its place.
        found = [
            (round_number, group, place, op, key)
            for round_number, (entries, groups) in enumerate(zip(rounds, self.groups, strict=True))
            for place, ((op, key), group) in enumerate(zip(entries, groups, strict=True))
        ]

        def first(operation: str, prefix: str, after: tuple[int, int, int] = (-1, -1, -1)) -> tuple[int, int, int]:
            return next(
                (r, g, p)
                for r, g, p, op, key in found
                if op == operation and key.startswith(prefix) and (r, g, p) > after
            )

        def assert_before(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
            self.assertTrue(a[0] < b[0] or (a[1] == b[1] and a[2] < b[2]), f"{a} is not before {b}")

        queued = first("set", "queue/issue/")
        processing = first("compare_and_set", "order/")
        valid = first("compare_and_set", "order/", processing)
        journaled = first("set", "order-event/", valid)
        assert_before(queued, processing)
        assert_before(first("set", "cert/"), valid)
        assert_before(first("set", "cert-serial/"), valid)
        assert_before(valid, journaled)
        assert_before(journaled, first("delete", "queue/issue/"))
        assert_before(first("delete", "queue/issue/"), first("compare_and_set", "lease/job/"))


class JournalRoundsTests(SynchronousTestCase):
    def test_event_in_one_round(self) -> None:
        """
        An order's event is written by hour and by order in one round trip,
        in one store call.
        """
        clock = World(self).clock
        store = RoundStore(MemoryStore(clock))
        journal = EventJournal(store, clock=clock)
        store.gating = True
        journal(Event(clock.seconds(), name=EventName.ORDER_PROCESSING, order_id="o1"))
        while store.step():
            pass
        self.assertEqual(len(store.rounds), 1)
        self.assertEqual(sorted(key.split("/")[0] for _, key in store.rounds[0]), ["event", "order-event"])
        self.assertEqual(len(set(store.groups[0])), 1)
        store.gating = False
        history = self.successResultOf(Deferred.fromCoroutine(journal.order_history("o1")))
        self.assertEqual([e.name for e in history], [EventName.ORDER_PROCESSING])


class KnownOrderTests(Fixture):
    def gated(self) -> tuple[RoundStore, AcmeRepository]:
        """A round store over the fixture's entries, and a repository on it."""
        store = RoundStore(self.store)
        store._entries = self.store._entries
        return store, AcmeRepository(store)

    def update(self, store: RoundStore, repo: AcmeRepository, order: Order, change: Callable[[Order], Order]) -> Order:
        """C{update_order} with C{change}, C{order} known, all rounds run."""
        store.rounds = []
        store.gating = True
        done = Deferred.fromCoroutine(repo.update_order(order.id, change, known=order))
        while store.step():
            pass
        store.gating = False
        updated = self.successResultOf(done)
        assert updated is not None
        return updated

    def test_known_order_not_read_again(self) -> None:
        """
        C{update_order} with the order as last read: one compare-and-set, no
        read; when it is stale (written since), read and try again.
        """
        order = self.wait(self.order())
        store, repo = self.gated()
        self.assertEqual(self.update(store, repo, order, lambda o: evolve(o, csr="first")).csr, "first")
        self.assertEqual(store.rounds, [[("compare_and_set", keys.order(order.id))]])
        second = self.update(store, repo, order, lambda o: evolve(o, csr=(o.csr or "") + "+second"))
        self.assertEqual(second.csr, "first+second")
        self.assertEqual(
            [op for batch in store.rounds for op, _ in batch], ["compare_and_set", "get", "compare_and_set"]
        )

    def test_known_order_in_older_form(self) -> None:
        """
        An order stored in another form than today's serialisation (written
        by an older version): C{update_order} with it as read expects the
        bytes it was read from, so one compare-and-set still does.
        """
        order = self.wait(self.order())
        older = json.dumps(json.loads(dump_record(order)), indent=1).encode()
        self.wait(self.store.set(keys.order(order.id), older))
        store, repo = self.gated()
        known = self.wait(repo.order(order.id))
        assert known is not None
        self.assertEqual(self.update(store, repo, known, lambda o: evolve(o, csr="first")).csr, "first")
        self.assertEqual(store.rounds, [[("compare_and_set", keys.order(order.id))]])
