"""
Certificates from a real upstream CA: Pebble, validating through unbound
(CNAME delegation into the appliance's dcv zone) and nginx (forwarding to
the appliance's file proxy).  The ACME clients never see a challenge.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import time
from collections.abc import Iterable

from acme import errors as acme_errors
from twisted.trial.unittest import SynchronousTestCase

from .appliance import BIN, Appliance, require_binary
from .collectors import SyslogCollector
from .test_acme_library import Client, new_csr
from .tools import closed_port, free_port, start_retrying, wait_for
from .world import DCV_ZONE, DELEGATED, STALE_NAME, Nginx, Pebble, Unbound, dig

EAB_KID = "kid-1"
STALE_VALUE = "an-old-validation-value-left-behind-by-someone"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


class PebbleWorld:
    """
    unbound + nginx + Pebble (+ an EAB-requiring Pebble) + the appliance.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        *,
        eab: bool = False,
        backup: bool = False,
        syslog: str | None = None,
        order_deadline: float = 120,
        stale: tuple[str, ...] = (),
    ) -> None:
        """
        @param stale: names whose C{_acme-challenge} the CA's resolver sees
            as an old TXT value (L{STALE_VALUE}), where the appliance's
            resolver sees the CNAME into the dcv zone.
        """
        self.case = case
        self.eab, self.with_backup, self.stale = eab, backup, stale
        self.syslog_sink, self.order_deadline = syslog, order_deadline
        start_retrying(self._start, "the Pebble world")

    def _start(self) -> None:
        """
        Choose ports, start everything.

        @raise AddressInUse: a port was taken meanwhile; the caller starts
            again from scratch (in a new directory, with new ports).
        """
        case = self.case
        self.dir = os.path.abspath(case.mktemp())
        os.makedirs(self.dir)
        self.dns_port = free_port()
        self.fileproxy_port = free_port()
        self.unbound = Unbound(case, self.dir, dcv_port=self.dns_port)
        self.unbound.start()
        # The CA's own resolver: the same zone, except that the stale names
        # still have an old TXT value instead of the CNAME.
        self.ca_resolver = self.unbound
        if self.stale:
            self.ca_resolver = Unbound(
                case,
                self.dir,
                dcv_port=self.dns_port,
                delegated=tuple(n for n in DELEGATED if n not in self.stale),
                txt={f"_acme-challenge.{n}": STALE_VALUE for n in self.stale},
                name="unbound-ca",
            )
            self.ca_resolver.start()
        self.nginx = Nginx(case, self.dir, fileproxy_port=self.fileproxy_port)
        self.nginx.start()
        self.pebble = Pebble(
            case,
            self.dir,
            dns_server=self.ca_resolver.address,
            http_port=self.nginx.port,
            eab_keys={EAB_KID: EAB_KEY} if self.eab else None,
        )
        self.pebble.start()
        self.backup: Pebble | None = None
        if self.with_backup:
            self.backup = Pebble(
                case, self.dir, dns_server=self.ca_resolver.address, http_port=self.nginx.port, name="backup"
            )
            self.backup.start()
        self.appliance = Appliance(case, extra=self._validation_config(), cas=self._cas(), policies=self._policies())
        self.appliance.start_once()

    def _cas(self) -> str:
        ca = f"""
[[ca]]
name = "pebble"
kind = "acme"
directory = "{self.pebble.directory_url}"
ca_bundle = "{self.pebble.tls_ca}"
contact = ["mailto:ops@example.net"]
"""
        if self.eab:
            ca += f'eab_kid = "{EAB_KID}"\neab_hmac_key = "{EAB_KEY}"\n'
        if self.backup is not None:
            ca += f"""
[[ca]]
name = "backup"
kind = "acme"
directory = "{self.backup.directory_url}"
ca_bundle = "{self.backup.tls_ca}"
"""
        # A CA that never answers (connections refused): orders through it
        # are slow to fail.
        return (
            ca
            + f"""
[[ca]]
name = "dead"
kind = "acme"
directory = "https://127.0.0.1:{closed_port(self.case)}/dir"
"""
        )

    def _validation_config(self) -> str:
        notify = f'[notify]\nsyslog = "{self.syslog_sink}"\n' if self.syslog_sink else ""
        return f"""
[validation]
fileproxy_listen = "tcp:{self.fileproxy_port}:interface=127.0.0.1"
dns_zone = "{DCV_ZONE}"
dns_listen_port = {self.dns_port}
dns_listen_interface = "127.0.0.1"
dns_nameservers = ["ns1.{DCV_ZONE}"]
resolver = "{self.unbound.address}"
preflight_http_port = {self.nginx.port}
# The customer names resolve to loopback, where the test's nginx listens.
preflight_allow_private = true

[issuance]
order_deadline = {self.order_deadline}

{notify}
"""

    def _policies(self) -> str:
        backup_line = 'backup_ca = "backup"' if self.with_backup else ""
        return f"""
[[policy]]
name = "dns"
primary_ca = "pebble"
{backup_line}
validation = "dns-cname"
allowed_domains = ["shop.test", "*.shop.test"]

[[policy]]
name = "files"
primary_ca = "pebble"
{backup_line}
validation = "file-proxy"
allowed_domains = ["shop.test", "*.shop.test"]

[[policy]]
name = "slow"
primary_ca = "dead"
validation = "dns-cname"
allowed_domains = ["shop.test", "*.shop.test"]
"""

    def verify_chain(self, chain_pem: str, root_pem: str) -> None:
        """
        Check that C{chain_pem} (leaf first) leads to C{root_pem}, with openssl.
        """
        openssl = require_binary(self.case, "openssl")
        path = os.path.join(self.dir, f"verify-{time.monotonic_ns()}")
        certificates = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", chain_pem, re.DOTALL)
        for suffix, text in (("root", root_pem), ("leaf", certificates[0]), ("chain", "".join(certificates[1:]))):
            with open(f"{path}.{suffix}", "w") as f:
                f.write(text)
        result = subprocess.run(
            [openssl, "verify", "-CAfile", f"{path}.root", "-untrusted", f"{path}.chain", f"{path}.leaf"],
            capture_output=True,
            text=True,
        )
        self.case.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def dcv_txt(self, name: str) -> list[str]:
        out = dig(self.dns_port, f"{name}.{DCV_ZONE}", "TXT", "+norecurse", "+noall", "+answer")
        return [line for line in out.splitlines() if "TXT" in line]


