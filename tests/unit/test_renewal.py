"""
ACME Renewal Information (RFC 9773): certIDs, paced windows, renew-now,
revocation, C{replaces} and the upstream CA's renewal info mirrored.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.ca.upstream import UpstreamAcmeCA
from acme_appliance.notify import CertificateIssued, EventName, RenewEarly
from acme_appliance.notify.testing import MemoryNotifier
from acme_appliance.orders import (
    BadCertId,
    CertificateRecord,
    RenewalWindows,
    UpstreamRenewalMirror,
    Window,
    cert_id_of,
    parse_cert_id,
    retry_after,
)
from acme_appliance.orders._renewal import base_window, paced_window
from acme_appliance.stats import Metrics
from acme_appliance.storage import MemoryStore
from acme_appliance.testing import RecordingResponder, StubAcmeClient, World, http_over, issued

DAY = 86400.0

# RFC 9773 section 4.1's example.
EXAMPLE_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def run(case: SynchronousTestCase, coroutine: Any) -> Any:
    return case.successResultOf(Deferred.fromCoroutine(coroutine))


def seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


class CertIdTests(SynchronousTestCase):
    def test_rfc_example(self) -> None:
        parsed = parse_cert_id(EXAMPLE_CERT_ID)
        self.assertEqual(parsed.key_identifier.hex(), "69885b6b87464041e1b37b847ba0ae2cde01c8d4")
        self.assertEqual(parsed.serial_hex, "87654321")

    def test_of_certificate(self) -> None:
        """
        The certID of a certificate is what certbot's acme library computes.
        """
        from acme.client import _renewal_info_path_component

        world = World(self)
        client = world.client()
        order, _ = issued(world, client, ["example.com"])
        leaf = x509.load_pem_x509_certificate(client.post(order["certificate"], None).body)
        self.assertEqual(cert_id_of(leaf), _renewal_info_path_component(leaf))
        self.assertEqual(parse_cert_id(cert_id_of(leaf)).serial, leaf.serial_number)

    def test_malformed(self) -> None:
        for text in ("", "abc", ".AIdlQyE", "aYhb.", "a.b.c", "aYhb=.AIdlQyE", "aY+b.AIdlQyE", "aYhba.AIdl", "aYhb.AA"):
            with self.subTest(text=text), self.assertRaises(BadCertId):
                parse_cert_id(text)

    def test_negative_serial(self) -> None:
        with self.assertRaises(BadCertId) as raised:
            parse_cert_id("aYhb.gA")
        self.assertIn("positive", str(raised.exception))


class WindowTests(SynchronousTestCase):
    def test_ninety_days(self) -> None:
        """
        A 90-day certificate's windows lie in days 60 to 70.
        """
        base = base_window(0.0, 90 * DAY)
        self.assertEqual((round(base.start / DAY, 6), round(base.end / DAY, 6)), (60.0, 70.0))

    def test_paced_slots(self) -> None:
        """
        Ten certificates get ten different starts, all inside the base
        window; a slot does not depend on how many follow.
        """
        base = base_window(0.0, 90 * DAY)
        windows = [paced_window(base, rank) for rank in range(10)]
        self.assertEqual(len({w.start for w in windows}), 10)
        for window in windows:
            self.assertTrue(base.start <= window.start < window.end <= base.end, window)
        self.assertEqual(paced_window(base, 3), windows[3])

    def test_retry_after(self) -> None:
        window = Window(100_000.0, 200_000.0)
        self.assertEqual(retry_after(window, 0.0), 6 * 3600)
        self.assertEqual(retry_after(window, 99_000.0), 1000)
        self.assertEqual(retry_after(window, 99_990.0), 60)
        self.assertEqual(retry_after(window, 150_000.0), 3600)


class Fleet:
    """
    A World whose clients got certificates, with their certIDs.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        self.world = World(case)
        self.client = self.world.client()
        self.client.register()

    def issue(self, names: list[str], client: StubAcmeClient | None = None) -> tuple[str, x509.Certificate]:
        client = client or self.client
        order, _ = issued(self.world, client, names)
        leaf = x509.load_pem_x509_certificate(client.post(order["certificate"], None).body)
        return cert_id_of(leaf), leaf

    def info(self, cert_id: str, client: StubAcmeClient | None = None) -> Any:
        client = client or self.client
        return client.get(client.directory["renewalInfo"] + "/" + cert_id)


class RenewalInfoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fleet = Fleet(self)

    def test_directory(self) -> None:
        directory = self.fleet.client.directory
        self.assertEqual(directory["renewalInfo"], directory["newOrder"].replace("new-order", "renewal-info"))

    def test_window(self) -> None:
        cert_id, leaf = self.fleet.issue(["example.com"])
        response = self.fleet.info(cert_id)
        self.assertEqual(response.code, 200, response.body)
        window = response.json()["suggestedWindow"]
        start, end = seconds(window["start"]), seconds(window["end"])
        not_before, not_after = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
        lifetime = not_after - not_before
        self.assertTrue(not_before + lifetime / 2 <= start < end <= not_after)
        self.assertNotIn("explanationURL", response.json())
        self.assertEqual(response.header("retry-after"), str(6 * 3600))

    def test_fleet_paced(self) -> None:
        """
        Ten certificates for one name: windows in the last half of their
        validity, with ten different starts.
        """
        starts = set()
        for _ in range(10):
            cert_id, leaf = self.fleet.issue(["example.com"])
            window = self.fleet.info(cert_id).json()["suggestedWindow"]
            not_before, not_after = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
            self.assertGreaterEqual(seconds(window["start"]), (not_before + not_after) / 2)
            self.assertLessEqual(seconds(window["end"]), not_after)
            starts.add(window["start"])
        self.assertEqual(len(starts), 10)

    def test_unknown(self) -> None:
        response = self.fleet.info(EXAMPLE_CERT_ID)
        self.assertEqual((response.code, response.problem_type), (404, "malformed"))

    def test_malformed(self) -> None:
        response = self.fleet.info("not-a-cert-id")
        self.assertEqual((response.code, response.problem_type), (400, "malformed"))
        self.assertIn("certID", response.json()["detail"])

    def test_other_token(self) -> None:
        """
        A certificate is only known under the directory it was issued by.
        """
        cert_id, _ = self.fleet.issue(["example.com"])
        stranger = self.fleet.world.client()
        self.assertEqual(self.fleet.info(cert_id, stranger).code, 404)

    def test_certificate_stored_before_the_index(self) -> None:
        """
        A certificate stored before the certID index is found by serial,
        and indexed at start.
        """
        cert_id, _ = self.fleet.issue(["example.com"])
        store = self.fleet.world.store
        run(self, store.delete(f"cert-ari/{cert_id}"))
        self.assertEqual(self.fleet.info(cert_id).code, 200)
        self.assertEqual(run(self, self.fleet.world.repo.index_stored_certificates()), 1)
        self.assertEqual(run(self, self.fleet.world.repo.index_stored_certificates()), 0)
        self.assertIsNotNone(run(self, store.get(f"cert-ari/{cert_id}")))


class RenewNowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fleet = Fleet(self)
        self.windows = RenewalWindows(self.fleet.world.repo, self.fleet.world.clock)

    def test_moves_only_those_names(self) -> None:
        mine = [self.fleet.issue(["example.com"])[0] for _ in range(3)]
        other, _ = self.fleet.issue(["www.example.com"])
        before = self.fleet.info(other).json()
        self.fleet.world.clock.advance(60)
        self.assertEqual(run(self, self.windows.renew_now(["example.com"])), 3)
        now = self.fleet.world.clock.seconds()
        for cert_id in mine:
            answer = self.fleet.info(cert_id)
            window = answer.json()["suggestedWindow"]
            self.assertTrue(now - 300 < seconds(window["start"]) < seconds(window["end"]) < now)
            self.assertEqual(answer.header("retry-after"), "3600")
            explanation = self.fleet.client.get(answer.json()["explanationURL"])
            self.assertEqual(explanation.code, 200)
            self.assertIn(b"operator", explanation.body)
        self.assertEqual(self.fleet.info(other).json(), before)

    def test_not_expired_or_revoked(self) -> None:
        cert_id, leaf = self.fleet.issue(["example.com"])
        self.fleet.world.clock.advance(91 * DAY)
        self.assertEqual(run(self, self.windows.renew_now(["example.com"])), 0)

    def test_revocation_moves(self) -> None:
        from cryptography.hazmat.primitives import serialization

        from acme_appliance.testing import b64

        cert_id, leaf = self.fleet.issue(["example.com"])
        client = self.fleet.client
        der = leaf.public_bytes(serialization.Encoding.DER)
        self.assertEqual(client.post(client.directory["revokeCert"], {"certificate": b64(der)}).code, 200)
        answer = self.fleet.info(cert_id).json()
        self.assertLess(seconds(answer["suggestedWindow"]["end"]), self.fleet.world.clock.seconds())
        self.assertTrue(answer["explanationURL"].endswith("/renewal-explanation/revoked"))
        record = run(self, self.fleet.world.repo.certificate_by_cert_id(cert_id))
        self.assertIsNotNone(record.revoked_at)
        self.assertEqual(run(self, self.windows.renew_now(["example.com"])), 0)

    def test_token_revoked(self) -> None:
        cert_id, _ = self.fleet.issue(["example.com"])
        record = run(self, self.fleet.world.repo.certificate_by_cert_id(cert_id))
        self.assertEqual(run(self, self.windows.token_revoked(record.token_id)), 1)
        moved = run(self, self.fleet.world.repo.certificate(record.id))
        self.assertEqual((moved.window_reason, moved.window_moved), ("token-revoked", self.fleet.world.clock.seconds()))

    def test_unknown_explanation(self) -> None:
        url = self.fleet.client.directory["renewalInfo"].replace("renewal-info", "renewal-explanation/nope")
        self.assertEqual(self.fleet.client.get(url).code, 404)


class ReplacesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fleet = Fleet(self)
        self.issued: list[CertificateIssued] = []
        self.fleet.world.issuance.events.subscribe(
            lambda e: self.issued.append(e) if isinstance(e, CertificateIssued) else None
        )
        self.metrics = Metrics()
        self.fleet.world.issuance.events.subscribe(self.metrics.observe)
        self.cert_id, _ = self.fleet.issue(["example.com"])

    def order(self, replaces: str, names: tuple[str, ...] = ("example.com",), client: Any = None) -> Any:
        client = client or self.fleet.client
        identifiers = [{"type": "dns", "value": n} for n in names]
        return client.post(client.directory["newOrder"], {"identifiers": identifiers, "replaces": replaces})

    def test_replaced_once(self) -> None:
        first = self.order(self.cert_id)
        self.assertEqual(first.code, 201, first.body)
        self.assertEqual(first.json()["replaces"], self.cert_id)
        record = run(self, self.fleet.world.repo.certificate_by_cert_id(self.cert_id))
        self.assertEqual(record.replaced_by, first.location.rsplit("/", 1)[1])
        second = self.order(self.cert_id)
        self.assertEqual((second.code, second.problem_type), (409, "alreadyReplaced"))

    def test_renewal_counted(self) -> None:
        from acme_appliance.testing import make_csr

        order = self.order(self.cert_id)
        self.fleet.client.finalize(order.json(), make_csr(["example.com"])[0])
        self.assertEqual([e.replaces for e in self.issued], [None, self.cert_id])
        self.assertEqual(self.metrics.value("acme_appliance_renewals_total", ca="builtin"), 1)

    def test_failed_replacement_frees(self) -> None:
        """
        An order that replaced a certificate and expired unfinished does not
        keep others from replacing it.
        """
        self.assertEqual(self.order(self.cert_id).code, 201)
        self.fleet.world.clock.advance(8 * DAY)
        self.assertEqual(self.order(self.cert_id).code, 201)

    def test_refused(self) -> None:
        stranger = self.fleet.world.client(self.fleet.client.directory_url)
        stranger.register()
        cases = [
            (self.order("nonsense"), "certID"),
            (self.order(EXAMPLE_CERT_ID), "no certificate"),
            (self.order(self.cert_id, client=stranger), "no certificate"),
            (self.order(self.cert_id, names=("www.example.com",)), "shares no name"),
        ]
        for response, detail in cases:
            self.assertEqual((response.code, response.problem_type), (400, "malformed"), response.body)
            self.assertIn(detail, response.json()["detail"])
            self.assertIn("replaces", response.json()["detail"])
        self.assertEqual(self.order(self.cert_id).code, 201)


