"""
Token secrets.
"""

from __future__ import annotations

import secrets
from unittest import mock

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.policy import TokenRegistry, UnknownToken, _tokens
from acme_appliance.storage import MemoryStore


class SecretTests(SynchronousTestCase):
    def test_never_looks_like_an_option(self) -> None:
        """
        A secret starting with C{-} would read as an option to
        C{acme-appliance token revoke}: such draws are discarded.
        """
        draws = iter(["-starts-with-dash", "-again", "fine-secret"])
        with mock.patch.object(secrets, "token_urlsafe", lambda n: next(draws)):
            self.assertEqual(_tokens.new_secret(), "fine-secret")

    def test_length(self) -> None:
        # 24 random bytes: 32 base64url characters, 192 bits.
        self.assertEqual(len(_tokens.new_secret()), 32)


class LookupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self.reads: list[str] = []
        get = self.store.get

        async def counted(key: str) -> bytes | None:
            self.reads.append(key)
            return await get(key)

        self.store.get = counted  # type: ignore[method-assign]
        self.tokens = TokenRegistry(self.store, self.clock)
        self.token, self.secret = self.successResultOf(Deferred.fromCoroutine(self.tokens.create("shop")))

    def lookup(self, registry: TokenRegistry | None = None) -> Deferred[_tokens.Token]:
        return Deferred.fromCoroutine((registry or self.tokens).lookup(self.secret))

    def test_known_secret_reads_the_record_only(self) -> None:
        """
        Once a secret's token id is known, a lookup reads the token record
        and not the index.
        """
        self.assertEqual(self.successResultOf(self.lookup()), self.token)
        self.assertEqual(len(self.reads), 2)
        self.reads.clear()
        self.assertEqual(self.successResultOf(self.lookup()), self.token)
        self.assertEqual(self.reads, [f"token/{self.token.id}"])

    def test_revoked_elsewhere_after_lookup(self) -> None:
        """
        A token revoked by another registry on the same store (another
        process) is refused at once, although its id is known.
        """
        self.successResultOf(self.lookup())
        other = TokenRegistry(self.store, self.clock)
        self.successResultOf(Deferred.fromCoroutine(other.revoke(self.token.id)))
        self.failureResultOf(self.lookup(), UnknownToken)

    def test_unknown_not_kept(self) -> None:
        """
        A secret not found is looked up again the next time: a token
        another process creates afterwards is found.
        """
        other = TokenRegistry(self.store, self.clock)
        self.failureResultOf(Deferred.fromCoroutine(self.tokens.lookup("nope")), UnknownToken)
        self.failureResultOf(Deferred.fromCoroutine(self.tokens.lookup("nope")), UnknownToken)
        self.assertEqual(self.reads.count(f"token-hash/{_tokens.hash_secret('nope')}"), 2)
        token, secret = self.successResultOf(Deferred.fromCoroutine(other.create("shop")))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(self.tokens.lookup(secret))), token)

    def test_known_ids_bounded(self) -> None:
        """
        At most L{_tokens.MAX_KNOWN_IDS} ids are kept; then they are all
        forgotten and found again in the index.
        """
        with mock.patch.object(_tokens, "MAX_KNOWN_IDS", 1):
            _, second = self.successResultOf(Deferred.fromCoroutine(self.tokens.create("shop")))
            self.successResultOf(self.lookup())
            self.successResultOf(Deferred.fromCoroutine(self.tokens.lookup(second)))
            self.reads.clear()
            self.successResultOf(self.lookup())
            self.assertEqual(len(self.reads), 2)