def validations(pebble_log: str, name: str) -> int:
    """
    How many validations of the identifier C{name} Pebble started.
    """
    return sum(
        1 for line in pebble_log.splitlines() if "Pulled a task from the Tasks queue" in line and f'"{name}"' in line
    )


def unanswered(appliance_logs: Iterable[str], name: str) -> int:
    """
    How many validations of C{name} the appliances (their C{twistd.log}s)
    did again because the CA got no answer (its resolver timed out).
    """
    return sum(log.count(f"got no answer when it validated ({name}:") for log in appliance_logs)


class CertbotThroughPebbleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.certbot = require_binary(self, "certbot", os.path.join(BIN, "certbot"))
        self.openssl = require_binary(self, "openssl")
        self.world = PebbleWorld(self)
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        self.hook = os.path.join(self.work, "hook")
        with open(self.hook, "w") as f:
            f.write(f"#!/bin/sh\necho called >> {self.work}/hook-called\nexit 1\n")
        os.chmod(self.hook, 0o755)

    def tearDown(self) -> None:
        self.assertFalse(os.path.exists(f"{self.work}/hook-called"), "certbot was asked to solve a challenge")
        self.assertNotIn("Traceback", self.world.appliance.log())

    def certonly(self, policy: str, *names: str) -> str:
        directory = self.directory = self.world.appliance.directory(policy)
        args = [
            self.certbot,
            "certonly",
            "--manual",
            "--manual-auth-hook",
            self.hook,
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--server",
            directory,
            "--cert-name",
            policy,
            *self.dirs(),
        ]
        for name in names:
            args += ["-d", name]
        result = subprocess.run(args, env=self.world.appliance.env(), capture_output=True, text=True, timeout=180)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr + self.world.appliance.log()[-3000:])
        return os.path.join(self.work, "config", "live", policy)

    def dirs(self) -> list[str]:
        """
        certbot's configuration, work and log directories in this test's.
        """
        return [f"--{kind}-dir={self.work}/{kind}" for kind in ("config", "work", "logs")]

    def verify(self, live: str) -> None:
        root = os.path.join(self.work, "pebble-root.pem")
        with open(root, "w") as f:
            f.write(self.world.pebble.root_pem())
        result = subprocess.run(
            [self.openssl, "verify", "-CAfile", root, "-untrusted", f"{live}/chain.pem", f"{live}/cert.pem"],
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_dns_cname_wildcard_and_base(self) -> None:
        live = self.certonly("dns", "shop.test", "*.shop.test")
        self.verify(live)
        # The wildcard and its base name needed two TXT values at once at
        # shop.test.dcv.test; both are gone now.
        self.assertEqual(self.world.dcv_txt("shop.test"), [])
        # Pebble validated both authorizations (the base name's and the
        # wildcard's, both for the identifier shop.test) itself, over DNS:
        # nothing fetched a file for shop.test through nginx.
        log = self.world.pebble.log()
        self.assertEqual(validations(log, "shop.test"), 2, log[-3000:])
        self.assertEqual(log.count("set VALID by completed challenge"), 2, log[-3000:])
        self.assertNotIn("shop.test ", [line[: len("shop.test ")] for line in self.world.nginx.access().splitlines()])

    def test_file_proxy(self) -> None:
        live = self.certonly("files", "www.shop.test", "api.shop.test")
        self.verify(live)
        # Revocation goes through to the CA that issued the certificate.
        result = subprocess.run(
            [
                self.certbot,
                "revoke",
                "--non-interactive",
                "--no-delete-after-revoke",
                "--server",
                self.directory,
                "--cert-path",
                f"{live}/cert.pem",
                "--key-path",
                f"{live}/privkey.pem",
                *self.dirs(),
            ],
            env=self.world.appliance.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr + self.world.appliance.log()[-3000:])
        self.assertIn("CA pebble: certificate revoked", self.world.appliance.log())
        access = self.world.nginx.access()
        for name in ("www.shop.test", "api.shop.test"):
            fetches = [
                line
                for line in access.splitlines()
                if line.startswith(name + " ")
                and "/.well-known/acme-challenge/" in line
                and " 200 " in line
                and "Pebble" in line
            ]
            self.assertTrue(fetches, f"no Pebble fetch for {name} through nginx's proxy rule:\n{access}")


class MissingSetUpTests(SynchronousTestCase):
    """
    A name without the CNAME (or the proxy rule): the order fails fast and
    says which record or rule to add.
    """

    def setUp(self) -> None:
        self.world = PebbleWorld(self)

    def failed_order(self, policy: str, name: str) -> dict[str, object]:
        client = Client(self.world.appliance, self.world.appliance.directory(policy))
        pem, der = new_csr([name])
        order = client.acme.new_order(pem)
        started = time.monotonic()
        with self.assertRaises(acme_errors.Error):
            client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=60))
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 30)
        body = client.raw(order.uri, None).json()
        self.assertEqual(body["status"], "invalid")
        return body["error"]

    def test_missing_cname(self) -> None:
        error = self.failed_order("dns", "bare.shop.test")
        self.assertIn(f"_acme-challenge.bare.shop.test. CNAME bare.shop.test.{DCV_ZONE}.", error["detail"])
        self.assertEqual(error["type"], "urn:ietf:params:acme:error:dns")

    def test_missing_proxy_rule(self) -> None:
        error = self.failed_order("files", "bare.shop.test")
        self.assertIn("http://bare.shop.test/.well-known/acme-challenge/", str(error["detail"]))
        self.assertIn("file proxy", str(error["detail"]))


