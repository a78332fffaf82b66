"""
Nonces shared by the nodes of a cluster: issued by one, accepted once by any.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.acme import NonceSource
from acme_appliance.storage import MemoryStore


class SharedNonceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore(self.clock)
        self.a = NonceSource(self.clock, store=self.store, lifetime=60)
        self.b = NonceSource(self.clock, store=self.store, lifetime=60)
        for node in (self.a, self.b):
            self.successResultOf(Deferred.fromCoroutine(node.share()))

    def redeem(self, source: NonceSource, nonce: str) -> bool:
        return self.successResultOf(Deferred.fromCoroutine(source.redeem(nonce)))

    def test_other_node_accepts_once(self) -> None:
        nonce = self.a.new()
        self.assertTrue(self.redeem(self.b, nonce))
        self.assertFalse(self.redeem(self.b, nonce))
        self.assertFalse(self.redeem(self.a, nonce))

    def test_expired(self) -> None:
        nonce = self.a.new()
        self.clock.advance(61)
        self.assertFalse(self.redeem(self.b, nonce))

    def test_forged_or_garbage(self) -> None:
        nonce = self.a.new()
        forged = nonce[:-2] + ("AA" if not nonce.endswith("AA") else "BB")
        for bad in (forged, "", "not base64!", "abc"):
            self.assertFalse(self.redeem(self.b, bad), bad)

    def test_node_started_before_sharing(self) -> None:
        """
        A node that has not read the shared secret yet reads it when it meets
        a nonce of another node; its own earlier nonces stay valid.
        """
        late = NonceSource(self.clock, store=self.store)
        own = late.new()
        self.assertTrue(self.redeem(late, self.a.new()))
        self.assertTrue(self.redeem(late, own))
        self.assertTrue(self.redeem(self.a, late.new()))

    def test_memory_only(self) -> None:
        alone = NonceSource(self.clock)
        nonce = alone.new()
        self.assertTrue(self.redeem(alone, nonce))
        self.assertFalse(self.redeem(alone, nonce))
        self.assertFalse(self.redeem(self.a, alone.new()))
