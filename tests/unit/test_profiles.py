"""
Certificate profiles (draft-ietf-acme-profiles): the C{[[policy]]
profiles}, the directory's C{meta.profiles}, newOrder's C{profile}, the
local CA's lifetimes per profile, the upstream pass-through and the
failover to a CA that offers the profile.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from attrs import evolve
from cryptography import x509
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca import CAError, ChallengeType, IssuedCertificate, IssueRequest
from acme_appliance.ca.local import LocalCA, LocalCAError
from acme_appliance.ca.upstream import UpstreamAcmeCA
from acme_appliance.config import load_config
from acme_appliance.core import ProblemType
from acme_appliance.issuance._failover import FailoverIssuer
from acme_appliance.issuance._health import CAHealth
from acme_appliance.notify import EventBus
from acme_appliance.orders import Order, OrderStatus
from acme_appliance.policy import Profile
from acme_appliance.storage import MemoryStore, dump_record, load_record
from acme_appliance.testing import (
    RecordingResponder,
    ScriptedAcmeServer,
    ScriptedCA,
    StubAcmeClient,
    World,
    http_over,
    issued,
    make_csr,
    self_signed_pem,
)

from .test_config import ETC, ConfigTestCase, ca_setting, make_tls, policy_setting, setting

PROFILES = (Profile("classic", "90-day certificates"), Profile("shortlived", "6-day certificates"))
DAY = datetime.timedelta(days=1)
OK = "ok"


def with_profiles(world: World, *profiles: Profile, policy: str = "shop") -> None:
    """Give C{policy} of C{world} the C{profiles} (the server and issuance share the mapping)."""
    world.policies[policy] = evolve(world.policies[policy], profiles=profiles)


def order_with(client: StubAcmeClient, names: list[str], **extra: Any) -> Any:
    """C{newOrder} for C{names} with the C{extra} payload fields."""
    identifiers = [{"type": "dns", "value": n} for n in names]
    return client.post(client.directory["newOrder"], {"identifiers": identifiers, **extra})


def lifetime(order: dict[str, Any], client: StubAcmeClient) -> datetime.timedelta:
    """How long the leaf of the valid C{order} lives from its issue (the backdate left out)."""
    leaf = x509.load_pem_x509_certificate(client.post(order["certificate"], None).body)
    return leaf.not_valid_after_utc - leaf.not_valid_before_utc - datetime.timedelta(hours=1)


class ConfigTests(ConfigTestCase):
    def test_policy_profiles(self) -> None:
        """
        The first profile is the default; C{[profiles]} describes them, and
        one without a description is described by its name.
        """

        def change(data: dict[str, Any]) -> None:
            data["policy"][0]["profiles"] = ["classic", "shortlived"]
            data["profiles"] = {"shortlived": "6-day  certificates"}

        policy = self.load(change).policy("shop")
        self.assertEqual(policy.profiles, (Profile("classic", "classic"), Profile("shortlived", "6-day certificates")))
        self.assertEqual(policy.default_profile, "classic")

    def test_no_profiles(self) -> None:
        policy = self.load().policy("shop")
        self.assertEqual(policy.profiles, ())
        self.assertIsNone(policy.default_profile)

    def test_bad_policy_profiles(self) -> None:
        key = 'policy "shop".profiles'
        self.assertProblem(
            policy_setting("profiles", ["Short Lived"]), key, "'Short Lived' is not a valid profile name"
        )
        self.assertProblem(policy_setting("profiles", ["a", "b", "a"]), key, "lists 'a' twice")
        self.assertProblem(policy_setting("profiles", []), key, "must not be empty")
        self.assertProblem(policy_setting("profiles", "shortlived"), key, "expected an array of strings")
        self.assertProblem(policy_setting("profiles", [6]), key, "entry 1: expected a string")

    def test_bad_descriptions(self) -> None:
        self.assertProblem(setting("profiles", "shortlived", 6), "profiles.shortlived", "expected a string")
        self.assertProblem(setting("profiles", "shortlived", " "), "profiles.shortlived", "must not be empty")
        self.assertProblem(setting("profiles", "Short", "x"), "profiles.Short", "not a valid profile name")

        def scalar(data: dict[str, Any]) -> None:
            data["profiles"] = "shortlived"

        self.assertProblem(scalar, "profiles", "expected a table [profiles]")

    def test_local_ca_profiles(self) -> None:
        config = self.load(ca_setting(0, "profiles", {"shortlived": 6, "tiny": 1}))
        self.assertEqual(config.ca("builtin").profiles, (("shortlived", 6), ("tiny", 1)))
        self.assertEqual(config.ca("le").profiles, ())

    def test_bad_ca_profiles(self) -> None:
        key = 'ca "builtin".profiles'
        self.assertProblem(ca_setting(0, "profiles", {"shortlived": 0}), key, "shortlived: 0 is out of range")
        self.assertProblem(ca_setting(0, "profiles", {"shortlived": 826}), key, "826 is out of range")
        self.assertProblem(ca_setting(0, "profiles", {"shortlived": "6"}), key, "expected an integer (days)")
        self.assertProblem(ca_setting(0, "profiles", {"shortlived": True}), key, "expected an integer (days)")
        self.assertProblem(ca_setting(0, "profiles", {"Short": 6}), key, "not a valid profile name")
        self.assertProblem(ca_setting(0, "profiles", ["shortlived"]), key, "expected a table")
        self.assertProblem(ca_setting(1, "profiles", {"shortlived": 6}), 'ca "le".profiles', 'only for kind = "local"')


class DirectoryAndOrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World(self)
        with_profiles(self.world, *PROFILES)
        self.client = self.world.client()
        self.client.register()

    def test_directory_lists_profiles(self) -> None:
        self.assertEqual(
            self.client.directory["meta"]["profiles"],
            {"classic": "90-day certificates", "shortlived": "6-day certificates"},
        )

    def test_directory_without_profiles(self) -> None:
        client = self.world.client(self.world.directory("other"))
        self.assertNotIn("profiles", client.directory["meta"])

    def test_asked_profile(self) -> None:
        """The profile asked for is recorded on the order and shown in it."""
        response = order_with(self.client, ["example.com"], profile="shortlived")
        self.assertEqual(response.code, 201, response.body)
        self.assertEqual(response.json()["profile"], "shortlived")
        self.assertEqual(self.client.post(response.location, None).json()["profile"], "shortlived")
        order_id = response.location.rsplit("/", 1)[1]
        stored = self.successResultOf(Deferred.fromCoroutine(self.world.repo.order(order_id)))
        assert stored is not None
        self.assertEqual(stored.profile, "shortlived")

    def test_default_profile(self) -> None:
        response = order_with(self.client, ["example.com"])
        self.assertEqual(response.code, 201, response.body)
        self.assertEqual(response.json()["profile"], "classic")

    def test_unknown_profile(self) -> None:
        response = order_with(self.client, ["example.com"], profile="tlsclient")
        self.assertEqual((response.code, response.problem_type), (400, "invalidProfile"))
        self.assertIn("'tlsclient' is not offered here; choose one of: classic, shortlived", response.json()["detail"])

    def test_policy_without_profiles(self) -> None:
        """No profile may be asked for, and an order shows none."""
        client = self.world.client(self.world.directory("other"))
        client.register()
        response = order_with(client, ["other.org"], profile="classic")
        self.assertEqual((response.code, response.problem_type), (400, "invalidProfile"))
        self.assertIn("this directory offers no profiles", response.json()["detail"])
        response = order_with(client, ["other.org"])
        self.assertEqual(response.code, 201, response.body)
        self.assertNotIn("profile", response.json())

    def test_profile_not_a_string(self) -> None:
        response = order_with(self.client, ["example.com"], profile=6)
        self.assertEqual((response.code, response.problem_type), (400, "malformed"))
        self.assertIn("profile must be a str", response.json()["detail"])

    def test_stored_order_without_profile(self) -> None:
        """An order stored before profiles existed still loads, without one."""
        order = Order("o", "t", "a", "shop", ("example.com",), OrderStatus.READY, 1.0, 2.0, ())
        data = json.loads(dump_record(order))
        del data["profile"]
        self.assertIsNone(load_record(Order, json.dumps(data).encode()).profile)


class LocalCATests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        short = LocalCA.load_or_create("short", tempfile.mkdtemp(), clock=self.clock, profiles={"shortlived": 6})
        self.world = World(self, clock=self.clock, cas={"short": short})
        self.world.policies["shop"] = evolve(self.world.policies["shop"], primary_ca="short", profiles=PROFILES)
        self.ca = short

    def test_validity_per_profile(self) -> None:
        csr, _ = make_csr(["example.com"])
        for profile, days in (("shortlived", 6), ("classic", 90), (None, 90)):
            request = IssueRequest(csr, ("example.com",), "o", profile=profile)
            chain = self.successResultOf(Deferred.fromCoroutine(self.ca.issue(request))).chain_pem
            leaf = x509.load_pem_x509_certificate(chain)
            self.assertEqual(leaf.not_valid_after_utc, self.now() + days * DAY)

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)

    def test_supports_every_profile(self) -> None:
        for name in ("shortlived", "classic", "anything"):
            self.assertTrue(self.successResultOf(Deferred.fromCoroutine(self.ca.supports_profile(name))))

    def test_bad_profile_validity(self) -> None:
        e = self.assertRaises(
            LocalCAError, LocalCA.load_or_create, "x", tempfile.mkdtemp(), clock=self.clock, profiles={"s": 0}
        )
        self.assertIn("profile 's': validity must be at least 1 day, not 0", str(e))

    def test_shortlived_end_to_end(self) -> None:
        """
        A C{shortlived} order gets a 6-day certificate; a C{classic} order
        for the same names right after re-uses the validation but still
        gets its own profile's 90 days.
        """
        directory = self.world.directory()
        client = self.world.client(directory)
        client.register()
        response = order_with(client, ["example.com"], profile="shortlived")
        client.finalize(response.json(), make_csr(["example.com"])[0])
        order = client.post(response.location, None).json()
        self.assertEqual(order["status"], "valid", order)
        self.assertEqual(lifetime(order, client), 6 * DAY)
        other = self.world.client(directory)
        order, _ = issued(self.world, other, ["example.com"])
        self.assertEqual(order["profile"], "classic")
        self.assertEqual(lifetime(order, other), 90 * DAY)


class IssuanceTests(SynchronousTestCase):
    def test_profile_reaches_the_ca(self) -> None:
        """The order's profile is in the request the CA gets, re-issues too."""
        clock = Clock()
        clock.advance(1_800_000_000)
        ca = ScriptedCA("scripted", [OK], clock, chain_pem=self_signed_pem("example.com"))
        world = World(self, clock=clock, cas={"scripted": ca})
        world.policies["shop"] = evolve(world.policies["shop"], primary_ca="scripted", profiles=PROFILES)
        directory = world.directory()
        client = world.client(directory)
        client.register()
        for profile in ("shortlived", "classic"):
            response = order_with(client, ["example.com"], profile=profile)
            client.finalize(response.json(), make_csr(["example.com"])[0])
        self.assertEqual([r.profile for r in ca.requests], ["shortlived", "classic"])
        self.assertEqual([r.allow_validation for r in ca.requests], [True, False])