class ExternalAccountBindingTests(SynchronousTestCase):
    def test_eab_required_pebble(self) -> None:
        world = PebbleWorld(self, eab=True)
        client = Client(world.appliance, world.appliance.directory("dns"))
        pem, _ = new_csr(["www.shop.test"])
        order = client.acme.new_order(pem)
        final = client.acme.finalize_order(
            order, datetime.datetime.now() + datetime.timedelta(seconds=90), fetch_alternative_chains=True
        )
        self.assertIn("BEGIN CERTIFICATE", final.fullchain_pem)
        # Pebble's alternate chain (to its second root) reaches the client.
        self.assertEqual(len(final.alternative_fullchains_pem), 1)
        world.verify_chain(final.alternative_fullchains_pem[0], world.pebble.root_pem_at(1))


class ValidationFailsAtTheCATests(SynchronousTestCase):
    """
    The preflight passes (the appliance's resolver sees the CNAME) but the
    CA's resolver still has an old TXT value: Pebble's validation fails, and
    the order fails with Pebble's problem, at once, not at its deadline.
    """

    def test_stale_txt_at_the_ca(self) -> None:
        syslog = SyslogCollector(self)
        world = PebbleWorld(self, stale=(STALE_NAME,), syslog=f"udp:127.0.0.1:{syslog.port}", order_deadline=300)
        client = Client(world.appliance, world.appliance.directory("dns"))
        pem, _ = new_csr([STALE_NAME])
        order = client.acme.new_order(pem)
        # Well before the order's deadline: a retried or failed-over
        # validation would still be processing then (TimeoutError).
        with self.assertRaises(acme_errors.IssuanceError):
            client.acme.finalize_order(order, datetime.datetime.now() + datetime.timedelta(seconds=60))
        self.assertEqual(validations(world.pebble.log(), STALE_NAME), 1, world.pebble.log()[-3000:])
        body = client.raw(order.uri, None).json()
        self.assertEqual(body["status"], "invalid")
        # Pebble's own problem, passed on.
        self.assertEqual(body["error"]["type"], "urn:ietf:params:acme:error:unauthorized", body)
        self.assertIn("CA pebble: Correct value not found for DNS challenge", body["error"]["detail"], body)
        failed = wait_for(
            lambda: [m for m in syslog.events() if "event=validation.failed" in m], 10, "validation.failed in syslog"
        )
        self.assertEqual(len(failed), 1, syslog.messages)
        self.assertIn(STALE_NAME, failed[0])
        self.assertTrue(
            wait_for(lambda: any("event=order.failed" in m for m in syslog.events()), 10, "order.failed in syslog")
        )
        self.assertNotIn("Traceback", world.appliance.log())
