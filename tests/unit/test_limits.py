"""
Tests for the rate limits (L{acme_appliance.orders.RateLimiter}) through
the order service, the ACME server and the issuance jobs (issue 11,
finding 4).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import AcmeProblem, ProblemType
from acme_appliance.notify import EventBus
from acme_appliance.orders import (
    Account,
    AcmeRepository,
    Limit,
    Limits,
    Order,
    OrderService,
    OrderStatus,
    Rate,
    RateLimiter,
)
from acme_appliance.policy import Token, TokenRegistry
from acme_appliance.stats import Metrics
from acme_appliance.storage import MemoryStore, keys
from acme_appliance.testing import World, add_account, as_upstream, make_csr, sample_policy
from acme_appliance.wire import messages as m

from .test_order_service import FakeRevoker, Queue

T = TypeVar("T")

LOW = Limits(
    account_orders=Rate(3, 3600.0), token_orders=Rate(5, 3600.0), token_accounts=Rate(2, 3600.0), token_finalizes=2
)


class Fixture(SynchronousTestCase):
    """
    Order services sharing one store (each one a process), with L{LOW}
    limits.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        # The start of a window, so that the windows are easy to reason about.
        self.clock.advance(1_800_000_000 - 1_800_000_000 % 3600)
        self.store = MemoryStore(self.clock)
        self.repo = AcmeRepository(self.store)
        self.queue = Queue()
        self.limited: list[Limit] = []
        self.service = self.make_service()
        self.tokens = TokenRegistry(self.store, self.clock)
        self.token = self.new_token()
        self.account = self.new_account(self.token, "acct1")

    def make_service(self, limits: Limits = LOW, policy_domains: tuple[str, ...] = ("example.com",)) -> OrderService:
        limiter = RateLimiter(store=self.store, clock=self.clock, limits=limits, on_limited=self.limited.append)
        return OrderService(
            repository=self.repo,
            policies={"shop": sample_policy("shop", policy_domains)},
            issuance=self.queue,
            revoker=FakeRevoker(),
            clock=self.clock,
            events=EventBus(self.clock),
            limiter=limiter,
        )

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def new_token(self, domains: tuple[str, ...] = ()) -> Token:
        return self.wait(self.tokens.create("shop", domains))[0]

    def new_account(self, token: Token, account_id: str) -> Account:
        return self.wait(add_account(self.repo, token.id, account_id, self.clock))

    def order(
        self, service: OrderService | None = None, token: Token | None = None, account: Account | None = None
    ) -> Coroutine[Any, Any, Order]:
        request = m.NewOrder(identifiers=(m.Identifier(type="dns", value="example.com"),))
        return (service or self.service).new_order(token or self.token, account or self.account, request)

    def problem(self, coroutine: Coroutine[Any, Any, object]) -> AcmeProblem:
        """
        The problem C{coroutine} fails with.
        """
        error = self.failureResultOf(Deferred.fromCoroutine(coroutine), AcmeProblem).value
        assert isinstance(error, AcmeProblem)
        return error

    def assertRateLimited(self, problem: AcmeProblem, retry_after: int) -> None:
        self.assertIs(problem.type, ProblemType.RATE_LIMITED)
        self.assertEqual(problem.status, 429)
        self.assertEqual(problem.headers, {"Retry-After": str(retry_after)})


class NewOrderLimitTests(Fixture):
    def test_account_orders(self) -> None:
        """
        The 4th new order of an account within the hour is refused with
        C{Retry-After} the seconds until the window ends; after it, orders
        pass again.
        """
        for _ in range(3):
            self.wait(self.order())
        self.clock.advance(600)
        problem = self.problem(self.order())
        self.assertRateLimited(problem, 3000)
        self.assertIn("too many new orders for this account: at most 3 per 3600 seconds", problem.detail)
        self.assertEqual(self.limited, [Limit.ACCOUNT_ORDERS])
        self.clock.advance(3000)
        self.assertIs(self.wait(self.order()).status, OrderStatus.READY)

    def test_token_orders(self) -> None:
        """
        The token's limit counts every account of it; another token's
        accounts are not affected.
        """
        second = self.new_account(self.token, "acct2")
        for _ in range(3):
            self.wait(self.order())
        self.wait(self.order(account=second))
        self.wait(self.order(account=second))
        self.assertRateLimited(self.problem(self.order(account=second)), 3600)
        self.assertEqual(self.limited, [Limit.TOKEN_ORDERS])
        other = self.new_token()
        stranger = self.new_account(other, "acct3")
        for _ in range(3):
            self.wait(self.order(token=other, account=stranger))

    def test_shared_across_processes(self) -> None:
        """
        Two services on one store (two processes) count together.
        """
        other_process = self.make_service()
        self.wait(self.order())
        self.wait(self.order(service=other_process))
        self.wait(self.order())
        self.assertRateLimited(self.problem(self.order(service=other_process)), 3600)

    def test_zero_turns_off(self) -> None:
        service = self.make_service(Limits(account_orders=Rate(0, 60.0), token_orders=Rate(0, 60.0)))
        for _ in range(20):
            self.wait(self.order(service=service))

    def test_counters_expire(self) -> None:
        """
        The counters carry TTLs: nothing of them is left after two windows.
        """
        self.wait(self.order())
        self.clock.advance(2 * 3600 + 1)
        self.wait(self.store.purge_expired())
        self.assertEqual(self.wait(self.store.scan("limit/")), [])

    def test_defaults(self) -> None:
        """
        On by default, with Let's Encrypt's per-account limit.
        """
        self.assertEqual(Limits().account_orders, Rate(300, 10800.0))
        self.assertGreater(Limits().token_finalizes, 0)


