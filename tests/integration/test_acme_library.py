"""
The C{acme} library (certbot's) against the real appliance: hostile and
broken requests get RFC 8555 problems, never a 5xx; an order survives a kill
between finalize and issuance.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import josepy
import requests
from acme import client, crypto_util, errors, jws, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.issuance import LEASE

from .appliance import Appliance
from .tools import wait_for


def account_key() -> josepy.JWKEC:
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


class Client:
    """
    An account of the acme library plus raw access for hand-made JWS.
    """

    def __init__(self, appliance: Appliance, directory_url: str) -> None:
        self.appliance = appliance
        self.key = account_key()
        self.net = client.ClientNetwork(
            self.key,
            alg=josepy.ES256,
            verify_ssl=appliance.tls_cert,  # type: ignore[arg-type]
            user_agent="tests",
        )
        self.directory = client.ClientV2.get_directory(directory_url, self.net)
        self.acme = client.ClientV2(self.directory, self.net)
        self.regr = self.acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    def nonce(self) -> str:
        response = requests.head(self.directory["newNonce"], verify=self.appliance.tls_cert, timeout=10)
        return str(response.headers["Replay-Nonce"])

    def raw(
        self,
        url: str,
        payload: dict[str, Any] | None,
        *,
        nonce: str | None = None,
        jws_url: str | None = None,
        kid: str | None = None,
    ) -> requests.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = jws.JWS.sign(
            body,
            key=self.key,
            alg=josepy.ES256,
            nonce=josepy.b64decode(nonce or self.nonce()),
            url=jws_url or url,
            kid=kid or self.regr.uri,
        )
        return requests.post(
            url,
            data=signed.json_dumps(),
            headers={"Content-Type": "application/jose+json"},
            verify=self.appliance.tls_cert,
            timeout=30,
        )


def new_csr(names: list[str], key: Any = None) -> tuple[bytes, bytes]:
    """
    A CSR as PEM (for the acme library's new_order) and DER (for finalize).
    """
    key = key or ec.generate_private_key(ec.SECP256R1())
    pem = crypto_util.make_csr(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        names,
    )
    return pem, x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


def b64(data: bytes) -> str:
    return josepy.json_util.encode_b64jose(data)


def problem(response: requests.Response) -> str:
    assert response.headers["Content-Type"] == "application/problem+json", response.text
    return str(response.json()["type"]).rsplit(":", 1)[-1]


class ApplianceCase(SynchronousTestCase):
    """
    A running appliance and an account of a C{shop} token; no traceback
    may reach its log.
    """

    def setUp(self) -> None:
        self.appliance = Appliance(self)
        self.appliance.start()
        self.client = Client(self.appliance, self.appliance.directory("shop"))

    def tearDown(self) -> None:
        self.assertNotIn("Traceback", self.appliance.log())


class HostileRequestTests(ApplianceCase):
    def test_replayed_nonce(self) -> None:
        nonce = self.client.nonce()
        first = self.client.raw(self.client.regr.uri, None, nonce=nonce)
        self.assertEqual(first.status_code, 200)
        replay = self.client.raw(self.client.regr.uri, None, nonce=nonce)
        self.assertEqual((replay.status_code, problem(replay)), (400, "badNonce"))

    def test_wrong_url(self) -> None:
        response = self.client.raw(self.client.regr.uri, None, jws_url=self.client.directory["newOrder"])
        self.assertIn(problem(response), ("unauthorized", "malformed"))
        self.assertLess(response.status_code, 500)

    def test_kid_of_another_tokens_account(self) -> None:
        other = Client(self.appliance, self.appliance.directory("other"))
        response = self.client.raw(
            self.client.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": "example.com"}]},
            kid=other.regr.uri,
        )
        self.assertIn(problem(response), ("accountDoesNotExist", "unauthorized"))

    def test_account_id_under_another_tokens_prefix(self) -> None:
        """
        An attacker who knows an account's id (not its token) builds a kid
        from their own token's C{acct/} prefix and signs with the account's
        key: the account does not exist there.  Their own account cannot
        reach the order by its id under their token either.
        """
        mallory = Client(self.appliance, self.appliance.directory("shop"))
        order = self.client.acme.new_order(new_csr(["example.com"])[0])
        prefix = self.client.regr.uri.rsplit("/acct/", 1)[0]
        mallory_prefix = mallory.regr.uri.rsplit("/acct/", 1)[0]
        self.assertNotEqual(prefix, mallory_prefix)
        forged_kid = self.client.regr.uri.replace(prefix, mallory_prefix)
        new_order = mallory.directory["newOrder"]
        forged = self.client.raw(new_order, {"identifiers": [{"type": "dns", "value": "example.com"}]}, kid=forged_kid)
        self.assertEqual((forged.status_code, problem(forged)), (400, "accountDoesNotExist"))
        stolen = mallory.raw(order.uri.replace(prefix, mallory_prefix), None)
        self.assertEqual((stolen.status_code, problem(stolen)), (404, "malformed"))

    def test_csr_with_extra_name(self) -> None:
        order = self.client.acme.new_order(new_csr(["example.com"])[0])
        _, der = new_csr(["example.com", "www.example.com"])
        response = self.client.raw(order.body.finalize, {"csr": b64(der)})
        self.assertEqual((response.status_code, problem(response)), (400, "badCSR"))

    def test_csr_signed_with_account_key(self) -> None:
        pem, der = new_csr(["example.com"], self.client.key.key)
        order = self.client.acme.new_order(pem)
        with self.assertRaises(errors.Error) as raised:
            self.client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=30))
        self.assertIn("badCSR", str(raised.exception))
        response = self.client.raw(order.body.finalize, {"csr": b64(der)})
        self.assertEqual(problem(response), "badCSR")

    def test_huge_body(self) -> None:
        response = requests.post(
            self.client.directory["newOrder"],
            data=b"x" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/jose+json"},
            verify=self.appliance.tls_cert,
            timeout=30,
        )
        self.assertEqual(response.status_code // 100, 4)
        self.assertEqual(problem(response), "malformed")


class RestartTests(SynchronousTestCase):
    def test_killed_between_finalize_and_issuance(self) -> None:
        appliance = Appliance(self, cas='[[ca]]\nname = "builtin"\nkind = "local"\nissue_delay = 4.0')
        appliance.start()
        c = Client(appliance, appliance.directory("shop"))
        pem, der = new_csr(["example.com"])
        order = c.acme.new_order(pem)
        response = c.raw(order.body.finalize, {"csr": b64(der)})
        self.assertEqual(response.json()["status"], "processing")
        appliance.kill()
        appliance.start()
        # The killed job's order-key lease runs out first (LEASE seconds).
        status = wait_for(
            lambda: (s := c.raw(order.uri, None).json()["status"]) != "processing" and s,
            LEASE + 30,
            "the resumed order to leave processing",
            interval=0.5,
        )
        self.assertEqual(status, "valid", appliance.log())
        self.assertIn("resuming 1 queued issuance job", appliance.log())
