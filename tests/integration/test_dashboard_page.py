"""
The dashboard page alone in headless Chromium, against a static
C{dashboard.json} served from the test's temporary directory: it renders
its charts, escapes what it shows, reports a failing data source, and fetches
nothing from elsewhere.  The screenshots stay in the tests' temporary
directories.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .browser import render, require_chromium

HOURS = [f"2026-11-23T{hour:02d}:00:00Z" for hour in range(23, 24)] + [
    f"2026-11-24T{hour:02d}:00:00Z" for hour in range(23)
]

SAMPLE: dict[str, Any] = {
    "generated": "2026-11-24T23:00:00Z",
    "issued_per_hour": [
        {"hour": hour, "new": (i * 7) % 5, "reissue": (i * 3) % 9, "failed": 1 if i % 6 == 0 else 0}
        for i, hour in enumerate(HOURS)
    ],
    "by_ca": [
        {"ca": "le", "issued": 120, "failed": 3},
        {"ca": "zerossl", "issued": 41, "failed": 7},
        {"ca": "internal", "issued": 12, "failed": 0},
    ],
    "validations": {"performed": 3, "avoided": 93},
    "latency": {"issuance_p50": 1.2, "issuance_p95": 3.4, "validation_p50": 0.8, "validation_p95": 1.9},
    "cas": [
        {"ca": "le", "up": True, "failures": 0, "down_since": None},
        {"ca": "zerossl", "up": False, "failures": 4, "down_since": "2026-11-24T21:40:00Z"},
        {"ca": "internal", "up": True, "failures": 1, "down_since": None},
    ],
    "recent_failures": [
        {
            "time": "2026-11-24T22:59:00Z",
            "order_id": "abc",
            "names": ["a.example", "www.a.example"],
            "ca": "le",
            "error": "dns: NXDOMAIN for _acme-challenge.a.example",
        },
        {
            "time": "2026-11-24T22:31:12Z",
            "order_id": "x<b>y</b>",
            "names": ["<img src=x onerror=alert(1)>"],
            "ca": "zerossl",
            "error": "rateLimited: <script>alert(1)</script> too many orders",
        },
        {
            "time": "2026-11-24T21:40:00Z",
            "order_id": "def",
            "names": ["shop.example"],
            "ca": "zerossl",
            "error": "connection refused",
        },
    ],
}

EMPTY: dict[str, Any] = {
    "generated": "2026-11-24T23:00:00Z",
    "issued_per_hour": [],
    "by_ca": [],
    "validations": {"performed": 0, "avoided": 0},
    "latency": {"issuance_p50": None, "issuance_p95": None, "validation_p50": None, "validation_p95": None},
    "cas": [],
    "recent_failures": [],
}


def dashboard_html() -> bytes:
    return importlib.resources.files("acme_appliance.stats").joinpath("dashboard.html").read_bytes()


def serve(case: SynchronousTestCase, routes: dict[str, tuple[int, str, bytes]]) -> str:
    """
    Serve C{routes} (path -> status, content type, body) on 127.0.0.1 in a
    thread until C{case}'s cleanup; return the base URL.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, kind, body = routes.get(self.path.split("?", 1)[0], (404, "text/plain", b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="dashboard-page-http", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    case.addCleanup(stop)
    return f"http://127.0.0.1:{server.server_address[1]}"


class DashboardPageTests(SynchronousTestCase):
    def page(self, status: int, data: object) -> tuple[str, str]:
        """
        Write the page and its C{dashboard.json} to a temporary directory,
        serve it, and return the dashboard's URL and where its screenshot
        goes.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "dashboard.html"), "wb") as f:
            f.write(dashboard_html())
        body = json.dumps(data).encode() if status == 200 else b'{"error": "internal"}'
        with open(os.path.join(directory, "dashboard.json"), "wb") as f:
            f.write(body)
        files = {}
        for name in ("dashboard.html", "dashboard.json"):
            with open(os.path.join(directory, name), "rb") as f:
                files[name] = f.read()
        base = serve(
            self,
            {
                "/dashboard.html": (200, "text/html; charset=utf-8", files["dashboard.html"]),
                "/dashboard.json": (status, "application/json", files["dashboard.json"]),
            },
        )
        return f"{base}/dashboard.html", os.path.join(directory, "dashboard.png")

    def charts(self, dom: str) -> int:
        found = re.search(r'data-charts="(\d+)"', dom)
        self.assertIsNotNone(found, dom[:2000])
        assert found is not None
        return int(found.group(1))

    def test_renders_the_data(self) -> None:
        chromium = require_chromium(self)
        url, screenshot = self.page(200, SAMPLE)
        page = render(chromium, url, screenshot)
        print(f"\ndashboard screenshot: {page.screenshot}")
        self.assertEqual(page.console, [])
        self.assertIn('data-state="ready"', page.dom, page.dom[:2000])
        self.assertGreaterEqual(self.charts(page.dom), 3)
        # Failures, health and the validation pair.
        self.assertIn("dns: NXDOMAIN for _acme-challenge.a.example", page.dom)
        self.assertIn("a.example, www.a.example", page.dom)
        self.assertIn("down since", page.dom)
        self.assertIn('<b id="avoided">93</b>', page.dom)
        self.assertIn("3 validations served 96 certificates", page.dom)
        self.assertIn("3.4", page.dom)
        # The data is text, never markup.
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page.dom)
        self.assertNotIn("<script>alert(1)", page.dom)
        self.assertNotIn("<img src=x", page.dom)
        self.assertNotIn("<b>y</b>", page.dom)
        self.assertTrue(os.path.exists(screenshot))
        self.assertGreater(os.path.getsize(screenshot), 10_000)

    def test_no_data_yet(self) -> None:
        """
        An appliance that issued nothing: the page is ready, draws no chart,
        says so, and shows null latencies as a dash.
        """
        chromium = require_chromium(self)
        url, screenshot = self.page(200, copy.deepcopy(EMPTY))
        page = render(chromium, url, screenshot)
        self.assertEqual(page.console, [])
        self.assertIn('data-state="ready"', page.dom, page.dom[:2000])
        self.assertEqual(self.charts(page.dom), 0)
        self.assertIn("no data yet", page.dom)
        self.assertIn('<b id="issuance-p50">–</b>', page.dom)
        self.assertIn('<b id="validation-p95">–</b>', page.dom)

    def test_data_error(self) -> None:
        """
        When C{dashboard.json} answers 500 the page says so in a visible
        banner and its state is C{error}.
        """
        chromium = require_chromium(self)
        url, screenshot = self.page(500, None)
        page = render(chromium, url, screenshot)
        self.assertIn('data-state="error"', page.dom, page.dom[:2000])
        banner = re.search(r'<div id="banner"[^>]*>([^<]*)</div>', page.dom)
        self.assertIsNotNone(banner, page.dom[:2000])
        assert banner is not None
        self.assertIn("500", banner.group(1))
        self.assertNotIn("display: none", banner.group(0))
        # Only the browser's own note of the failed request, never the page's.
        self.assertEqual([line for line in page.console if "Failed to load resource" not in line], [])

    def test_fetches_nothing_from_elsewhere(self) -> None:
        """
        The page is self-contained: no URL with a scheme, so no CDN, font or
        script from anywhere.
        """
        html = dashboard_html().decode("utf-8")
        self.assertEqual(re.findall(r"(?i)https?://\S*", html), [])
        self.assertEqual(re.findall(r"(?i)(?:src|href)\s*=\s*[\"']?//", html), [])
        self.assertNotIn("@import", html)
