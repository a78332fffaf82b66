"""
The cache of parsed JWKs: an account key is checked and loaded once, then
served from its JSON text; keys that fail a check are never kept.
"""

from __future__ import annotations

import josepy
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import AcmeProblem
from acme_appliance.wire import jwk_from_json, jwk_to_json, public_key_of
from acme_appliance.wire._jws import JwkCache


def _public() -> dict[str, str]:
    return jwk_to_json(josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())))


class JwkCacheTests(SynchronousTestCase):
    def test_same_json_parsed_once(self) -> None:
        cache = JwkCache()
        jobj = _public()
        first = cache.parse(jobj)
        again = cache.parse(dict(reversed(list(jobj.items()))))
        self.assertIs(again, first)
        self.assertEqual(first, josepy.JWK.from_json(jobj))

    def test_stored_account_keys_are_cached(self) -> None:
        jobj = _public()
        self.assertIs(jwk_from_json(dict(jobj)), jwk_from_json(dict(jobj)))

    def test_public_key_of_a_stored_key_made_once(self) -> None:
        # Finalize compares the CSR's key with the account's, stored as JSON.
        jobj = _public()
        self.assertIs(public_key_of(jwk_from_json(dict(jobj))), public_key_of(jwk_from_json(dict(jobj))))

    def test_bad_keys_not_kept(self) -> None:
        cache = JwkCache()
        bad = {**_public(), "d": "AAAA"}
        for _ in range(2):
            with self.assertRaises(AcmeProblem):
                cache.parse(bad)
        self.assertEqual(len(cache._keys), 0)
        with self.assertRaises(AcmeProblem):
            cache.parse(["not", "an", "object"])

    def test_least_recently_used_goes(self) -> None:
        cache = JwkCache(size=2)
        a, b, c = _public(), _public(), _public()
        kept, evicted = cache.parse(a), cache.parse(b)
        self.assertIs(cache.parse(a), kept)  # a is now the most recent
        cache.parse(c)
        self.assertEqual(len(cache._keys), 2)
        self.assertIs(cache.parse(a), kept)
        self.assertIsNot(cache.parse(b), evicted)

    def test_public_key_made_once(self) -> None:
        cache = JwkCache()
        jwk = cache.parse(_public())
        key = cache.public_key(jwk)
        self.assertIs(cache.public_key(jwk), key)
        fresh = public_key_of(jwk)
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(fresh, ec.EllipticCurvePublicKey)
        self.assertEqual(key.public_numbers(), fresh.public_numbers())

    def test_public_key_of_other_jwks(self) -> None:
        private = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        key = JwkCache().public_key(private)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        self.assertEqual(key.public_numbers(), private.key.public_key().public_numbers())

    def test_evicted_keys_forget_their_public_key(self) -> None:
        cache = JwkCache(size=1)
        first = cache.parse(_public())
        cache.parse(_public())
        self.assertEqual(len(cache._public), 1)
        self.assertNotIn(id(first), cache._public)

    def test_members_other_than_strings(self) -> None:
        cache = JwkCache()
        jobj = _public()
        as_int, as_bool = cache.parse({**jobj, "ext": 1}), cache.parse({**jobj, "ext": True})
        self.assertIsNot(as_int, as_bool)
        self.assertIs(cache.parse({"ext": True, **jobj}), as_bool)
