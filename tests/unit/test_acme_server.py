"""
The ACME server in memory: Klein resource through StubTreq, MemoryStore,
the built-in CA and a Clock.
"""

from __future__ import annotations

import json

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.testing import BASE_URL, AlternateChainCA, World, b64, ec_key, issued, make_csr, sign


class DirectoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)

    def test_directory(self) -> None:
        directory = self.world.directory()
        client = self.world.client(directory)
        prefix = directory[: -len("directory")]
        self.assertEqual(client.directory["newNonce"], prefix + "new-nonce")
        self.assertEqual(client.directory["newAccount"], prefix + "new-account")
        self.assertEqual(client.directory["newOrder"], prefix + "new-order")
        self.assertEqual(client.directory["revokeCert"], prefix + "revoke-cert")
        self.assertEqual(client.directory["keyChange"], prefix + "key-change")
        self.assertEqual(client.directory["meta"], {"externalAccountRequired": False})

    def test_unknown_token(self) -> None:
        client = self.world.client()
        response = client.get(f"{BASE_URL}/acme/not-a-token/directory")
        self.assertEqual((response.code, response.problem_type), (404, "malformed"))

    def test_revoked_token(self) -> None:
        directory = self.world.directory()
        secret = directory.split("/")[-2]
        self.successResultOf(Deferred.fromCoroutine(self.world.tokens.revoke(secret)))
        response = self.world.client(self.world.directory()).get(directory)
        self.assertEqual((response.code, response.problem_type), (404, "malformed"))

    def test_new_nonce(self) -> None:
        client = self.world.client()
        head = client.head(client.directory["newNonce"])
        get = client.get(client.directory["newNonce"])
        self.assertEqual((head.code, get.code), (200, 204))
        for response in (head, get):
            self.assertTrue(response.header("replay-nonce"))
            self.assertEqual(response.header("cache-control"), "no-store")
        self.assertNotEqual(head.header("replay-nonce"), get.header("replay-nonce"))

    def test_get_on_post_resource(self) -> None:
        client = self.world.client()
        response = client.get(client.directory["newOrder"])
        self.assertEqual((response.code, response.problem_type), (405, "malformed"))
        self.assertEqual(response.header("allow"), "POST")


class AccountTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.client = self.world.client()

    def test_create_and_find(self) -> None:
        created = self.client.register(contact=["mailto:ops@example.com"])
        self.assertEqual(created.code, 201)
        self.assertEqual(created.json()["status"], "valid")
        self.assertEqual(created.json()["contact"], ["mailto:ops@example.com"])
        again = self.client.register()
        self.assertEqual((again.code, again.header("location")), (200, created.header("location")))
        existing = self.client.register(onlyReturnExisting=True)
        self.assertEqual(existing.header("location"), created.header("location"))

    def test_only_return_existing_unknown(self) -> None:
        response = self.client.register(onlyReturnExisting=True)
        self.assertEqual((response.code, response.problem_type), (400, "accountDoesNotExist"))

    def test_bad_contacts(self) -> None:
        self.assertEqual(self.client.register(contact=["tel:+1555"]).problem_type, "unsupportedContact")
        self.assertEqual(self.client.register(contact=["mailto:nobody"]).problem_type, "invalidContact")
        self.assertEqual(self.client.register(contact="mailto:a@b.c").problem_type, "malformed")

    def test_accounts_are_isolated_per_token(self) -> None:
        self.client.register()
        other = self.world.client(self.world.directory("other"))
        other.kid = self.client.kid
        response = other.new_order(["other.org"])
        self.assertEqual((response.code, response.problem_type), (400, "accountDoesNotExist"))

    def test_same_key_separate_accounts_per_token(self) -> None:
        self.client.register()
        other = self.world.client(self.world.directory("other"), key=self.client.key)
        self.assertEqual(other.register().code, 201)
        self.assertNotEqual(other.kid, self.client.kid)

    def test_update_and_deactivate(self) -> None:
        self.client.register()
        updated = self.client.post(self.client.account, {"contact": ["mailto:new@example.com"]})
        self.assertEqual(updated.json()["contact"], ["mailto:new@example.com"])
        fetched = self.client.post(self.client.account, None)
        self.assertEqual(fetched.json()["contact"], ["mailto:new@example.com"])
        bad = self.client.post(self.client.account, {"status": "revoked"})
        self.assertEqual(bad.problem_type, "malformed")
        gone = self.client.post(self.client.account, {"status": "deactivated"})
        self.assertEqual(gone.json()["status"], "deactivated")
        after = self.client.new_order(["example.com"])
        self.assertEqual((after.code, after.problem_type), (403, "unauthorized"))

    def test_other_account_url(self) -> None:
        self.client.register()
        second = self.world.client(self.client.directory_url)
        second.register()
        response = second.post(self.client.account, None)
        self.assertEqual(response.problem_type, "unauthorized")

    def test_orders_list(self) -> None:
        self.client.register()
        order = self.client.new_order(["example.com"])
        listed = self.client.post(self.client.account + "/orders", None)
        self.assertEqual(listed.json()["orders"], [order.header("location")])

    def test_key_change(self) -> None:
        self.client.register()
        new_key = ec_key()
        url = self.client.directory["keyChange"]
        inner = json.loads(
            sign(
                new_key,
                {"account": self.client.kid, "oldKey": self.client.key.public_key().to_partial_json()},
                url=url,
                nonce=None,
            )
        )
        response = self.client.post(url, inner)
        self.assertEqual(response.code, 200, response.body)
        old = self.client.post(self.client.account, None)
        self.assertEqual(old.problem_type, "malformed")  # old key no longer verifies
        self.client.key = new_key
        self.assertEqual(self.client.post(self.client.account, None).code, 200)

    def test_key_change_to_used_key(self) -> None:
        self.client.register()
        second = self.world.client(self.client.directory_url)
        second.register()
        url = self.client.directory["keyChange"]
        inner = json.loads(
            sign(
                second.key,
                {"account": self.client.kid, "oldKey": self.client.key.public_key().to_partial_json()},
                url=url,
                nonce=None,
            )
        )
        response = self.client.post(url, inner)
        self.assertEqual(response.code, 409)
        self.assertEqual(response.header("location"), second.kid)


class JWSRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.client = self.world.client()
        self.client.register()

    def test_replayed_nonce(self) -> None:
        nonce = self.client.nonce()
        first = self.client.post(self.client.account, None, nonce=nonce)
        self.assertEqual(first.code, 200)
        replay = self.client.post(self.client.account, None, nonce=nonce)
        self.assertEqual((replay.code, replay.problem_type), (400, "badNonce"))
        self.assertTrue(replay.header("replay-nonce"))

    def test_unknown_nonce(self) -> None:
        response = self.client.post(self.client.account, None, nonce="made-up")
        self.assertEqual(response.problem_type, "badNonce")

    def test_nonce_expires(self) -> None:
        nonce = self.client.nonce()
        self.world.clock.advance(2 * 3600)
        self.assertEqual(self.client.post(self.client.account, None, nonce=nonce).problem_type, "badNonce")

    def test_wrong_url(self) -> None:
        response = self.client.post(self.client.account, None, jws_url=self.client.directory["newOrder"])
        self.assertEqual((response.code, response.problem_type), (403, "unauthorized"))

    def test_content_type(self) -> None:
        body = sign(self.client.key, None, url=self.client.account, nonce=self.client.nonce(), kid=self.client.kid)
        response = self.client.post_raw(self.client.account, body, headers={b"Content-Type": [b"application/json"]})
        self.assertEqual((response.code, response.problem_type), (415, "malformed"))

    def test_body_limit(self) -> None:
        response = self.client.post(self.client.directory["newOrder"], b"x" * 8192)
        self.assertEqual((response.code, response.problem_type), (413, "malformed"))

    def test_garbage(self) -> None:
        for body in (b"", b"{", b"[]", b'{"protected": 1}', b"\xff\xfe"):
            response = self.client.post_raw(self.client.directory["newOrder"], body)
            self.assertEqual(response.code // 100, 4, body)
            self.assertEqual(response.header("content-type"), "application/problem+json")

    def test_jwk_where_kid_needed(self) -> None:
        response = self.client.post(self.client.directory["newOrder"], {"identifiers": []}, use_jwk=True)
        self.assertEqual(response.problem_type, "malformed")

    def test_bad_signature(self) -> None:
        response = self.client.post(self.client.account, None, key=ec_key())
        self.assertEqual(response.problem_type, "malformed")


class OrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.client = self.world.client()
        self.client.register()

    def test_order_is_ready_with_valid_authorizations(self) -> None:
        response = self.client.new_order(["Example.COM.", "*.example.com"])
        self.assertEqual(response.code, 201)
        order = response.json()
        self.assertEqual(order["status"], "ready")
        self.assertEqual([i["value"] for i in order["identifiers"]], ["example.com", "*.example.com"])
        authzs = [self.client.post(url, None).json() for url in order["authorizations"]]
        self.assertEqual([a["status"] for a in authzs], ["valid", "valid"])
        self.assertEqual(authzs[1]["identifier"]["value"], "example.com")
        self.assertTrue(authzs[1]["wildcard"])
        self.assertEqual([c["type"] for c in authzs[1]["challenges"]], ["dns-01"])
        challenge = self.client.post(authzs[0]["challenges"][0]["url"], {})
        self.assertEqual(challenge.json()["status"], "valid")
        self.assertIn('rel="up"', challenge.header("link"))

    def test_rejected_identifiers(self) -> None:
        response = self.client.new_order(["example.com", "evil.org"])
        self.assertEqual((response.code, response.problem_type), (400, "rejectedIdentifier"))
        self.assertIn("evil.org", response.json()["detail"])
        self.assertEqual(len(response.json()["subproblems"]), 1)
        self.assertEqual(self.client.new_order(["bad..name.com"]).problem_type, "rejectedIdentifier")
        self.assertEqual(self.client.new_order(["example.com"] * 0).problem_type, "malformed")
        ip = self.client.post(self.client.directory["newOrder"], {"identifiers": [{"type": "ip", "value": "10.0.0.1"}]})
        self.assertEqual(ip.problem_type, "unsupportedIdentifier")

    def test_token_domains_narrow_the_policy(self) -> None:
        client = self.world.client(self.world.directory("shop", ("www.example.com",)))
        client.register()
        self.assertEqual(client.new_order(["www.example.com"]).code, 201)
        self.assertEqual(client.new_order(["api.example.com"]).problem_type, "rejectedIdentifier")

    def test_wildcard_needs_dns(self) -> None:
        client = self.world.client(self.world.directory("files"))
        client.register()
        response = client.new_order(["*.files.net"])
        self.assertEqual(response.problem_type, "rejectedIdentifier")
        self.assertIn("file-proxy", response.json()["detail"])

    def test_issue(self) -> None:
        order, key = issued(self.world, self.client, ["example.com", "www.example.com"])
        self.assertEqual(order["status"], "valid")
        cert = self.client.post(order["certificate"], None)
        self.assertEqual(cert.header("content-type"), "application/pem-certificate-chain")
        self.assertIn('rel="up"', cert.header("link"))
        chain = x509.load_pem_x509_certificates(cert.body)
        self.assertEqual(len(chain), 2)
        names = (
            chain[0]
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.DNSName)
        )
        self.assertEqual(sorted(names), ["example.com", "www.example.com"])
        self.assertEqual(chain[0].public_key(), key.public_key())
        link = cert.header("link")
        assert link is not None
        issuer = self.client.get(link.split(">")[0][1:])
        self.assertEqual(x509.load_pem_x509_certificates(issuer.body), chain[1:])

    def test_processing_then_valid(self) -> None:
        world = World(self, issue_delay=30)
        client = world.client()
        client.register()
        order = client.new_order(["example.com"])
        response = client.finalize(order.json(), make_csr(["example.com"])[0])
        self.assertEqual(response.json()["status"], "processing")
        self.assertEqual(response.header("retry-after"), "2")
        polled = client.post(order.location, None)
        self.assertEqual((polled.json()["status"], polled.header("retry-after")), ("processing", "2"))
        again = client.finalize(order.json(), make_csr(["example.com"])[0])
        self.assertEqual((again.code, again.problem_type), (403, "orderNotReady"))
        world.clock.advance(30)
        self.assertEqual(client.post(order.location, None).json()["status"], "valid")

    def test_resume_after_restart(self) -> None:
        world = World(self, issue_delay=30)
        client = world.client()
        client.register()
        order = client.new_order(["example.com"])
        client.finalize(order.json(), make_csr(["example.com"])[0])
        # The process dies: its jobs are gone, the store is what survives.
        world.issuance.stopService()
        restarted = World(self, store=world.store, clock=world.clock, ca_dir=world.ca_dir)
        restarted.issuance.startService()
        self.assertEqual(client.post(order.location, None).json()["status"], "valid")

    def test_bad_csrs(self) -> None:
        order = self.client.new_order(["example.com"]).json()
        extra = self.client.finalize(order, make_csr(["example.com", "www.example.com"])[0])
        self.assertEqual(extra.problem_type, "badCSR")
        same_key = self.client.finalize(order, make_csr(["example.com"], self.client.key.key._wrapped)[0])
        self.assertEqual(same_key.problem_type, "badCSR")
        garbage = self.client.finalize(order, b"not a csr")
        self.assertEqual(garbage.problem_type, "badCSR")
        self.assertEqual(self.client.post(order["finalize"], {"csr": "!!"}).problem_type, "malformed")
        self.assertEqual(self.client.post(order["finalize"], {}).problem_type, "malformed")

    def test_someone_elses_order(self) -> None:
        order = self.client.new_order(["example.com"])
        other = self.world.client(self.client.directory_url)
        other.register()
        self.assertEqual(other.post(order.location, None).problem_type, "unauthorized")
        self.assertEqual(other.post(order.json()["authorizations"][0], None).problem_type, "unauthorized")

    def test_order_expires(self) -> None:
        order = self.client.new_order(["example.com"])
        self.world.clock.advance(8 * 86400)
        expired = self.client.post(order.location, None)
        self.assertEqual(expired.json()["status"], "invalid", expired.body)
        late = self.client.finalize(order.json(), make_csr(["example.com"])[0])
        self.assertEqual(late.problem_type, "orderNotReady")

    def test_no_time_travel(self) -> None:
        response = self.client.post(
            self.client.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": "example.com"}], "notAfter": "2030-01-01T00:00:00Z"},
        )
        self.assertEqual(response.problem_type, "malformed")


class RevocationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        self.client = self.world.client()
        self.order, self.key = issued(self.world, self.client, ["example.com"])
        pem = self.client.post(self.order["certificate"], None).body
        self.der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)

    def test_revoke_with_account_key(self) -> None:
        response = self.client.post(self.client.directory["revokeCert"], {"certificate": b64(self.der), "reason": 4})
        self.assertEqual(response.code, 200, response.body)
        again = self.client.post(self.client.directory["revokeCert"], {"certificate": b64(self.der)})
        self.assertEqual(again.problem_type, "alreadyRevoked")

    def test_revoke_with_certificate_key(self) -> None:
        stranger = self.world.client(self.client.directory_url, key=josepy.JWKEC(key=self.key))
        response = stranger.post(self.client.directory["revokeCert"], {"certificate": b64(self.der)}, use_jwk=True)
        self.assertEqual(response.code, 200, response.body)

    def test_revoke_refused(self) -> None:
        other = self.world.client(self.client.directory_url)
        other.register()
        self.assertEqual(
            other.post(self.client.directory["revokeCert"], {"certificate": b64(self.der)}).problem_type, "unauthorized"
        )
        wrong_key = other.post(self.client.directory["revokeCert"], {"certificate": b64(self.der)}, use_jwk=True)
        self.assertEqual(wrong_key.problem_type, "unauthorized")
        bad_reason = self.client.post(self.client.directory["revokeCert"], {"certificate": b64(self.der), "reason": 8})
        self.assertEqual(bad_reason.problem_type, "badRevocationReason")
        self.assertEqual(
            self.client.post(self.client.directory["revokeCert"], {"certificate": b64(b"junk")}).problem_type,
            "malformed",
        )


class AlternateChainTests(SynchronousTestCase):
    def test_alternates_are_linked(self) -> None:
        """
        Chains an upstream CA offered besides the default are served at
        C{Link: rel="alternate"} URLs (RFC 8555 section 7.4.2).
        """
        world = World(self)
        world.issuance._upstream._cas = {"builtin": AlternateChainCA(world.ca)}
        client = world.client()
        order, _ = issued(world, client, ["example.com"])
        cert = client.post(order["certificate"], None)
        links = cert.headers.getRawHeaders("link", [])
        alternates = [link.split(">")[0][1:] for link in links if 'rel="alternate"' in link]
        self.assertEqual(alternates, [order["certificate"] + "/alt/0"])
        alternate = client.post(alternates[0], None)
        self.assertEqual(alternate.code, 200)
        self.assertTrue(alternate.body.endswith(b"# alternate chain\n"))
        back = [link for link in alternate.headers.getRawHeaders("link", []) if 'rel="alternate"' in link]
        self.assertEqual(back, [f'<{order["certificate"]}>;rel="alternate"'])
        missing = client.post(order["certificate"] + "/alt/1", None)
        self.assertEqual((missing.code, missing.problem_type), (404, "malformed"))
