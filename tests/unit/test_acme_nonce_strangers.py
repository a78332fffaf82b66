"""
Nonces go only to a directory's clients: a request for an unknown token, or
a path that routes nowhere, gets none from the pool.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.testing import BASE_URL, World


class StrangerNonceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.client = self.world.client()

    def test_unknown_token_gets_no_nonce(self) -> None:
        for path in ("directory", "new-nonce", "new-order"):
            response = self.client.get(f"{BASE_URL}/acme/not-a-token/{path}")
            self.assertEqual(response.code, 404 if path != "new-order" else 405, path)
            self.assertIsNone(response.header("replay-nonce"), path)
            self.assertIsNone(response.header("link"), path)
            self.assertEqual(response.header("cache-control"), "no-store")

    def test_unknown_resource_gets_no_nonce(self) -> None:
        response = self.client.get(self.client.directory_url.replace("/directory", "/no-such-thing"))
        self.assertEqual((response.code, response.header("replay-nonce")), (404, None))

    def test_unknown_token_post_gets_no_nonce(self) -> None:
        url = f"{BASE_URL}/acme/not-a-token/new-account"
        response = self.client.post(url, {"termsOfServiceAgreed": True}, use_jwk=True, nonce=self.client.nonce())
        self.assertEqual((response.code, response.problem_type), (404, "malformed"))
        self.assertIsNone(response.header("replay-nonce"))

    def test_known_token_problems_still_carry_one(self) -> None:
        response = self.client.post(self.client.directory["newAccount"], {}, use_jwk=True, nonce="made-up")
        self.assertEqual(response.problem_type, "badNonce")
        self.assertTrue(response.header("replay-nonce"))
