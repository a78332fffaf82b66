"""
What an operator sees of a running appliance: syslog over TCP, signed
webhooks (and one that never answers), /metrics, the admin API used to make
a token that certbot then uses, order history, counters across a restart.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from acme import errors as acme_errors
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from .appliance import BIN, LOCAL_CA, POLICIES, Appliance, require_binary
from .collectors import TCPSyslog
from .test_acme_library import Client, new_csr
from .tools import closed_port, free_port, wait_for

SECRET = "webhook-secret-for-tests"
RFC5424 = re.compile(rb"<\d{1,3}>1 \S+ \S+ acme-appliance \S+ \S+ \[acme-appliance@32473 [^\]]*\] .*", re.DOTALL)


class WebhookReceiver:
    """
    An HTTP server that records signed POSTs; with C{hang}, one that
    accepts connections and never answers.
    """

    def __init__(self, case: SynchronousTestCase, *, hang: bool = False) -> None:
        received: list[tuple[bytes, str | None]] = []
        stop = threading.Event()
        self.received, self.stop = received, stop
        # With hang: the bodies of the requests it holds unanswered.
        self.held: list[bytes] = []
        held = self.held

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if hang:
                    held.append(body)
                    stop.wait(60)
                    return
                received.append((body, self.headers.get("X-Signature")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        case.addCleanup(self.close)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]


class Admin:
    def __init__(self, appliance: Appliance) -> None:
        self.base = f"http://127.0.0.1:{appliance.admin_port}"
        with open(os.path.join(appliance.dir, "admin.key")) as f:
            self.headers = {"Authorization": f"Bearer {f.read().strip()}"}

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=10)

    def metrics(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals


def issue(appliance: Appliance, directory: str, name: str = "www.example.com") -> str:
    client = Client(appliance, directory)
    pem, _ = new_csr([name])
    order = client.acme.new_order(pem)
    final = client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=30))
    return str(final.fullchain_pem)


def operations_appliance(case: SynchronousTestCase, webhooks: list[str], syslog: str | None = None) -> Appliance:
    """
    An appliance with the built-in CA, a CA that never answers (policy
    "dead", orders fail after 3 s) and the given notification sinks.
    """
    notify = "[notify]\n" + (f'syslog = "{syslog}"\n' if syslog else "")
    notify += f'webhooks = {json.dumps(webhooks)}\nwebhook_secret = "{SECRET}"\n'
    notify += """
[issuance]
order_deadline = 3
"""

    def extra() -> str:
        # Chosen again with the appliance's own ports when one was taken.
        return (
            notify
            + f"""
[validation]
dns_zone = "dcv.test"
dns_listen_port = {free_port()}
dns_listen_interface = "127.0.0.1"
preflight = false
"""
        )

    cas = (
        LOCAL_CA
        + f"""
[[ca]]
name = "dead"
kind = "acme"
directory = "https://127.0.0.1:{closed_port(case)}/dir"
"""
    )
    policies = (
        POLICIES
        + """