class MirrorTests(SynchronousTestCase):
    """
    The upstream CA is another appliance (its own renewal-info route); the
    downstream appliance stored the certificate it got from it.
    """

    def setUp(self) -> None:
        self.upstream = Fleet(self)
        self.up_cert_id, _ = self.upstream.issue(["example.com"])
        self.other_cert_id, _ = self.upstream.issue(["www.example.com"])
        world = self.upstream.world
        self.agent = RequestTraversalAgent(world.server.resource())
        self.ca = UpstreamAcmeCA(
            name="up",
            directory_url=self.upstream.client.directory_url,
            http=http_over(self.agent, []),
            clock=world.clock,
            store=MemoryStore(world.clock),
            responder=RecordingResponder(),
        )
        self.down = World(self, clock=world.clock)
        self.notifier = MemoryNotifier()
        self.down.issuance.events.subscribe(self.notifier)
        for cert_id in (self.up_cert_id, self.other_cert_id):
            record = run(self, world.repo.certificate_by_cert_id(cert_id))
            run(self, self.down.repo.put_certificate(self._downstream(record)))
        self.mirror = UpstreamRenewalMirror(
            repository=self.down.repo,
            windows=RenewalWindows(self.down.repo, world.clock),
            sources={"up": self.ca},
            clock=world.clock,
            events=self.down.issuance.events,
        )

    def _downstream(self, record: CertificateRecord) -> CertificateRecord:
        from attrs import evolve

        return evolve(record, ca_name="up", token_id="down-token", account_id="down-account")

    def poll(self) -> int:
        d = Deferred.fromCoroutine(self.mirror.poll())
        for _ in range(20):
            self.agent.flush()
        return int(self.successResultOf(d))

    def test_follows_upstream(self) -> None:
        self.assertEqual(self.poll(), 0)
        self.assertEqual(self.notifier.events, [])
        up_windows = RenewalWindows(self.upstream.world.repo, self.upstream.world.clock)
        self.assertEqual(run(self, up_windows.renew_now(["example.com"])), 1)
        self.assertEqual(self.poll(), 1)
        record = run(self, self.down.repo.certificate_by_cert_id(self.up_cert_id))
        self.assertEqual(record.window_reason, "upstream")
        other = run(self, self.down.repo.certificate_by_cert_id(self.other_cert_id))
        self.assertIsNone(other.window_moved)
        [event] = self.notifier.events
        assert isinstance(event, RenewEarly)
        self.assertEqual(
            (event.name, event.ca, event.names, event.serial),
            (EventName.CA_RENEW_EARLY, "up", ("example.com",), record.serial),
        )
        self.assertEqual(event.to_json()["event"], "ca.renew_early")
        self.assertEqual(self.poll(), 0)

    def test_no_renewal_info(self) -> None:
        """
        A CA whose directory has no renewalInfo is asked once per poll.
        """
        run(self, self.ca.transport.directory())
        object.__setattr__(self.ca.transport._directory, "renewal_info", None)
        self.assertEqual(self.poll(), 0)

    def test_scheduled(self) -> None:
        up_windows = RenewalWindows(self.upstream.world.repo, self.upstream.world.clock)
        run(self, up_windows.renew_now(["example.com"]))
        self.mirror.startService()
        self.addCleanup(self.mirror.stopService)
        for _ in range(20):
            self.agent.flush()
        self.assertEqual(len(self.notifier.events), 1)


class SlotTests(SynchronousTestCase):
    def test_stored_before_slots(self) -> None:
        """
        A certificate stored without a slot takes its place in the name
        index instead.
        """
        fleet = Fleet(self)
        ids = [fleet.issue(["example.com"])[0] for _ in range(3)]
        repo = fleet.world.repo
        windows = RenewalWindows(repo, fleet.world.clock)
        records = [run(self, repo.certificate_by_cert_id(i)) for i in ids]
        self.assertEqual([r.slot for r in records], [0, 1, 2])
        from attrs import evolve

        ranks = set()
        for record in records:
            ranks.add(run(self, windows.window(evolve(record, slot=None))).start)
        self.assertEqual(len(ranks), 3)


ADMIN_KEY = "k" * 32


