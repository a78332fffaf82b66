"""
Directory tokens isolate their accounts, orders, authorizations and
certificates: requests built the way an attacker who knows another token's
resource ids (but not its secret) would build them get exactly today's
answers.

Two checks are at stake, and each test here fails when one is removed:
C{Authenticator._account_for_kid} comparing the account's token with the
request's, and C{orders.owned} comparing the record's token with the
request's (without it, the account check answers 403 instead of 404).
"""

from __future__ import annotations

import json
from typing import Any

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.testing import (
    AlternateChainCA,
    StubAcmeClient,
    StubResponse,
    World,
    b64,
    ec_key,
    issued,
    make_csr,
    sign,
)


class CrossTokenTests(SynchronousTestCase):
    """
    Token A's account (C{alice}) has a certificate; token B (same policy)
    has its own valid account (C{mallory}), who uses B's URLs with A's ids.
    """

    def setUp(self) -> None:
        self.world = World(self)
        self.world.issuance._upstream._cas = {"builtin": AlternateChainCA(self.world.ca)}
        self.alice = self.world.client()
        self.order, self.leaf_key = issued(self.world, self.alice, ["example.com"])
        self.authz = self.alice.post(self.order["authorizations"][0], None).json()
        self.mallory = self.world.client()
        self.assertEqual(self.mallory.register().code, 201)
        self.prefix_a = self.alice.directory_url[: -len("directory")]
        self.prefix_b = self.mallory.directory_url[: -len("directory")]
        self.assertNotEqual(self.prefix_a, self.prefix_b)

    def as_b(self, url: str) -> str:
        """Token A's resource URL, under token B's directory."""
        self.assertTrue(url.startswith(self.prefix_a), url)
        return self.prefix_b + url[len(self.prefix_a) :]

    def impostor(self) -> StubAcmeClient:
        """
        A client of B's directory that signs with A's account key and a kid
        made of B's C{acct/} prefix and A's account id.
        """
        client = self.world.client(self.mallory.directory_url, key=self.alice.key)
        client.kid = self.as_b(self.alice.account)
        return client

    def assertProblem(self, response: StubResponse, code: int, problem: str) -> None:
        self.assertEqual((response.code, response.problem_type), (code, problem), response.body)

    def der(self) -> bytes:
        pem = self.alice.post(self.order["certificate"], None).body
        return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)

    # the account check: A's account id under B's prefix

    def test_impostor_kid_cannot_order(self) -> None:
        response = self.impostor().new_order(["example.com"])
        self.assertProblem(response, 400, "accountDoesNotExist")

    def test_impostor_kid_cannot_read_the_account(self) -> None:
        impostor = self.impostor()
        self.assertProblem(impostor.post(impostor.account, None), 400, "accountDoesNotExist")
        self.assertProblem(impostor.post(impostor.account + "/orders", None), 400, "accountDoesNotExist")

    def test_impostor_kid_cannot_change_the_key(self) -> None:
        impostor = self.impostor()
        url = impostor.directory["keyChange"]
        payload = {"account": impostor.account, "oldKey": self.alice.key.public_key().to_partial_json()}
        inner = json.loads(sign(ec_key(), payload, url=url, nonce=None))
        self.assertProblem(impostor.post(url, inner), 400, "accountDoesNotExist")
        self.assertEqual(self.alice.post(self.alice.account, None).code, 200)

    def test_impostor_kid_cannot_revoke(self) -> None:
        impostor = self.impostor()
        response = impostor.post(impostor.directory["revokeCert"], {"certificate": b64(self.der())})
        self.assertProblem(response, 400, "accountDoesNotExist")

    def test_impostor_kid_cannot_read_resources(self) -> None:
        impostor = self.impostor()
        for url in (self.order["authorizations"][0], self.order["certificate"]):
            self.assertProblem(impostor.post(self.as_b(url), None), 400, "accountDoesNotExist")

    # the resource check: B's own account, A's resource ids

    def post_as_b(self, url: str, payload: Any = None) -> StubResponse:
        return self.mallory.post(self.as_b(url), payload)

    def test_order_of_another_token(self) -> None:
        self.assertProblem(self.post_as_b(self.alice_order_url()), 404, "malformed")

    def alice_order_url(self) -> str:
        listed = self.alice.post(self.alice.account + "/orders", None).json()["orders"]
        self.assertEqual(len(listed), 1)
        return str(listed[0])

    def test_finalize_of_another_token(self) -> None:
        response = self.post_as_b(self.order["finalize"], {"csr": b64(make_csr(["example.com"])[0])})
        self.assertProblem(response, 404, "malformed")

    def test_authorization_of_another_token(self) -> None:
        self.assertProblem(self.post_as_b(self.order["authorizations"][0]), 404, "malformed")

    def test_challenge_of_another_token(self) -> None:
        for challenge in self.authz["challenges"]:
            self.assertProblem(self.post_as_b(challenge["url"], {}), 404, "malformed")

    def test_certificate_of_another_token(self) -> None:
        self.assertProblem(self.post_as_b(self.order["certificate"]), 404, "malformed")
        self.assertProblem(self.post_as_b(self.order["certificate"] + "/alt/0"), 404, "malformed")
        self.assertEqual(self.alice.post(self.order["certificate"] + "/alt/0", None).code, 200)

    def test_issuer_of_another_token(self) -> None:
        certificate_id = self.order["certificate"].rsplit("/", 1)[-1]
        issuer = self.prefix_a + "issuer/" + certificate_id
        self.assertEqual(self.alice.get(issuer).code, 200)
        self.assertProblem(self.mallory.get(self.as_b(issuer)), 404, "malformed")
        self.assertProblem(self.post_as_b(issuer), 404, "malformed")

    def test_account_orders_of_another_token(self) -> None:
        self.assertProblem(self.post_as_b(self.alice.account + "/orders"), 403, "unauthorized")
        self.assertProblem(self.post_as_b(self.alice.account), 403, "unauthorized")

    def test_revoke_a_certificate_of_another_token(self) -> None:
        der = self.der()
        by_account = self.mallory.post(self.mallory.directory["revokeCert"], {"certificate": b64(der)})
        self.assertProblem(by_account, 403, "unauthorized")
        self.assertIn("did not issue", by_account.json()["detail"])
        holder = self.world.client(self.mallory.directory_url, key=josepy.JWKEC(key=self.leaf_key))
        by_key = holder.post(holder.directory["revokeCert"], {"certificate": b64(der)}, use_jwk=True)
        self.assertProblem(by_key, 403, "unauthorized")
        self.assertIn("did not issue", by_key.json()["detail"])
        self.assertEqual(self.alice.post(self.alice.directory["revokeCert"], {"certificate": b64(der)}).code, 200)
