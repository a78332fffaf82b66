"""
The dashboard in headless Chromium, after real issuances and a failure: it
loads with no console errors and its charts have data.  The screenshot stays
in the test's temporary directory (a CI artifact).
"""

from __future__ import annotations

import datetime
import os

from acme import errors as acme_errors
from twisted.trial.unittest import SynchronousTestCase

from .browser import render, require_chromium
from .test_acme_library import Client, new_csr
from .test_operations import Admin, issue, operations_appliance


class DashboardTests(SynchronousTestCase):
    def test_dashboard_after_issuances(self) -> None:
        chromium = require_chromium(self)
        appliance = operations_appliance(self, [])
        directory = appliance.directory("shop")
        for name in ("www.example.com", "www.example.com", "api.example.com"):
            issue(appliance, directory, name)
        client = Client(appliance, appliance.directory("dead"))
        pem, _ = new_csr(["www.dead.test"])
        with self.assertRaises(acme_errors.IssuanceError):
            client.acme.finalize_order(
                client.acme.new_order(pem), datetime.datetime.now() + datetime.timedelta(seconds=30)
            )
        admin = Admin(appliance)
        key = admin.headers["Authorization"].split()[1]
        screenshot = os.path.join(os.path.abspath(self.mktemp()) + ".png")
        page = render(chromium, f"{admin.base}/?key={key}", screenshot)
        print(f"\ndashboard screenshot: {screenshot}")
        self.assertEqual(page.console, [])
        self.assertIn('data-state="ready"', page.dom, page.dom[:2000])
        charts = int(page.dom.split('data-charts="', 1)[1].split('"', 1)[0])
        self.assertGreaterEqual(charts, 3)
        # The failure, with its reason.  The built-in CA validates nothing,
        # so no validation was performed or avoided (the second
        # www.example.com is issued as new).
        self.assertIn("www.dead.test", page.dom)
        self.assertIn("no CA could issue", page.dom)
        self.assertIn("<td>dead</td>", page.dom)
        self.assertIn('<b id="performed">0</b>', page.dom)
        self.assertIn('<b id="avoided">0</b>', page.dom)
        self.assertGreater(os.path.getsize(screenshot), 10_000)
        # The key never reaches the access log.
        self.assertNotIn(key, appliance.log())

    def test_needs_the_key(self) -> None:
        chromium = require_chromium(self)
        appliance = operations_appliance(self, [])
        admin = Admin(appliance)
        page = render(chromium, f"{admin.base}/", os.path.abspath(self.mktemp()) + ".png")
        self.assertIn("a valid bearer key is required", page.dom)