class CountingStore(MemoryStore):
    """A memory store that records the key of every write."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.writes: list[tuple[str, str]] = []

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.writes.append(("set", key))
        await super().set(key, value, ttl=ttl)

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        self.writes.append(("add", key))
        return await super().add(key, value, ttl=ttl)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, *, ttl: float | None = None
    ) -> bool:
        self.writes.append(("compare_and_set", key))
        return await super().compare_and_set(key, expected, value, ttl=ttl)

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        self.writes.append(("increment", key))
        return await super().increment(key, amount, ttl=ttl)

    async def delete(self, key: str) -> bool:
        self.writes.append(("delete", key))
        return await super().delete(key)


class LimiterWriteTests(Fixture):
    def test_one_write_per_counter(self) -> None:
        """
        Counting a new order writes each of its two counters once (an
        increment that creates the window's counter with its TTL), the first
        order of a window as the next.
        """
        store = CountingStore(self.clock)
        limiter = RateLimiter(store=store, clock=self.clock, limits=LOW)
        window = int(self.clock.seconds() // 3600)
        counters = [
            ("increment", keys.rate_window(Limit.ACCOUNT_ORDERS.value, "acct1", window)),
            ("increment", keys.rate_window(Limit.TOKEN_ORDERS.value, "tok", window)),
        ]
        for _ in range(2):
            store.writes.clear()
            self.wait(limiter.new_order("tok", "acct1"))
            self.assertEqual(store.writes, counters)
        store.writes.clear()
        self.wait(limiter.new_account("tok"))
        self.assertEqual(store.writes, [("increment", keys.rate_window(Limit.TOKEN_ACCOUNTS.value, "tok", window))])

    def test_refused_order_counts_no_further(self) -> None:
        """
        An order refused by the account's limit does not count against the
        token's, as before (the counters are written one after the other).
        """
        store = CountingStore(self.clock)
        limiter = RateLimiter(store=store, clock=self.clock, limits=LOW)
        for _ in range(3):
            self.wait(limiter.new_order("tok", "acct1"))
        store.writes.clear()
        self.problem(limiter.new_order("tok", "acct1"))
        self.assertEqual(len(store.writes), 1)
        window = int(self.clock.seconds() // 3600)
        token_counter = self.wait(store.get(keys.rate_window(Limit.TOKEN_ORDERS.value, "tok", window)))
        self.assertEqual(token_counter, b"3")


class FinalizeSlotTests(Fixture):
    def test_slots(self) -> None:
        """
        A token has C{token_finalizes} slots; taking one twice for the same
        order is one; a released slot is free again; other tokens have
        their own.
        """
        limiter = RateLimiter(store=self.store, clock=self.clock, limits=Limits(token_finalizes=2))
        other_process = RateLimiter(store=self.store, clock=self.clock, limits=Limits(token_finalizes=2))
        self.assertTrue(self.wait(limiter.take_slot("t1", "o1")))
        self.assertTrue(self.wait(limiter.take_slot("t1", "o1")))
        self.assertTrue(self.wait(other_process.take_slot("t1", "o2")))
        self.assertFalse(self.wait(limiter.take_slot("t1", "o3")))
        self.assertTrue(self.wait(limiter.take_slot("t2", "o4")))
        self.wait(other_process.release_slot("t1", "o1"))
        self.assertTrue(self.wait(limiter.take_slot("t1", "o3")))

    def test_slots_expire(self) -> None:
        """
        A slot whose process died without a restart frees itself.
        """
        limiter = RateLimiter(store=self.store, clock=self.clock, limits=Limits(token_finalizes=1))
        self.assertTrue(self.wait(limiter.take_slot("t1", "o1")))
        self.assertFalse(self.wait(limiter.take_slot("t1", "o2")))
        self.clock.advance(3601)
        self.assertTrue(self.wait(limiter.take_slot("t1", "o2")))

    def test_zero_turns_off(self) -> None:
        limiter = RateLimiter(store=self.store, clock=self.clock, limits=Limits(token_finalizes=0))
        self.assertTrue(all(self.wait(limiter.take_slot("t1", str(i))) for i in range(50)))


class ServerLimitTests(SynchronousTestCase):
    """
    Through HTTP: C{429}, an RFC 8555 C{rateLimited} problem and
    C{Retry-After}; the jobs give the finalize slots back.
    """

    def setUp(self) -> None:
        self.metrics = Metrics()
        clock = Clock()
        clock.advance(1_800_000_000)
        store = MemoryStore(clock)
        limiter = RateLimiter(store=store, clock=clock, limits=LOW, on_limited=self.metrics.limited)
        self.world = World(self, issue_delay=30.0, store=store, clock=clock, limiter=limiter)

    def test_new_account_and_order(self) -> None:
        directory = self.world.directory()
        clients = [self.world.client(directory) for _ in range(3)]
        self.assertEqual([c.register().code for c in clients[:2]], [201, 201])
        refused = clients[2].register()
        self.assertEqual((refused.code, refused.header("Retry-After")), (429, "3600"))
        self.assertEqual(refused.json()["type"], "urn:ietf:params:acme:error:rateLimited")
        self.assertEqual(refused.header("Content-Type"), "application/problem+json")
        self.assertEqual([clients[0].new_order(["example.com"]).code for _ in range(3)], [201, 201, 201])
        refused = clients[0].new_order(["example.com"])
        self.assertEqual((refused.code, refused.header("Retry-After")), (429, "3600"))
        # Another token's client orders normally.
        stranger = self.world.client()
        self.assertEqual(stranger.register().code, 201)
        self.assertEqual(stranger.new_order(["example.com"]).code, 201)
        self.assertEqual(self.metrics.value("acme_appliance_rate_limited_total", limit="token_accounts"), 1)
        self.assertEqual(self.metrics.value("acme_appliance_rate_limited_total", limit="account_orders"), 1)

    def test_finalizes_wait_for_a_slot(self) -> None:
        """
        With 2 slots, a token's third finalized order stays C{processing}
        until one of the first two is issued, then it is issued too; another
        token's order does not wait.  (The CA is an upstream one: the
        built-in CA takes no slot.)
        """
        as_upstream(self.world)
        client = self.world.client()
        client.register()
        names = ["example.com", "a.example.com", "b.example.com"]
        orders = [client.new_order([name]).json() for name in names]
        finalized = [client.finalize(order, make_csr([name])[0]) for order, name in zip(orders, names, strict=True)]
        self.assertEqual([(f.code, f.json()["status"]) for f in finalized], [(200, "processing")] * 3)
        stranger = self.world.client()
        stranger.register()
        their = stranger.new_order(["example.com"]).json()
        theirs = stranger.finalize(their, make_csr(["example.com"])[0]).header("Location") or ""
        self.world.clock.advance(30)
        self.world.clock.advance(1)
        statuses = [client.post(f.header("Location") or "", None).json()["status"] for f in finalized]
        self.assertEqual(statuses, ["valid", "valid", "processing"])
        self.assertEqual(stranger.post(theirs, None).json()["status"], "valid")
        self.assertEqual(self.metrics.value("acme_appliance_rate_limited_total", limit="token_finalizes"), 1)
        self.world.clock.advance(30)
        self.assertEqual(client.post(finalized[2].header("Location") or "", None).json()["status"], "valid")

    def test_built_in_ca_takes_no_slot(self) -> None:
        """
        The built-in CA asks nobody upstream: its jobs take no finalize
        slot, so a token's orders beyond C{token_finalizes} are issued
        together, and no slot is written.
        """
        client = self.world.client()
        client.register()
        names = ["example.com", "a.example.com", "b.example.com"]
        orders = [client.new_order([name]).json() for name in names]
        finalized = [client.finalize(order, make_csr([name])[0]) for order, name in zip(orders, names, strict=True)]
        self.assertEqual([k for k in self.world.store._entries if k.startswith(keys.finalize_slots(""))], [])
        self.world.clock.advance(30)
        statuses = [client.post(f.header("Location") or "", None).json()["status"] for f in finalized]
        self.assertEqual(statuses, ["valid"] * 3)
        self.assertEqual(self.metrics.value("acme_appliance_rate_limited_total", limit="token_finalizes"), 0)
