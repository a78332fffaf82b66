"""
The real appliance (twistd) on Redis storage: the CLI and the daemon share
it, a certificate is issued, and everything is still there after a
restart.
"""

from __future__ import annotations

import datetime
import os

from twisted.trial.unittest import SynchronousTestCase

from .appliance import Appliance
from .test_acme_library import Client, new_csr
from .world import RedisServer


class RedisApplianceTests(SynchronousTestCase):
    def test_issue_then_restart(self) -> None:
        redis = RedisServer(self, os.path.join(self.mktemp(), "redis"), password="appliance-Pa55")
        redis.start()
        appliance = Appliance(self, storage=redis.url(db=1))
        appliance.start()
        directory = appliance.directory("shop")  # the CLI writes the token to Redis
        client = Client(appliance, directory)
        pem, _ = new_csr(["www.example.com"])
        order = client.acme.new_order(pem)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
        order = client.acme.finalize_order(order, deadline)
        self.assertIn("BEGIN CERTIFICATE", order.fullchain_pem)

        appliance.stop()
        appliance.start()

        # The token, the account and the order are all still there.
        again = client.acme.query_registration(client.regr)
        self.assertEqual(again.body.status, "valid")
        stored = client.raw(order.uri, None)
        self.assertEqual((stored.status_code, stored.json()["status"]), (200, "valid"), stored.text)
        certificate = client.raw(stored.json()["certificate"], None)
        self.assertEqual(certificate.status_code, 200, certificate.text)
        self.assertEqual(certificate.text, order.fullchain_pem)
        self.assertFalse(os.path.exists(os.path.join(appliance.dir, "state.db")))
        log = appliance.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("appliance-Pa55", log)
