"""
The store contract against a real redis-server, and what is particular to
Redis: races between two connections, a Redis restart (AOF), passwords.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs
from twisted.trial.unittest import TestCase

from acme_appliance.storage import Put, RedisStore, StorageError, Swap, open_store, redis_store
from acme_appliance.storage.redis import EXPIRY_KEY, GC_MARGIN, INDEX_KEY, SWEEP_BATCH
from tests.unit.test_storage import StoreContract, gather

from .tools import closed_port
from .world import RedisServer, make_tls_ca

reactor: Any = _reactor


async def eventually(check: Callable[[], Awaitable[object]], what: str, timeout: float = 20) -> None:
    """
    Run C{check} until it stops raising L{StorageError}, letting the
    reactor turn in between.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            await check()
            return
        except StorageError:
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None
        await deferLater(reactor, 0.05, lambda: None)


class RedisCase(TestCase):
    """
    A redis-server per test, and a L{Clock} that starts at the real time
    (so Redis' own expiry, a margin after the clock's, never comes first).
    """

    password: str | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(time.time())
        self.redis = RedisServer(self, os.path.join(self.mktemp(), "redis"), password=self.password)
        self.redis.start()

    def open(self, url: str | None = None, **kwargs: Any) -> RedisStore:
        store = redis_store(url or self.redis.url(), reactor=reactor, clock=self.clock, **kwargs)
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        return store

    def sent(self, store: RedisStore) -> list[str]:
        """
        What C{store} sends Redis from now on: the description of each call.
        """
        calls: list[str] = []
        call = store._call

        def counted(what: str, command: Any) -> Any:
            calls.append(what)
            return call(what, command)

        self.patch(store, "_call", counted)
        return calls


