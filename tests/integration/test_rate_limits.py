"""
Rate limits against the real appliance and the C{acme} library (issue 11):
one account ordering in a tight loop gets C{429} with C{Retry-After} while
another token's client orders normally.
"""

from __future__ import annotations

import datetime
import pathlib

import requests
from acme import messages
from twisted.trial.unittest import SynchronousTestCase

from .appliance import Appliance
from .test_acme_library import Client, new_csr, problem

LIMIT = 5


class RateLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.appliance = Appliance(self, extra=f"[limits]\naccount_orders = {LIMIT}\n")
        self.appliance.start()

    def tearDown(self) -> None:
        self.assertNotIn("Traceback", self.appliance.log())

    def test_flooding_account_limited_other_token_unaffected(self) -> None:
        flooder = Client(self.appliance, self.appliance.directory("shop"))
        csr_pem, _ = new_csr(["example.com"])
        created = 0
        refused: messages.Error | None = None
        for _ in range(3 * LIMIT):
            try:
                flooder.acme.new_order(csr_pem)
            except messages.Error as e:
                refused = e
                break
            created += 1
        self.assertEqual(created, LIMIT)
        assert refused is not None
        self.assertEqual(refused.code, "rateLimited")
        # The raw answer: 429, an RFC 8555 problem and Retry-After.
        response = flooder.raw(
            flooder.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "example.com"}]}
        )
        self.assertEqual((response.status_code, problem(response)), (429, "rateLimited"))
        retry_after = int(response.headers["Retry-After"])
        self.assertTrue(1 <= retry_after <= 3 * 3600, retry_after)

        # Another token's client is not delayed: it orders and gets its certificate.
        other = Client(self.appliance, self.appliance.directory("shop"))
        order = other.acme.new_order(new_csr(["www.example.com"])[0])
        final = other.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=60))
        self.assertIn("BEGIN CERTIFICATE", final.fullchain_pem)

        key = pathlib.Path(self.appliance.dir, "admin.key").read_text().strip()
        url = f"http://127.0.0.1:{self.appliance.admin_port}/metrics"
        metrics = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        self.assertIn('acme_appliance_rate_limited_total{limit="account_orders"} 2.0', metrics.text)
