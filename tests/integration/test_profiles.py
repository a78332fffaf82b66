"""
Certificate profiles (draft-ietf-acme-profiles) with certbot's C{acme}
library against the real appliance: the directory lists them, a
C{shortlived} certificate of the built-in CA lives 6 days, an unknown
profile gets C{invalidProfile}.  Pebble 2.4 (Debian) has no profiles, so
the upstream pass-through is tested with a second appliance as the
C{acme} CA of the first.
"""

from __future__ import annotations

import datetime

from acme import errors, messages
from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca.local import BACKDATE

from .appliance import POLICIES, Appliance
from .test_acme_library import Client, new_csr
from .tools import free_port

DESCRIPTIONS = """
[profiles]
classic = "90-day certificates"
shortlived = "6-day certificates"
"""

BUILTIN = """
[[ca]]
name = "builtin"
kind = "local"
profiles = { shortlived = 6 }
"""

# The usual policies, "shop" offering classic (its default) and shortlived.
DOMAINS = 'allowed_domains = ["example.com", "*.example.com"]\n'
SHOP = POLICIES.replace(DOMAINS, DOMAINS + 'profiles = ["classic", "shortlived"]\n', 1)

DAY = datetime.timedelta(days=1)
INVALID_PROFILE = "urn:ietf:params:acme:error:invalidProfile"


def order(client: Client, name: str, profile: str | None = None) -> messages.OrderResource:
    """Order a certificate for C{name} with C{profile} and wait for it."""
    pem, _ = new_csr([name])
    created = client.acme.new_order(pem, profile=profile)
    return client.acme.finalize_order(created, datetime.datetime.now() + datetime.timedelta(seconds=30))


def leaf(resource: messages.OrderResource) -> x509.Certificate:
    return x509.load_pem_x509_certificate(resource.fullchain_pem.encode())


def lifetime(resource: messages.OrderResource) -> datetime.timedelta:
    """How long the leaf lives from its issue (leaves start C{BACKDATE} early)."""
    certificate = leaf(resource)
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc - BACKDATE


class BuiltinCATests(SynchronousTestCase):
    def setUp(self) -> None:
        self.appliance = Appliance(self, extra=DESCRIPTIONS, cas=BUILTIN, policies=SHOP)
        self.appliance.start()
        self.client = Client(self.appliance, self.appliance.directory("shop"))

    def tearDown(self) -> None:
        self.assertNotIn("Traceback", self.appliance.log())

    def test_directory_lists_the_profiles(self) -> None:
        self.assertEqual(
            self.client.directory.meta.profiles, {"classic": "90-day certificates", "shortlived": "6-day certificates"}
        )

    def test_shortlived_lives_six_days(self) -> None:
        final = order(self.client, "www.example.com", "shortlived")
        self.assertEqual(final.body.profile, "shortlived")
        self.assertEqual(lifetime(final), 6 * DAY)

    def test_default_profile(self) -> None:
        final = order(self.client, "www.example.com")
        self.assertEqual(final.body.profile, "classic")
        self.assertEqual(lifetime(final), 90 * DAY)

    def test_unknown_profile(self) -> None:
        pem, _ = new_csr(["www.example.com"])
        with self.assertRaises(messages.Error) as raised:
            self.client.acme.new_order(pem, profile="tlsclient")
        # The acme library's code is None for types it does not know.
        self.assertEqual(raised.exception.typ, INVALID_PROFILE)
        self.assertIn("choose one of: classic, shortlived", str(raised.exception.detail))


class UpstreamPassThroughTests(SynchronousTestCase):
    """
    A downstream appliance whose primary CA is an upstream appliance (with
    the built-in CA's C{shortlived} of 6 days) and whose backup is its own
    local CA (C{backup}, 90 days for every profile).
    """

    def setUp(self) -> None:
        self.upstream = Appliance(self, extra=DESCRIPTIONS, cas=BUILTIN, policies=SHOP)
        self.upstream.start()
        cas = f"""
[[ca]]
name = "up"
kind = "acme"
directory = "{self.upstream.directory("shop")}"
ca_bundle = "{self.upstream.tls_cert}"

[[ca]]
name = "backup"
kind = "local"
"""
        policies = """
[[policy]]
name = "shop"
primary_ca = "up"
backup_ca = "backup"
validation = "dns-cname"
allowed_domains = ["example.com", "*.example.com"]
profiles = ["classic", "shortlived", "tlsserver"]

[[policy]]
name = "upstream-only"
primary_ca = "up"
validation = "dns-cname"
allowed_domains = ["example.com", "*.example.com"]
profiles = ["tlsserver"]
"""

        def extra() -> str:
            return f"""
[validation]
dns_zone = "dcv.test"
dns_listen_port = {free_port()}
dns_listen_interface = "127.0.0.1"
preflight = false
"""

        self.appliance = Appliance(self, extra=extra, cas=cas, policies=policies)
        self.appliance.start()

    def tearDown(self) -> None:
        self.assertNotIn("Traceback", self.appliance.log())
        self.assertNotIn("Traceback", self.upstream.log())

    def issuer(self, resource: messages.OrderResource) -> str:
        return leaf(resource).issuer.rfc4514_string()

    def test_profile_passed_upstream(self) -> None:
        """The upstream lists C{shortlived}: it issues, 6 days."""
        client = Client(self.appliance, self.appliance.directory("shop"))
        final = order(client, "www.example.com", "shortlived")
        self.assertEqual(lifetime(final), 6 * DAY)
        self.assertIn("builtin", self.issuer(final))

    def test_profile_only_the_backup_has(self) -> None:
        """The upstream does not list C{tlsserver}: the local backup issues it."""
        client = Client(self.appliance, self.appliance.directory("shop"))
        final = order(client, "www.example.com", "tlsserver")
        self.assertEqual(final.body.profile, "tlsserver")
        self.assertIn("backup", self.issuer(final))
        self.assertEqual(lifetime(final), 90 * DAY)

    def test_no_ca_has_the_profile(self) -> None:
        """Without a backup, the order fails with C{invalidProfile} naming the profile and the CA."""
        client = Client(self.appliance, self.appliance.directory("upstream-only"))
        with self.assertRaises(errors.IssuanceError) as raised:
            order(client, "www.example.com")
        error = raised.exception.error
        self.assertEqual(error.typ, INVALID_PROFILE)
        self.assertEqual(error.detail, "no CA of this policy offers profile 'tlsserver' (asked: up)")