class AdminRenewNowTests(SynchronousTestCase):
    def setUp(self) -> None:
        from treq.testing import StubTreq

        from acme_appliance.admin import AdminAPI

        self.fleet = Fleet(self)
        world = self.fleet.world
        self.admin = AdminAPI(
            api_key=ADMIN_KEY, store=world.store, tokens=world.tokens, repository=world.repo, clock=world.clock
        )
        self.http = StubTreq(self.admin.resource())

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        import json

        headers = {b"Authorization": [f"Bearer {ADMIN_KEY}".encode()], b"Content-Type": [b"application/json"]}
        d = self.http.request(method, f"http://admin.test{path}", headers=headers, data=body)  # type: ignore[attr-defined]
        self.http.flush()
        response = self.successResultOf(d)
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_renew_now(self) -> None:
        mine, _ = self.fleet.issue(["example.com"])
        other, _ = self.fleet.issue(["www.example.com"])
        self.assertEqual(self.request("POST", "/renew-now", b'{"names": ["Example.COM."]}'), (200, {"moved": 1}))
        self.assertIn("explanationURL", self.fleet.info(mine).json())
        self.assertNotIn("explanationURL", self.fleet.info(other).json())

    def test_bad_names(self) -> None:
        for body in (b"{}", b'{"names": []}', b'{"names": "example.com"}', b'{"names": [1]}', b'{"names": ["a..b"]}'):
            code, answer = self.request("POST", "/renew-now", body)
            self.assertEqual(code, 400, body)
            self.assertIn("names", answer["error"])

    def test_key_required(self) -> None:
        d = self.http.request("POST", "http://admin.test/renew-now", data=b'{"names": ["example.com"]}')  # type: ignore[attr-defined]
        self.http.flush()
        self.assertEqual(self.successResultOf(d).code, 401)

    def test_token_revoked(self) -> None:
        cert_id, _ = self.fleet.issue(["example.com"])
        record = run(self, self.fleet.world.repo.certificate_by_cert_id(cert_id))
        code, _ = self.request("DELETE", f"/tokens/{record.token_id}")
        self.assertEqual(code, 200)
        moved = run(self, self.fleet.world.repo.certificate(record.id))
        self.assertEqual(moved.window_reason, "token-revoked")


class UpstreamAnswerTests(SynchronousTestCase):
    """
    What an upstream CA's renewal info may look like, through
    L{UpstreamAcmeCA.renewal_window}.
    """

    def answer(self, body: bytes, code: int = 200) -> Any:
        from twisted.internet.task import Clock
        from twisted.web.resource import Resource
        from twisted.web.static import Data

        root = Resource()
        directory = (
            b'{"newNonce": "http://ca.test/n", "newAccount": "http://ca.test/a", "newOrder": "http://ca.test/o",'
        )
        root.putChild(b"directory", Data(directory + b' "renewalInfo": "http://ca.test/ari/"}', "application/json"))
        ari = Resource()
        root.putChild(b"ari", ari)
        ari.putChild(b"x.AQ", Data(body, "application/json") if code == 200 else Resource())
        clock = Clock()
        agent = RequestTraversalAgent(root)
        ca = UpstreamAcmeCA(
            name="up",
            directory_url="http://ca.test/directory",
            http=http_over(agent, []),
            clock=clock,
            store=MemoryStore(clock),
            responder=RecordingResponder(),
        )
        d = Deferred.fromCoroutine(ca.renewal_window("x.AQ"))
        for _ in range(5):
            agent.flush()
        return d

    def test_window(self) -> None:
        body = b'{"suggestedWindow": {"start": "2027-01-01T00:00:00Z", "end": "2027-01-02T00:00:00+00:00"}}'
        self.assertEqual(self.successResultOf(self.answer(body)), (1798761600.0, 1798848000.0))

    def test_nonsense(self) -> None:
        from acme_appliance.ca import CAError

        for body in (
            b"[]",
            b'{"suggestedWindow": {"start": "2027-01-01T00:00:00", "end": "2027-01-02T00:00:00"}}',
            b'{"suggestedWindow": {"start": "soon", "end": "later"}}',
            b'{"suggestedWindow": 1}',
        ):
            self.failureResultOf(self.answer(body), CAError)
        self.failureResultOf(self.answer(b"", code=404), CAError)
