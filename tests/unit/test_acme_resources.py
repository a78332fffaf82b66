"""
The RFC 8555 resources the server answers with: plain JSON objects with
the fields of RFC 8555 section 7.1, optional ones left out when empty, and
sent as compact JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.acme import _resources as r
from acme_appliance.acme._paths import DirectoryUrls, resource_url
from acme_appliance.core import rfc3339
from acme_appliance.orders import Account, AccountStatus, Authorization, Order, OrderStatus
from acme_appliance.policy import Profile
from acme_appliance.testing import World

URLS = DirectoryUrls("https://acme.test/", "s3cret")
D = "https://acme.test/acme/s3cret"
ORDER = Order(
    id="o1",
    token_id="t1",
    account_id="a1",
    policy="shop",
    names=("example.com",),
    status=OrderStatus.PENDING,
    created=1_800_000_000.0,
    expires=1_800_086_400.0,
    authz_ids=("z1",),
)
AUTHZ = Authorization(
    id="z1",
    order_id="o1",
    token_id="t1",
    account_id="a1",
    name="example.com",
    wildcard=False,
    expires=1_800_086_400.0,
    validated=1_800_000_000.0,
    challenge_token="tok",
)


class ResourceTests(SynchronousTestCase):
    def test_order_without_optional_fields(self) -> None:
        self.assertEqual(
            r.order(URLS, ORDER),
            {
                "status": "pending",
                "expires": "2027-01-16T08:00:00Z",
                "identifiers": [{"type": "dns", "value": "example.com"}],
                "authorizations": [f"{D}/authz/z1"],
                "finalize": f"{D}/order/o1/finalize",
            },
        )

    def test_order_with_every_field(self) -> None:
        error = {"type": "urn:ietf:params:acme:error:serverInternal", "detail": "no"}
        order = evolve(ORDER, certificate_id="c1", error=error, profile="short", replaces="a.b")
        body = r.order(URLS, order)
        self.assertEqual(
            {k: body[k] for k in ("certificate", "error", "profile", "replaces")},
            {"certificate": f"{D}/cert/c1", "error": error, "profile": "short", "replaces": "a.b"},
        )

    def test_empty_error_left_out(self) -> None:
        order = evolve(ORDER, error={}, profile="")
        self.assertNotIn("error", r.order(URLS, order))
        self.assertNotIn("profile", r.order(URLS, order))

    def test_account(self) -> None:
        key = {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}
        account = Account(
            id="a1", token_id="t1", key=key, thumbprint="tp", status=AccountStatus.VALID, contact=(), created=1.0
        )
        self.assertEqual(r.account(URLS, account), {"status": "valid", "orders": f"{D}/acct/a1/orders", "key": key})
        agreed = evolve(account, contact=("mailto:a@example.com",), terms_agreed=True)
        body = r.account(URLS, agreed)
        self.assertEqual((body["contact"], body["termsOfServiceAgreed"]), (["mailto:a@example.com"], True))

    def test_wildcard_authorization(self) -> None:
        self.assertNotIn("wildcard", r.authorization(URLS, AUTHZ))
        wildcard = evolve(AUTHZ, wildcard=True)
        body = r.authorization(URLS, wildcard)
        self.assertIs(body["wildcard"], True)
        self.assertEqual(
            body["challenges"],
            [
                {
                    "type": "dns-01",
                    "url": f"{D}/chall/z1/dns-01",
                    "status": "valid",
                    "token": "tok",
                    "validated": "2027-01-15T08:00:00Z",
                }
            ],
        )

    def test_directory_meta(self) -> None:
        self.assertEqual(r.directory(URLS, None)["meta"], {"externalAccountRequired": False})
        meta = r.directory(URLS, "https://tos", (Profile("short", "Short-lived"),))["meta"]
        self.assertEqual(
            meta,
            {"termsOfService": "https://tos", "externalAccountRequired": False, "profiles": {"short": "Short-lived"}},
        )

    def test_orders_list(self) -> None:
        self.assertEqual(r.orders_list(URLS, ["o1", "o2"]), {"orders": [f"{D}/order/o1", f"{D}/order/o2"]})


class UrlAndTimeTests(SynchronousTestCase):
    def test_directory_urls(self) -> None:
        for base in ("https://acme.test", "https://acme.test/"):
            urls = DirectoryUrls(base, "s3cret")
            self.assertEqual(urls(), D)
            self.assertEqual(urls("directory"), f"{D}/directory")
            self.assertEqual(urls("chall", "z1", "dns-01"), resource_url(base, "s3cret", "chall", "z1", "dns-01"))
        self.assertEqual(DirectoryUrls("https://acme.test/", "s3cret"), URLS)

    def test_times_as_datetime_formats_them(self) -> None:
        """
        The per-second cache formats every time as C{datetime} does,
        rounding to the microsecond the same way, in either order.
        """
        samples = [0.0, -1.5, -0.0000004, 1_800_000_000.9999996, 1_800_000_000.0000005, 1_800_000_001.25]
        samples += [1_700_000_000 + i * 0.3337 for i in range(50)] + [1_700_000_100 - i * 0.77 for i in range(50)]
        for seconds in samples:
            moment = datetime.fromtimestamp(seconds, UTC)
            self.assertEqual(rfc3339(seconds), moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), seconds)
            self.assertEqual(rfc3339(seconds, fraction=False), moment.strftime("%Y-%m-%dT%H:%M:%SZ"), seconds)

    def test_times_remembered(self) -> None:
        before = r.rfc3339.cache_info().hits
        self.assertEqual(r.rfc3339(1_800_000_000.9), "2027-01-15T08:00:00Z")
        self.assertEqual(r.rfc3339(1_800_000_000.9), "2027-01-15T08:00:00Z")
        self.assertEqual(r.rfc3339(1_800_000_001.0), "2027-01-15T08:00:01Z")
        self.assertEqual(r.rfc3339.cache_info().hits, before + 1)


class CompactJsonTests(SynchronousTestCase):
    def test_responses_are_compact(self) -> None:
        world = World(self)
        client = world.client()
        registered = client.register()
        problem = client.post(client.directory["newOrder"], {"identifiers": []})
        for response in (client.get(client.directory_url), registered, problem):
            self.assertEqual(response.body, json.dumps(response.json(), separators=(",", ":")).encode())