INVALID = ProblemType.INVALID_PROFILE


class FailoverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events = EventBus(self.clock)

    def issue(self, *cas: ScriptedCA, profile: str | None = "shortlived") -> Deferred[IssuedCertificate]:
        issuer = FailoverIssuer(
            cas={ca.name: ca for ca in cas},
            health=CAHealth(self.clock, threshold=3, probe_interval=60),
            clock=self.clock,
            events=self.events,
        )
        request = IssueRequest(csr_der=b"", names=("a.test",), order_id="o1", profile=profile)
        names = [ca.name for ca in cas]
        return Deferred.fromCoroutine(issuer.issue(request, order_id="o1", token_id="t1", cas=names, deadline=100.0))

    def ca(self, name: str, profiles: frozenset[str] | None) -> ScriptedCA:
        ca = ScriptedCA(name, [OK], self.clock)
        ca.profiles = profiles
        return ca

    def test_skips_a_ca_without_the_profile(self) -> None:
        primary = self.ca("primary", frozenset({"classic"}))
        backup = self.ca("backup", frozenset({"classic", "shortlived"}))
        self.assertEqual(self.successResultOf(self.issue(primary, backup)).ca_name, "backup")
        self.assertEqual(primary.calls, [])
        self.assertEqual([r.profile for r in backup.requests], ["shortlived"])

    def test_primary_with_the_profile(self) -> None:
        primary = self.ca("primary", None)
        backup = self.ca("backup", None)
        self.assertEqual(self.successResultOf(self.issue(primary, backup)).ca_name, "primary")

    def test_no_profile_asks_no_question(self) -> None:
        primary = self.ca("primary", frozenset())
        self.assertEqual(self.successResultOf(self.issue(primary, profile=None)).ca_name, "primary")

    def test_none_has_the_profile(self) -> None:
        primary = self.ca("primary", frozenset({"classic"}))
        backup = self.ca("backup", frozenset())
        error = self.failureResultOf(self.issue(primary, backup), CAError).value
        self.assertEqual(error.problem_type, ProblemType.INVALID_PROFILE)
        self.assertFalse(error.transient)
        self.assertEqual(error.detail, "no CA of this policy offers profile 'shortlived' (asked: primary, backup)")
        self.assertEqual(primary.calls + backup.calls, [])

    def test_unreachable_ca_is_tried(self) -> None:
        """A CA that cannot tell (its directory is unreachable) is tried: the attempt tells."""
        primary = self.ca("primary", frozenset())

        async def cannot_tell(name: str) -> bool:
            raise CAError("connection refused", transient=True)

        primary.supports_profile = cannot_tell  # type: ignore[method-assign]
        self.assertEqual(self.successResultOf(self.issue(primary)).ca_name, "primary")

    def test_unreachable_ca_without_the_profile_fails_over(self) -> None:
        """
        A CA that could not tell at first, and then refuses the profile when
        asked, sends the order to the backup rather than failing it.
        """
        primary = ScriptedCA(
            "primary", [CAError("no profile 'shortlived' here", transient=False, problem_type=INVALID)], self.clock
        )
        backup = self.ca("backup", frozenset({"shortlived"}))

        async def cannot_tell(name: str) -> bool:
            raise CAError("connection refused", transient=True)

        primary.supports_profile = cannot_tell  # type: ignore[method-assign]
        self.assertEqual(self.successResultOf(self.issue(primary, backup)).ca_name, "backup")
        self.assertEqual(len(primary.calls), 1)

    def test_last_ca_without_the_profile_fails(self) -> None:
        primary = ScriptedCA(
            "primary", [CAError("no profile 'shortlived' here", transient=False, problem_type=INVALID)], self.clock
        )
        error = self.failureResultOf(self.issue(primary), CAError).value
        self.assertEqual(error.problem_type, INVALID)

    def test_none_has_it_fails_the_order(self) -> None:
        """The order becomes invalid with the C{invalidProfile} problem."""
        clock = Clock()
        clock.advance(1_800_000_000)
        ca = ScriptedCA("scripted", [OK], clock)
        ca.profiles = frozenset({"classic"})
        world = World(self, clock=clock, cas={"scripted": ca})
        world.policies["shop"] = evolve(world.policies["shop"], primary_ca="scripted", profiles=PROFILES)
        client = world.client()
        client.register()
        response = order_with(client, ["example.com"], profile="shortlived")
        client.finalize(response.json(), make_csr(["example.com"])[0])
        order = client.post(response.location, None).json()
        self.assertEqual(order["status"], "invalid")
        self.assertEqual(order["error"]["type"], "urn:ietf:params:acme:error:invalidProfile")
        self.assertIn("'shortlived'", order["error"]["detail"])


class UpstreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.server = ScriptedAcmeServer(self.clock)
        self.agent = RequestTraversalAgent(self.server)
        self.ca = UpstreamAcmeCA(
            name="upstream",
            directory_url=self.server.directory_url,
            http=http_over(self.agent, []),
            clock=self.clock,
            store=MemoryStore(self.clock),
            responder=RecordingResponder(),
            poll_delays=(1.0,),
        )

    def drive(self, call: Callable[[], Any]) -> Deferred[Any]:
        d = Deferred.fromCoroutine(call())
        for _ in range(200):
            if d.called:
                break
            self.agent.flush()
            self.clock.advance(0.5)
        return d

    def issue(self, profile: str | None) -> Deferred[IssuedCertificate]:
        request = IssueRequest(
            make_csr(["a.test"])[0], ("a.test",), "o1", challenge_type=ChallengeType.DNS_01, profile=profile
        )
        return self.drive(lambda: self.ca.issue(request))

    def test_supports_what_the_directory_lists(self) -> None:
        self.server.profiles = {"shortlived": "6 days", "classic": "90 days"}
        self.assertTrue(self.successResultOf(self.drive(lambda: self.ca.supports_profile("shortlived"))))
        self.assertFalse(self.successResultOf(self.drive(lambda: self.ca.supports_profile("tlsclient"))))

    def test_directory_without_profiles(self) -> None:
        self.assertFalse(self.successResultOf(self.drive(lambda: self.ca.supports_profile("shortlived"))))

    def test_profile_passed_through(self) -> None:
        self.server.profiles = {"shortlived": "6 days"}
        self.successResultOf(self.issue("shortlived"))
        self.assertEqual(self.server.ordered_profiles, ["shortlived"])

    def test_no_profile_sends_none(self) -> None:
        self.server.profiles = {"shortlived": "6 days"}
        self.successResultOf(self.issue(None))
        self.assertEqual(self.server.ordered_profiles, [None])

    def test_profile_the_ca_lacks(self) -> None:
        self.server.profiles = {"classic": "90 days"}
        error = self.failureResultOf(self.issue("shortlived"), CAError).value
        self.assertEqual(error.problem_type, ProblemType.INVALID_PROFILE)
        self.assertEqual(error.detail, "CA upstream does not offer profile 'shortlived' (its directory lists: classic)")
        self.assertEqual(self.server.ordered_profiles, [])


class ShippedFilesTests(SynchronousTestCase):
    def test_quick_start(self) -> None:
        """The quick start offers classic (the default) and a 6-day shortlived."""
        config = load_config(os.path.join(ETC, "acme-appliance.toml"))
        self.assertEqual(
            config.policy("default").profiles,
            (Profile("classic", "90-day certificates"), Profile("shortlived", "6-day certificates")),
        )
        self.assertEqual(config.ca("builtin").profiles, (("shortlived", 6),))

    def test_production_example(self) -> None:
        directory = self.mktemp()
        os.makedirs(os.path.join(directory, "tls"))
        path = os.path.join(directory, "production.toml")
        shutil.copy(os.path.join(ETC, "production.example.toml"), path)
        make_tls(os.path.join(directory, "tls"), "acme.key", "acme.pem")
        profiles = load_config(path).policy("shop").profiles
        self.assertEqual([p.name for p in profiles], ["classic", "shortlived"])