[[policy]]
name = "dead"
primary_ca = "dead"
validation = "dns-cname"
allowed_domains = ["dead.test", "*.dead.test"]
"""
    )
    appliance = Appliance(case, extra=extra, cas=cas, policies=policies)
    appliance.start()
    return appliance


class OperationsTests(SynchronousTestCase):
    def start(self, webhooks: list[str], syslog: str | None = None) -> Appliance:
        return operations_appliance(self, webhooks, syslog)

    def test_notifications_metrics_and_restart(self) -> None:
        syslog = TCPSyslog(self)
        hook = WebhookReceiver(self)
        appliance = self.start([hook.url], syslog=f"tcp:127.0.0.1:{syslog.port}")
        admin = Admin(appliance)
        directory = appliance.directory("shop")
        for _ in range(3):
            issue(appliance, directory)
        # A failure: the "dead" policy's CA never answers; the order fails
        # at its (short) deadline.
        client = Client(appliance, appliance.directory("dead"))
        pem, _ = new_csr(["www.dead.test"])
        # The order fails at its deadline (IssuanceError), long before the
        # client's (TimeoutError).
        with self.assertRaises(acme_errors.IssuanceError):
            client.acme.finalize_order(
                client.acme.new_order(pem), datetime.datetime.now() + datetime.timedelta(seconds=30)
            )
        wait_for(lambda: any(b"event=order.failed" in m for m in syslog.messages()), 10, "order.failed in syslog")
        wait_for(
            lambda: len([m for m in syslog.messages() if b"event=certificate.issued" in m]) == 3,
            10,
            f"3 certificate.issued in syslog: {syslog.data[-2000:]!r}",
        )
        for message in syslog.messages():
            self.assertIsNotNone(RFC5424.fullmatch(message), message)
        # The CLI's token create reached syslog and the webhook too, from
        # its own process.
        self.assertTrue(any(b"event=token.created" in m and b"policy=shop" in m for m in syslog.messages()))
        wait_for(lambda: any(e["event"] == "token.created" for e in hook.events()), 10, "token.created at the webhook")
        wait_for(
            lambda: len([e for e in hook.events() if e["event"] == "certificate.issued"]) == 3,
            10,
            "3 certificate.issued at the webhook",
        )
        for body, signature in hook.received:
            self.assertEqual(signature, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())
        metrics = admin.metrics()
        self.assertEqual(metrics["acme_appliance_certificates_issued_total"], 3)
        # pending, processing, valid (3 times); pending, processing, invalid.
        self.assertEqual(metrics["acme_appliance_orders_total"], 12)
        # Counters survive a restart.
        appliance.stop()
        appliance.start()
        wait_for(
            lambda: Admin(appliance).metrics()["acme_appliance_certificates_issued_total"] == 3,
            10,
            "the issued counter restored after the restart",
        )

    def test_a_dead_webhook_does_not_hold_issuance_up(self) -> None:
        """
        A webhook that takes a request and never answers: every issuance
        completes and the live webhook gets every event while the dead
        one's queue still holds them (it is stuck on its first event).
        """
        dead = WebhookReceiver(self, hang=True)
        live = WebhookReceiver(self)
        appliance = self.start([dead.url, live.url])
        directory = appliance.directory("shop")
        for name in ("www.example.com", "api.example.com", "www.example.com", "api.example.com"):
            self.assertIn("BEGIN CERTIFICATE", issue(appliance, directory, name))
        wait_for(
            lambda: len([e for e in live.events() if e["event"] == "certificate.issued"]) == 4,
            10,
            "4 certificate.issued at the live webhook",
        )
        wait_for(lambda: dead.held, 10, "the dead webhook to be sent its first event")
        # It holds (or was sent again after the appliance's timeout) only
        # what came before the first issuance: the CLI's token.created and
        # the appliance's first order.created.  No issuance waited for its
        # events to be delivered or dropped.
        held = [json.loads(body)["event"] for body in dead.held]
        self.assertLessEqual(set(held), {"token.created", "order.created"}, held)

    def test_admin_token_then_certbot_then_history(self) -> None:
        certbot = require_binary(self, "certbot", os.path.join(BIN, "certbot"))
        appliance = self.start([])
        admin = Admin(appliance)
        self.assertEqual(requests.get(admin.base + "/tokens", timeout=10).status_code, 401)
        created = requests.post(
            admin.base + "/tokens",
            headers=admin.headers,
            timeout=10,
            json={"policy": "shop", "domains": ["api.example.com"]},
        )
        self.assertEqual(created.status_code, 201, created.text)
        token = created.json()
        work = os.path.abspath(self.mktemp())
        hook = os.path.join(work, "hook")
        os.makedirs(work)
        with open(hook, "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(hook, 0o755)
        result = subprocess.run(
            [
                certbot,
                "certonly",
                "--manual",
                "--manual-auth-hook",
                hook,
                "--non-interactive",
                "--agree-tos",
                "--register-unsafely-without-email",
                "--server",
                token["directory_url"],
                "-d",
                "api.example.com",
                "--config-dir",
                f"{work}/config",
                "--work-dir",
                f"{work}/work",
                "--logs-dir",
                f"{work}/logs",
            ],
            env=appliance.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        orders = admin.get(f"/orders?token={token['id']}").json()
        self.assertEqual([o["status"] for o in orders], ["valid"])
        history = admin.get(f"/orders/{orders[0]['id']}").json()["history"]
        self.assertEqual([e["event"] for e in history], ["order.created", "order.processing", "certificate.issued"])
        self.assertEqual(history[-1]["ca"], "builtin")
        listed = admin.get("/tokens").json()
        self.assertEqual([t["id"] for t in listed], [token["id"]])
        self.assertEqual(
            requests.delete(f"{admin.base}/tokens/{token['id']}", headers=admin.headers, timeout=10).status_code, 200
        )
        self.assertEqual(requests.get(token["directory_url"], verify=appliance.tls_cert, timeout=10).status_code, 404)
