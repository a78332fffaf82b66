"""
ACME Renewal Information (RFC 9773) against the real appliance (built-in
CA): certbot's C{acme} library reads paced windows, C{acme-appliance
renew-now} moves them and C{replaces} is honoured once (test_certbot: C{certbot
renew} renews what renew-now moved).
"""

from __future__ import annotations

import datetime

import requests
from acme.client import _renewal_info_path_component
from cryptography import x509

from .test_acme_library import ApplianceCase, Client, new_csr, problem


def issue(client: Client, names: list[str]) -> bytes:
    order = client.acme.new_order(new_csr(names)[0])
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    return client.acme.poll_and_finalize(order, deadline).fullchain_pem.encode()


def window(client: Client, cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    leaf = x509.load_pem_x509_certificate(cert_pem)
    url = client.directory["renewalInfo"] + "/" + _renewal_info_path_component(leaf)
    response = requests.get(url, verify=client.appliance.tls_cert, timeout=10)
    assert response.status_code == 200, response.text
    suggested = response.json()["suggestedWindow"]
    return datetime.datetime.fromisoformat(suggested["start"]), datetime.datetime.fromisoformat(suggested["end"])


class AcmeLibraryTests(ApplianceCase):
    def test_paced_then_renew_now(self) -> None:
        fleet = [issue(self.client, ["example.com"]) for _ in range(10)]
        other = issue(self.client, ["www.example.com"])
        starts = set()
        for pem in fleet:
            leaf = x509.load_pem_x509_certificate(pem)
            middle = leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
            start, end = window(self.client, pem)
            self.assertTrue(middle <= start < end <= leaf.not_valid_after_utc, (start, end))
            renewal, _ = self.client.acme.renewal_time(pem)
            assert renewal is not None
            self.assertTrue(start <= renewal <= end)
            starts.add(start)
        self.assertEqual(len(starts), 10)
        other_window = window(self.client, other)

        result = self.appliance.cli("renew-now", "example.com")
        self.assertIn("10 certificate(s)", result.stdout)
        now = datetime.datetime.now(datetime.UTC)
        for pem in fleet:
            renewal, _ = self.client.acme.renewal_time(pem)
            assert renewal is not None
            self.assertLess(renewal, now)
            self.assertLess(now - renewal, datetime.timedelta(minutes=10))
        self.assertEqual(window(self.client, other), other_window)

    def test_replaces_once(self) -> None:
        pem = issue(self.client, ["example.com"])
        cert_id = _renewal_info_path_component(x509.load_pem_x509_certificate(pem))
        payload = {"identifiers": [{"type": "dns", "value": "example.com"}], "replaces": cert_id}
        first = self.client.raw(self.client.directory["newOrder"], payload)
        self.assertEqual(first.status_code, 201, first.text)
        self.assertEqual(first.json()["replaces"], cert_id)
        second = self.client.raw(self.client.directory["newOrder"], payload)
        self.assertEqual((second.status_code, problem(second)), (409, "alreadyReplaced"))

    def test_cli_errors(self) -> None:
        result = self.appliance.cli("renew-now", "not..a.name", check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertTrue(result.stderr.startswith("acme-appliance: "), result.stderr)
        usage = self.appliance.cli("renew-now", check=False)
        self.assertEqual(usage.returncode, 2)
