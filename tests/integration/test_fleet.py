"""
A fleet through one appliance: one upstream validation for many clients,
tokens that do not wait on each other, and primary/backup failover between
two real Pebbles.
"""

from __future__ import annotations

import datetime
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from .collectors import SyslogCollector
from .test_acme_library import Client, new_csr
from .test_operations import RFC5424, Admin
from .test_pebble import PebbleWorld, unanswered, validations
from .tools import wait_for
from .world import Pebble


def metrics(world: PebbleWorld) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    appliance = world.appliance
    with open(f"{appliance.dir}/admin.key") as f:
        key = f.read().strip()
    response = requests.get(
        f"http://127.0.0.1:{appliance.admin_port}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    response.raise_for_status()
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def obtain(world: PebbleWorld, directory: str, names: list[str], timeout: float = 120) -> tuple[str, Any]:
    """
    One edge box: its own account and key, an order, the chain.
    """
    client = Client(world.appliance, directory)
    key = ec.generate_private_key(ec.SECP256R1())
    pem, _ = new_csr(names, key)
    order = client.acme.new_order(pem)
    final = client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=timeout))
    return final.fullchain_pem, key


class FleetTests(SynchronousTestCase):
    def test_one_validation_for_32_clients(self) -> None:
        """
        32 edge boxes with their own accounts and keys ask for one name at
        once: 32 certificates, one upstream validation.
        """
        world = PebbleWorld(self)
        directory = world.appliance.directory("dns")
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda _: obtain(world, directory, ["fleet.shop.test"]), range(32)))
        public_keys = set()
        for chain, key in results:
            leaf = x509.load_pem_x509_certificates(chain.encode())[0]
            spki = leaf.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            self.assertEqual(
                spki,
                key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            )
            public_keys.add(spki)
        self.assertEqual(len(public_keys), 32)
        # One validation (and one more for each the CA got no answer to).
        retried = unanswered([world.appliance.log()], "fleet.shop.test")
        self.assertEqual(validations(world.pebble.log(), "fleet.shop.test"), 1 + retried, world.pebble.log()[-3000:])
        values = metrics(world)
        self.assertEqual(values[("acme_appliance_certificates_issued_total", (("ca", "pebble"), ("mode", "new")))], 1)
        self.assertEqual(
            values[("acme_appliance_certificates_issued_total", (("ca", "pebble"), ("mode", "reissue")))], 31
        )
        self.assertNotIn("Traceback", world.appliance.log())

    def test_tokens_do_not_wait_on_each_other(self) -> None:
        """
        An order stuck at a CA that never answers (token "slow") does not
        delay another token's order for the same names.
        """
        world = PebbleWorld(self, order_deadline=30)
        slow_client = Client(world.appliance, world.appliance.directory("slow"))
        pem, _ = new_csr(["same.shop.test"])
        slow_order = slow_client.acme.new_order(pem)
        slow_outcome: list[BaseException] = []

        def slow() -> None:
            try:
                slow_client.acme.finalize_order(slow_order, datetime.datetime.now() + datetime.timedelta(seconds=8))
            except acme_errors.Error as e:
                slow_outcome.append(e)

        thread = threading.Thread(target=slow)
        thread.start()
        self.addCleanup(thread.join, 30)
        admin = Admin(world.appliance)

        def slow_status() -> str:
            return str(admin.get(f"/orders/{slow_order.uri.rstrip('/').split('/')[-1]}").json()["status"])

        wait_for(lambda: slow_status() == "processing", 30, "the order through the dead CA to be processing")
        chain, _ = obtain(world, world.appliance.directory("dns"), ["same.shop.test"])
        self.assertIn("BEGIN CERTIFICATE", chain)
        # The other token's order was issued while this one was still
        # processing at the dead CA (its deadline is 30 s away).
        self.assertEqual(slow_status(), "processing")
        thread.join(30)
        # The slow client gave up polling; the order was never issued.
        self.assertEqual([type(e) for e in slow_outcome], [acme_errors.TimeoutError])


class FailoverWorld(PebbleWorld):
    """
    Two Pebbles, primary and backup, and a syslog collector.
    """

    backup: Pebble

    def __init__(self, case: SynchronousTestCase) -> None:
        self.syslog = SyslogCollector(case)
        super().__init__(case, backup=True, syslog=f"udp:127.0.0.1:{self.syslog.port}", order_deadline=25)


class FailoverTests(SynchronousTestCase):
    def test_primary_down_before_the_order(self) -> None:
        world = FailoverWorld(self)
        world.pebble.stop()
        chain, _ = obtain(world, world.appliance.directory("dns"), ["failover.shop.test"])
        world.verify_chain(chain, world.backup.root_pem())
        failovers = wait_for(
            lambda: [m for m in world.syslog.events() if "event=ca.failover" in m], 5, "ca.failover in syslog"
        )
        self.assertEqual(len(failovers), 1, world.syslog.messages)
        self.assertIn("from_ca=pebble", failovers[0])
        self.assertIn("to_ca=backup", failovers[0])
        wait_for(
            lambda: any("event=certificate.issued" in m for m in world.syslog.events()),
            10,
            "certificate.issued in syslog",
        )
        for message in world.syslog.messages:
            self.assertIsNotNone(RFC5424.fullmatch(message.encode()), message)
        values = metrics(world)
        self.assertEqual(values[("acme_appliance_ca_failovers_total", (("from_ca", "pebble"), ("to_ca", "backup")))], 1)

    def test_primary_down_during_validation(self) -> None:
        """
        The primary dies while the appliance waits for its validation: the
        backup issues.
        """
        world = FailoverWorld(self)
        directory = world.appliance.directory("dns")
        client = Client(world.appliance, directory)
        pem, _ = new_csr(["during.shop.test"])
        order = client.acme.new_order(pem)

        # Stop the primary as soon as it has been asked to validate.
        def stop_on_validation() -> None:
            wait_for(
                lambda: "event=validation.started" in "".join(world.syslog.messages),
                60,
                "validation.started in syslog",
                interval=0.005,
            )
            world.pebble.stop()

        watcher = threading.Thread(target=stop_on_validation)
        watcher.start()
        final = client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=120))
        watcher.join(5)
        world.verify_chain(final.fullchain_pem, world.backup.root_pem())

    def test_both_down_then_back(self) -> None:
        world = FailoverWorld(self)
        world.pebble.stop()
        world.backup.stop()
        client = Client(world.appliance, world.appliance.directory("dns"))
        pem, _ = new_csr(["down.shop.test"])
        order = client.acme.new_order(pem)
        # The order fails (IssuanceError), not the client's patience
        # (TimeoutError).
        with self.assertRaises(acme_errors.IssuanceError):
            client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=90))
        body = client.raw(order.uri, None).json()
        self.assertEqual(body["status"], "invalid")
        self.assertIn("no CA could issue", body["error"]["detail"])
        wait_for(lambda: any("event=order.failed" in m for m in world.syslog.events()), 5, "order.failed in syslog")
        with open(f"{world.appliance.dir}/admin.key") as f:
            key = f.read().strip()
        health = requests.get(
            f"http://127.0.0.1:{world.appliance.admin_port}/health",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
        self.assertEqual(health["status"], "ok")
        self.assertFalse(health["cas"]["pebble"]["up"])
        # Back: the same process issues again.
        world.backup.start()
        chain, _ = obtain(world, world.appliance.directory("dns"), ["back.shop.test"])
        world.verify_chain(chain, world.backup.root_pem())
        self.assertNotIn("Traceback", world.appliance.log())