class RedisStoreContractTests(StoreContract, RedisCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = self.open()


class RedisStoreTests(RedisCase):
    async def test_two_connections_race_add(self) -> None:
        one, two = self.open(), self.open()
        results = await gather(*(s.add("lock/race", str(i).encode(), ttl=30) for i in range(10) for s in (one, two)))
        self.assertEqual(results.count(True), 1)
        winner = results.index(True)
        self.assertEqual(await two.get("lock/race"), str(winner // 2).encode())

    async def test_two_connections_race_compare_and_set(self) -> None:
        one, two = self.open(), self.open()
        await one.set("order/o1", b"processing")
        results = await gather(
            *(
                s.compare_and_set("order/o1", b"processing", f"valid-{i}".encode())
                for i in range(10)
                for s in (one, two)
            )
        )
        self.assertEqual(results.count(True), 1)
        self.assertEqual(await one.get("order/o1"), f"valid-{results.index(True) // 2}".encode())

    async def test_survives_a_restart(self) -> None:
        store = self.open()
        await store.set("token/t1", b"alice")
        await store.set("nonce/n1", b"", ttl=300)
        await store.increment("count/orders", 7)
        self.redis.stop()
        # Until it notices, a call may wait for an answer; then every call
        # fails at once, as unavailable.
        for _ in range(3):
            with self.assertRaises(StorageError) as caught:
                await store.get("token/t1")
            self.assertIn(f"redis 127.0.0.1:{self.redis.port}/0 unavailable", str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))
        self.redis.start()
        await eventually(lambda: store.get("token/t1"), "the store to work again")
        self.assertEqual(await store.get("token/t1"), b"alice")
        self.assertEqual(await store.get("nonce/n1"), b"")
        self.assertEqual(await store.increment("count/orders"), 8)
        self.assertTrue(await store.add("lock/after", b"x"))

    async def test_unreachable_fails_fast(self) -> None:
        store = self.open(f"redis://127.0.0.1:{closed_port(self)}/0")
        for _ in range(2):
            with self.assertRaises(StorageError) as caught:
                await store.set("k", b"v")
            self.assertIn("unavailable", str(caught.exception))

    async def test_open_store_checks_it_answers(self) -> None:
        store = await open_store(self.redis.url(3), reactor=reactor, clock=self.clock, base_dir="/")
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        self.assertIsInstance(store, RedisStore)
        await store.set("k", b"db3")
        self.assertIsNone(await self.open(self.redis.url(0)).get("k"))
        with self.assertRaises(StorageError):
            await open_store(f"redis://127.0.0.1:{closed_port(self)}", reactor=reactor, clock=self.clock, base_dir="/")

    async def test_scan_many_keys(self) -> None:
        store = self.open()
        expected = [(f"many/{i:05}", str(i).encode()) for i in range(1200)]
        for key, value in expected:
            await store.set(key, value)
        await store.set("manyx", b"not under the prefix")
        self.assertEqual(await store.scan("many/"), expected)

    async def test_script_cache_flushed(self) -> None:
        store = self.open()
        await store.set("k", b"v")
        self.assertEqual(await store.get("k"), b"v")
        await store._call("flush", lambda r: r.execute_command("SCRIPT", "FLUSH"))
        self.assertEqual(await store.get("k"), b"v")
        await store.set("k", b"w")
        self.assertEqual(await store.get("k"), b"w")

    async def test_increment_ttl_sets_the_garbage_expiry(self) -> None:
        """
        A counter created with a ttl is collected by Redis a margin after it
        expires; a live counter's expiry is left alone; an amount Redis
        refuses creates nothing.
        """
        store = self.open()

        def pttl(key: str) -> Any:
            return store._call("pttl", lambda r: r.execute_command("PTTL", key))

        await store.increment("rate/a", ttl=60)
        first = int(await pttl("rate/a"))
        self.assertGreater(first, (GC_MARGIN + 50) * 1000)
        self.assertLessEqual(first, (GC_MARGIN + 60) * 1000)
        self.assertEqual(await store.increment("rate/a", ttl=6000), 2)
        self.assertLessEqual(int(await pttl("rate/a")), first)
        await store.increment("count/b", ttl=None)
        self.assertEqual(int(await pttl("count/b")), -1)
        with self.assertRaises(StorageError):
            await store.increment("rate/c", 2**70, ttl=60)
        self.assertIsNone(await store.get("rate/c"))
        self.assertEqual(int(await pttl("rate/c")), -2)

    async def test_write_in_order_is_one_script(self) -> None:
        """
        An ordered write is one command (one round trip, which Redis runs
        whole); a swap that does not happen leaves the writes around it.
        """
        store = self.open()
        await store.set("order/o", b"ready")
        # Once, so that the server has the script (the first is sent whole).
        await store.write_in_order([Put("warm", b"")])
        sent = self.sent(store)
        done = await store.write_in_order(
            [Put("queue/o", b"1", ttl=60), Swap("order/o", b"other", b"x"), Swap("order/o", b"ready", None)]
        )
        self.assertEqual(sent, ["3 writes in order"])
        self.assertEqual(done, [True, False, True])
        self.assertEqual(await store.get("queue/o"), b"1")
        self.assertIsNone(await store.get("order/o"))

    async def test_wait_replicas_without_replicas(self) -> None:
        store = self.open(timeout=0.5, wait_replicas=1)
        with self.assertRaises(StorageError) as caught:
            await store.set("k", b"v")
        self.assertIn("reached 0 of 1 replicas", str(caught.exception))
        self.assertFalse(await store.add("k", b"w"))
        with self.assertRaises(StorageError) as caught:
            await store.write_in_order([Put("k2", b"v"), Swap("k", b"other", None)])
        self.assertIn("reached 0 of 1 replicas", str(caught.exception))
        # Nothing applied, nothing to wait for.
        self.assertEqual(await store.write_in_order([Swap("k", b"other", None)]), [False])


class RedisIndexTests(RedisCase):
    """
    Listings read the key index that the writes keep, not the keyspace.
    """

    def command(self, store: RedisStore, *args: object) -> Any:
        return store._call("test", lambda r: r.execute_command(*args))

    async def test_scan_costs_what_the_prefix_holds(self) -> None:
        store = self.open()
        for start in range(0, 3000, 500):
            await store.write_in_order([Put(f"other/{i:05}", b"x") for i in range(start, start + 500)])
        for key in ("p/1", "p/2", "p0"):
            await store.set(key, b"v", ttl=60)
        await store.scan("p/")  # the first scan on a new database marks its index complete
        sent = self.sent(store)
        self.assertEqual(await store.scan("p/"), [("p/1", b"v"), ("p/2", b"v")])
        self.assertEqual(sent, ["scan 'p/'"])

    async def test_entries_written_without_the_index(self) -> None:
        """
        A database written before the index (or flushed) is indexed at the
        first listing, once; entries' TTLs are kept.
        """
        store = self.open()
        live = repr(self.clock.seconds() + 60).encode()
        dead = repr(self.clock.seconds() - 1).encode()
        await self.command(store, "HSET", "old/a", "v", "1")
        await self.command(store, "HSET", "old/b", "v", "2", "e", live)
        await self.command(store, "HSET", "old/c", "v", "3", "e", dead)
        await self.command(store, "SET", "stray", "not an entry")
        with capturedLogs() as logs:
            self.assertEqual(await store.scan("old/"), [("old/a", b"1"), ("old/b", b"2")])
            self.assertEqual(await store.scan(""), [("old/a", b"1"), ("old/b", b"2")])
        self.assertEqual([e["log_format"] for e in logs].count("indexed the {count} keys of {store}"), 1)
        self.clock.advance(61)
        self.assertEqual(await store.purge_expired(), 2)
        self.assertEqual(await store.scan("old/"), [("old/a", b"1")])
        await self.command(store, "FLUSHDB")
        await store.set("new/a", b"1")
        self.assertEqual(await store.scan(""), [("new/a", b"1")])

    async def test_collected_entries_leave_the_index(self) -> None:
        """
        Each write takes some entries whose collection time has come out
        of the index (and deletes them); L{RedisStore.purge_expired} all
        expired ones.
        """
        store = self.open()
        await store.scan("")
        for i in range(40):
            await store.set(f"nonce/{i:02}", b"", ttl=1)
        await store.set("token/t", b"kept")
        self.assertEqual(int(await self.command(store, "ZCARD", INDEX_KEY)), 41)
        self.clock.advance(2 + GC_MARGIN)
        await store.set("token/u", b"kept")
        self.assertEqual(int(await self.command(store, "ZCARD", INDEX_KEY)), 42 - SWEEP_BATCH)
        self.assertEqual(int(await self.command(store, "EXISTS", "nonce/00")), 0)
        self.assertEqual(await store.purge_expired(), 40 - SWEEP_BATCH)
        self.assertEqual(int(await self.command(store, "ZCARD", INDEX_KEY)), 2)
        self.assertEqual(int(await self.command(store, "ZCARD", EXPIRY_KEY)), 0)
        self.assertEqual(await store.scan(""), [("token/t", b"kept"), ("token/u", b"kept")])

    async def test_index_keys_are_not_entries(self) -> None:
        store = self.open()
        for key in ("\x00index", "\x00x"):
            with self.assertRaises(ValueError):
                await store.set(key, b"v")
            with self.assertRaises(ValueError):
                await store.write_in_order([Put("k", b"v"), Put(key, b"v")])
        self.assertIsNone(await store.get("k"))


class RedisTLSTests(RedisCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(time.time())
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.ca, cert, key = make_tls_ca(directory)
        self.redis = RedisServer(self, os.path.join(directory, "redis"), tls=(self.ca, cert, key))
        self.redis.start()

    async def test_rediss(self) -> None:
        url = self.redis.url()
        self.assertTrue(url.startswith("rediss://"))
        store = self.open(url, ca_bundle=self.ca)
        await store.set("k", b"over TLS")
        self.assertEqual(await store.get("k"), b"over TLS")

    async def test_untrusted_certificate(self) -> None:
        # Without the bundle the system roots do not know the test CA.
        store = self.open(self.redis.url(), timeout=2)
        with self.assertRaises(StorageError) as caught:
            await store.get("k")
        self.assertIn(f"rediss 127.0.0.1:{self.redis.port}/0 unavailable: ", str(caught.exception))
        self.assertIn("certificate verify failed", str(caught.exception))


class RedisSentinelTests(RedisCase):
    async def test_master_from_sentinel(self) -> None:
        sentinel = self.redis.sentinel("appliance")
        store = self.open(f"redis+sentinel://127.0.0.1:{closed_port(self)},127.0.0.1:{sentinel}/appliance/2")
        await eventually(lambda: store.set("k", b"via sentinel"), "the master to be found")
        self.assertEqual(await store.get("k"), b"via sentinel")
        direct = self.open(self.redis.url(2))
        self.assertEqual(await direct.get("k"), b"via sentinel")


class RedisPasswordTests(RedisCase):
    password = "s3cret-Pa55"

    async def test_password(self) -> None:
        store = self.open()
        await store.set("k", b"v")
        self.assertEqual(await store.get("k"), b"v")

    async def test_wrong_password(self) -> None:
        store = self.open(self.redis.url(password="wrong-guess"))
        for _ in range(2):
            with self.assertRaises(StorageError) as caught:
                await store.get("k")
            message = str(caught.exception)
            self.assertIn("unavailable", message)
            self.assertIn("auth", message.lower())
            self.assertNotIn("wrong-guess", message)
            self.assertNotIn(self.password, message)
            self.assertNotIn("\n", message)

    async def test_no_password(self) -> None:
        store = self.open(f"redis://127.0.0.1:{self.redis.port}/0")
        with self.assertRaises(StorageError) as caught:
            await store.get("k")
        self.assertIn("NOAUTH", str(caught.exception))
