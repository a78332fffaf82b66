"""
Fakes and in-memory drivers for testing the appliance, and code built on
it, without a network or a running reactor (as C{treq.testing} ships with
treq): a whole appliance on a L{Clock} (L{World}), an ACME client that talks
to it through C{StubTreq} (L{StubAcmeClient}), scripted CAs, a recording
challenge responder and an upstream CA made of the appliance's own server.

Nothing here imports C{twisted.trial} at run time: the helpers that check
results take the test case they report to.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import josepy
import treq
from attrs import evolve
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from zope.interface import implementer

from .acme import AcmeServer
from .ca import CAError, CertificateAuthority, IssuedCertificate, IssueRequest, PendingChallenge, ValidationRequired
from .ca.local import LocalCA
from .ca.upstream import upstream_agent
from .issuance import BudgetLedger, BudgetPacer, CALimit, IssuanceService, Revoker
from .notify.testing import MemoryNotifier
from .orders import Account, AccountStatus, AcmeRepository, RateLimiter, RenewalWindows
from .policy import KeyType, Policy, TokenRegistry, ValidationMethod
from .storage import MemoryStore
from .wire import jwk_thumbprint, jwk_to_json, sign_flattened

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

__all__ = [
    "BASE_URL",
    "AlternateChainCA",
    "BytesProducer",
    "MemoryNotifier",
    "RecordingResponder",
    "RecordingUpstream",
    "RefusingCA",
    "ScriptedAcmeServer",
    "ScriptedCA",
    "StubAcmeClient",
    "StubResponse",
    "World",
    "b64",
    "ec_key",
    "http_over",
    "issued",
    "make_csr",
    "rsa_jwk",
    "sample_policy",
    "self_signed",
    "self_signed_pem",
    "sign",
]

BASE_URL = "https://acme.test:8443"
"""The public URL of a L{World}'s ACME server."""

_JOSE = {b"Content-Type": [b"application/jose+json"]}


def b64(data: bytes) -> str:
    """URL-safe base64 without padding, as JOSE writes it."""
    return josepy.json_util.encode_b64jose(data)


def ec_key() -> josepy.JWKEC:
    """A fresh P-256 account key."""
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


async def add_account(
    repository: AcmeRepository, token_id: str, account_id: str, clock: IReactorTime, key: josepy.JWK | None = None
) -> Account:
    """
    Store a valid account of token C{token_id} with C{key}'s public part (a
    fresh P-256 key by default), as newAccount would.
    """
    public = (key or ec_key()).public_key()
    account = Account(
        id=account_id,
        token_id=token_id,
        key=jwk_to_json(public),
        thumbprint=jwk_thumbprint(public),
        status=AccountStatus.VALID,
        contact=(),
        created=clock.seconds(),
    )
    return await repository.add_account(account)


def rsa_jwk(bits: int = 2048) -> josepy.JWKRSA:
    """A fresh RSA account key of C{bits}."""
    return josepy.JWKRSA(key=rsa.generate_private_key(65537, bits))


def sign(
    key: josepy.JWK,
    payload: Any,
    *,
    url: str,
    nonce: str | None,
    kid: str | None = None,
    alg: josepy.JWASignature | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """
    A flattened JWS.  C{payload=None} makes a POST-as-GET; C{bytes} are sent
    as they are.
    """
    if alg is None:
        alg = josepy.ES256 if isinstance(key, josepy.JWKEC) else josepy.RS256
    protected: dict[str, Any] = {"alg": alg.name, "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is not None:
        protected["kid"] = kid
    else:
        protected["jwk"] = key.public_key().to_partial_json()
    protected.update(extra or {})
    body = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return sign_flattened(key.key, alg, protected, body)


def make_csr(names: list[str], key: Any = None) -> tuple[bytes, Any]:
    """
    A DER CSR for C{names} (the first one also the common name), and its
    key: C{key}, or a fresh P-256 one.
    """
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER), key


class StubResponse:
    """
    A response the L{StubAcmeClient} has read in full.
    """

    def __init__(self, code: int, headers: Headers, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The first value of header C{name}, if any."""
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def location(self) -> str:
        """The C{Location} header, which the response must have."""
        location = self.header("location")
        if location is None:
            raise AssertionError(f"no Location in a {self.code} response: {self.body!r}")
        return location

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)

    @property
    def problem_type(self) -> str | None:
        """The last part of the problem document's type, or C{None}."""
        if self.header("content-type") != "application/problem+json":
            return None
        return str(self.json()["type"]).rsplit(":", 1)[-1]


class _StubHttp(Protocol):
    """The parts of C{StubTreq} the client uses (it sets them at run time)."""

    def get(self, url: str) -> Deferred[IResponse]: ...

    def head(self, url: str) -> Deferred[IResponse]: ...

    def post(self, url: str, *, data: bytes, headers: dict[bytes, list[bytes]]) -> Deferred[IResponse]: ...

    def flush(self) -> None: ...


class StubAcmeClient:
    """
    Drives one account through an in-memory ACME server, synchronously: each
    request is delivered at once and its response read in full.
    """

    def __init__(
        self, case: SynchronousTestCase, treq: StubTreq, directory_url: str, key: josepy.JWK | None = None
    ) -> None:
        self.case = case
        self.treq = treq
        self._http = cast(_StubHttp, treq)
        self.directory_url = directory_url
        self.key = key or ec_key()
        self.kid: str | None = None
        self._nonce: str | None = None
        self.directory = self.get(directory_url).json()

    @property
    def account(self) -> str:
        """The account URL (the C{kid}); the client must have registered."""
        if self.kid is None:
            raise AssertionError("the client has no account yet")
        return self.kid

    def _done(self, d: Deferred[IResponse]) -> StubResponse:
        self._http.flush()
        response = self.case.successResultOf(d)
        body = self.case.successResultOf(treq.content(response))
        nonce = response.headers.getRawHeaders("replay-nonce")
        if nonce:
            self._nonce = nonce[0]
        return StubResponse(response.code, response.headers, body)

    def get(self, url: str) -> StubResponse:
        """C{GET url}."""
        return self._done(self._http.get(url))

    def head(self, url: str) -> StubResponse:
        """C{HEAD url}."""
        return self._done(self._http.head(url))

    def nonce(self) -> str:
        """A fresh nonce: the last one a response carried, or a new one."""
        if self._nonce is None:
            self.head(self.directory["newNonce"])
        assert self._nonce is not None
        nonce, self._nonce = self._nonce, None
        return nonce

    def post_raw(self, url: str, body: bytes, headers: dict[bytes, list[bytes]] | None = None) -> StubResponse:
        """Send C{body} as it is (a JOSE content type unless C{headers})."""
        return self._done(self._http.post(url, data=body, headers=_JOSE if headers is None else headers))

    def post(
        self, url: str, payload: Any, *, key: josepy.JWK | None = None, use_jwk: bool = False, **kw: Any
    ) -> StubResponse:
        """
        Sign and send; like real clients, retry once on C{badNonce} unless
        the test chose the nonce.
        """
        kid = None if use_jwk else kw.pop("kid", self.kid)
        jws_url = kw.pop("jws_url", url)
        chosen = kw.pop("nonce", None)
        for _attempt in (1, 2):
            body = sign(key or self.key, payload, url=jws_url, nonce=chosen or self.nonce(), kid=kid, **kw)
            response = self.post_raw(url, body)
            if chosen is not None or response.problem_type != "badNonce":
                break
        return response

    def register(self, **payload: Any) -> StubResponse:
        """C{newAccount} (terms agreed), remembering the account URL."""
        response = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True, **payload}, use_jwk=True)
        if response.code in (200, 201):
            self.kid = response.header("location")
        return response

    def new_order(self, names: list[str]) -> StubResponse:
        """C{newOrder} for the DNS C{names}."""
        return self.post(self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]})

    def finalize(self, order: dict[str, Any], csr_der: bytes) -> StubResponse:
        """Finalize C{order} (its JSON) with C{csr_der}."""
        return self.post(order["finalize"], {"csr": b64(csr_der)})


def sample_policy(name: str = "shop", domains: tuple[str, ...] = ("example.com", "*.example.com"), **kw: Any) -> Policy:
    """
    A policy on the built-in CA for C{domains}, any key type, validated
    as C{validation=} says (by default not at all).
    """
    return Policy(
        name=name,
        primary_ca="builtin",
        backup_ca=None,
        validation=kw.pop("validation", ValidationMethod.NONE),
        allowed_domains=domains,
        key_types=frozenset({KeyType.RSA, KeyType.ECDSA}),
        rsa_min_bits=2048,
    )


class World:
    """
    One appliance in memory: a L{MemoryStore}, the built-in CA, issuance and
    the ACME server behind C{StubTreq}, all on one L{Clock}.  Its policies:
    C{shop} (example.com), C{other} (other.org) and C{files} (files.net,
    validated through the file proxy); C{cas} are issuance's CAs besides
    C{builtin}, for policies a test changes in C{policies}.  Finalize waits
    C{finalize_wait} seconds for the job (by default not at all).
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        *,
        issue_delay: float = 0.0,
        store: MemoryStore | None = None,
        clock: Clock | None = None,
        ca_dir: str | None = None,
        cas: dict[str, CertificateAuthority] | None = None,
        limiter: RateLimiter | None = None,
        finalize_wait: float = 0.0,
        ca_limits: dict[str, tuple[CALimit, ...]] | None = None,
    ) -> None:
        self.case = case
        if clock is None:
            clock = Clock()
            clock.advance(1_800_000_000)
        self.clock = clock
        self.store = store or MemoryStore(self.clock)
        self.tokens = TokenRegistry(self.store, self.clock)
        self.repo = AcmeRepository(self.store)
        self.ca_dir = ca_dir or tempfile.mkdtemp()
        self.ca = LocalCA.load_or_create("builtin", self.ca_dir, clock=self.clock, issue_delay=issue_delay)
        self.policies = {
            p.name: p
            for p in (
                sample_policy(),
                sample_policy("other", ("other.org",)),
                sample_policy("files", ("files.net", "*.files.net"), validation=ValidationMethod.FILE_PROXY),
            )
        }
        self.issuance = IssuanceService(
            repository=self.repo,
            cas={"builtin": self.ca, **(cas or {})},
            policies=self.policies,
            clock=self.clock,
            tokens=self.tokens,
            limiter=limiter,
            budgets=BudgetLedger(self.store, self.clock, ca_limits or {}),
        )
        self.renewals = RenewalWindows(self.repo, self.clock, BudgetPacer(ca_limits or {}, self.policies.values()))
        self.server = AcmeServer(
            repository=self.repo,
            tokens=self.tokens,
            policies=self.policies,
            issuance=self.issuance,
            revoker=Revoker(self.repo, {"builtin": self.ca}, self.clock),
            clock=self.clock,
            base_url=BASE_URL,
            max_body_bytes=4096,
            events=self.issuance.events,
            limiter=limiter,
            finalize_wait=finalize_wait,
            renewals=self.renewals,
        )
        self.treq = StubTreq(self.server.resource())

    def directory(self, policy: str = "shop", domains: tuple[str, ...] = ()) -> str:
        """The directory URL of a new token for C{policy}."""
        _, secret = self.case.successResultOf(Deferred.fromCoroutine(self.tokens.create(policy, domains)))
        return f"{BASE_URL}/acme/{secret}/directory"

    def client(self, directory: str | None = None, **kw: Any) -> StubAcmeClient:
        """A client of C{directory} (by default a new C{shop} token's)."""
        return StubAcmeClient(self.case, self.treq, directory or self.directory(), **kw)


def issued(world: World, client: StubAcmeClient, names: list[str]) -> tuple[dict[str, Any], Any]:
    """
    Register, order, finalize and return the final order and the leaf key.
    """
    if client.kid is None:
        world.case.assertEqual(client.register().code, 201)
    order_response = client.new_order(names)
    world.case.assertEqual(order_response.code, 201, order_response.body)
    csr, key = make_csr(names)
    final = client.finalize(order_response.json(), csr)
    world.case.assertEqual(final.code, 200, final.body)
    return client.post(order_response.location, None).json(), key


class RecordingResponder:
    """
    A L{ChallengeResponder} that remembers what it was asked to do.
    """

    def __init__(self) -> None:
        self.published: list[PendingChallenge] = []
        self.withdrawn: list[PendingChallenge] = []

    async def publish(self, challenge: PendingChallenge) -> None:
        """Remember C{challenge} as published."""
        self.published.append(challenge)

    async def withdraw(self, challenge: PendingChallenge) -> None:
        """Remember C{challenge} as withdrawn."""
        self.withdrawn.append(challenge)


class RecordingUpstream(Resource):
    """
    An ACME resource (say a L{World}'s) seen as an upstream CA: it records
    when each request came for which path, and answers those whose path
    ends with a key of C{fail} with that C{(code, content type, body)}.
    """

    isLeaf = True

    def __init__(self, inner: IResource, clock: IReactorTime) -> None:
        super().__init__()
        self.inner = inner
        self.clock = clock
        self.paths: list[tuple[float, str]] = []
        self.fail: dict[str, tuple[int, bytes, bytes]] = {}

    def render(self, request: Request) -> Any:
        """Record the request, then fail it or pass it on."""
        path = request.path.decode()
        self.paths.append((self.clock.seconds(), path))
        for suffix, (code, content_type, body) in list(self.fail.items()):
            if path.endswith(suffix):
                request.setResponseCode(code)
                request.setHeader("Content-Type", content_type)
                return body
        return self.inner.render(request)

    def count(self, suffix: str) -> int:
        """How many requests came for paths ending with C{suffix}."""
        return sum(1 for _, p in self.paths if p.endswith(suffix))


@implementer(IBodyProducer)
class BytesProducer:
    """
    A body producer that writes everything at once, so that requests need
    no running reactor.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        """Write the whole body."""
        consumer.write(self.body)
        return succeed(None)

    def stopProducing(self) -> None:
        """Nothing to stop."""

    def pauseProducing(self) -> None:
        """Nothing to pause."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""


def http_over(agent: IAgent, calls: list[tuple[str, str]], ca: str = "upstream") -> HTTPClient:
    """
    A treq client as L{http_client_for} makes it, over C{agent}, telling
    C{calls} about each request.
    """
    wrapped = upstream_agent(agent, ca=ca, on_request=lambda ca, result: calls.append((ca, result)))
    return HTTPClient(wrapped, data_to_body_producer=BytesProducer)


class ScriptedCA:
    """
    A CA whose answers are scripted: each call takes the next outcome (the
    last one repeats): a L{CAError} is raised, anything else issues
    C{chain_pem}.
    """

    def __init__(
        self, name: str, outcomes: Sequence[CAError | str], clock: IReactorTime, chain_pem: bytes = b"chain"
    ) -> None:
        self.name = name
        self.chain_pem = chain_pem
        self.outcomes = list(outcomes)
        self.clock = clock
        self.calls: list[float] = []
        self.requests: list[IssueRequest] = []
        #: The profiles this CA offers; C{None}: every one.
        self.profiles: frozenset[str] | None = None

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """Note when C{request} came, and answer with the next outcome."""
        self.calls.append(self.clock.seconds())
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, CAError):
            raise outcome
        return IssuedCertificate(chain_pem=self.chain_pem, ca_name=self.name)

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        """Revoking always works."""

    async def supports_profile(self, name: str) -> bool:
        """Whether C{name} is one of C{profiles} (C{None}: every profile is)."""
        return self.profiles is None or name in self.profiles


class RefusingCA:
    """
    Wraps a CA: records whether each request may validate (in C{asked}) and
    refuses a re-issue with L{ValidationRequired} while C{refuse()} says so.
    """

    def __init__(self, ca: CertificateAuthority, asked: list[bool], refuse: Callable[[], bool]) -> None:
        self.name = ca.name
        self._ca = ca
        self._asked = asked
        self._refuse = refuse

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """Refuse a re-issue while C{refuse()}, else let the CA issue."""
        self._asked.append(request.allow_validation)
        if not request.allow_validation and self._refuse():
            raise ValidationRequired(f"CA {self.name} wants {', '.join(request.names)} validated again")
        return await self._ca.issue(request)

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        """Let the CA revoke."""
        await self._ca.revoke(certificate_der, reason)

    async def supports_profile(self, name: str) -> bool:
        """Whatever the CA says."""
        return await self._ca.supports_profile(name)


def as_upstream(world: World) -> None:
    """
    Make C{world}'s CA count as an upstream one, not built-in: its
    validations are shared and re-used, and its jobs take finalize slots.
    """
    world.issuance._upstream._cas = {world.ca.name: RefusingCA(world.ca, [], lambda: False)}


class AlternateChainCA:
    """
    Wraps a CA: every certificate it issues also comes with one alternate
    chain, the leaf alone followed by C{# alternate chain}.
    """

    def __init__(self, ca: CertificateAuthority) -> None:
        self.name = ca.name
        self._ca = ca

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """Let the CA issue, and add the alternate chain."""
        issued = await self._ca.issue(request)
        end = b"-----END CERTIFICATE-----\n"
        leaf = issued.chain_pem.split(end)[0] + end
        return evolve(issued, alternates=(leaf + b"# alternate chain\n",))

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        """Let the CA revoke."""
        await self._ca.revoke(certificate_der, reason)

    async def supports_profile(self, name: str) -> bool:
        """Whatever the CA says."""
        return await self._ca.supports_profile(name)


def self_signed(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate for C{name} (valid in 2027), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def self_signed_pem(name: str) -> bytes:
    """A self-signed certificate for C{name}, as PEM: a chain of one."""
    return self_signed(name)[0].public_bytes(serialization.Encoding.PEM)


class ScriptedAcmeServer(Resource):
    """
    An upstream ACME CA in memory whose validations are scripted: the
    authorization of a name in C{outcomes} stays C{"pending"} for ever,
    becomes C{"valid"}, or (a problem document) becomes C{invalid} with that
    error on its challenge; names not in C{outcomes} become valid.  An
    authorization turns only once its challenge was answered and it was
    then polled C{pending_polls} times; its replies carry C{Retry-After:
    retry_after} when that is set.  JWS signatures are not checked: this
    is a fake for testing clients.

    @ivar answered: when each name's challenge was answered.
    @ivar polls: when each authorization was polled, and for which name.
    """

    isLeaf = True
    base = "https://ca.test"

    def __init__(
        self,
        clock: IReactorTime,
        outcomes: dict[str, str | dict[str, Any]] | None = None,
        *,
        pending_polls: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.outcomes = dict(outcomes or {})
        self.pending_polls = pending_polls
        self.retry_after = retry_after
        self.answered: dict[str, float] = {}
        self.polls: list[tuple[float, str]] = []
        self.names: tuple[str, ...] = ()
        self.finalized = False
        #: The directory's C{meta.profiles}; C{None}: no profiles.
        self.profiles: dict[str, str] | None = None
        #: The C{profile} of each newOrder (C{None}: it named none).
        self.ordered_profiles: list[str | None] = []
        #: Outcomes for the next orders of a name, one taken by each
        #: newOrder that names it (with a fresh authorization).
        self.queued: dict[str, list[str | dict[str, Any]]] = {}
        self._nonce = 0
        self._polled_after_answer: dict[str, int] = {}

    @property
    def directory_url(self) -> str:
        """Where the directory is."""
        return self.base + "/directory"

    def render(self, request: Request) -> Any:
        """Answer one request, always with a fresh nonce."""
        self._nonce += 1
        request.setHeader("Replay-Nonce", b64(b"nonce-%d" % self._nonce))
        parts = request.path.decode().strip("/").split("/")
        if parts[0] == "authz" and self.retry_after is not None:
            request.setHeader("Retry-After", f"{self.retry_after:g}")
        if parts[0] == "new-nonce":
            return b""
        if parts[0] == "cert":
            request.setHeader("Content-Type", "application/pem-certificate-chain")
            return self_signed_pem(self.names[0])
        status, location, body = self._answer(parts, request.content.read() if request.content else b"")
        request.setResponseCode(status)
        if location:
            request.setHeader("Location", self.base + location)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(body).encode()

    def _answer(self, parts: list[str], body: bytes) -> tuple[int, str | None, dict[str, Any]]:
        kind, rest = parts[0], parts[1:]
        if kind == "directory":
            urls = {"newNonce": "new-nonce", "newAccount": "new-account", "newOrder": "new-order"}
            directory: dict[str, Any] = {key: f"{self.base}/{path}" for key, path in urls.items()}
            if self.profiles is not None:
                directory["meta"] = {"profiles": self.profiles}
            return 200, None, directory
        if kind == "new-account":
            return 201, "/acct/1", {"status": "valid"}
        if kind == "new-order":
            payload = json.loads(josepy.decode_b64jose(json.loads(body)["payload"]))
            self.names = tuple(i["value"] for i in payload["identifiers"])
            self.ordered_profiles.append(payload.get("profile"))
            self.finalized = False
            for name in self.names:
                if self.queued.get(name):
                    self.outcomes[name] = self.queued[name].pop(0)
                    self.answered.pop(name, None)
                    self._polled_after_answer.pop(name, None)
            return 201, "/order/1", self._order()
        if kind == "order":
            self.finalized = self.finalized or rest[-1] == "finalize"
            return 200, None, self._order()
        if kind == "chall":
            self.answered.setdefault(rest[0], self.clock.seconds())
            return 200, None, self._challenge(rest[0])
        self.polls.append((self.clock.seconds(), rest[0]))
        if rest[0] in self.answered:
            self._polled_after_answer[rest[0]] = self._polled_after_answer.get(rest[0], 0) + 1
        return 200, None, self._authorization(rest[0])

    def _status(self, name: str) -> str:
        outcome = self.outcomes.get(name, "valid")
        polled = self._polled_after_answer.get(name, 0)
        if name not in self.answered or polled <= self.pending_polls or outcome == "pending":
            return "pending"
        return outcome if isinstance(outcome, str) else "invalid"

    def _challenge(self, name: str) -> dict[str, Any]:
        status = self._status(name)
        challenge: dict[str, Any] = {
            "type": "dns-01",
            "url": f"{self.base}/chall/{name}",
            "token": f"token-{name}",
            "status": status,
        }
        outcome = self.outcomes.get(name)
        if status == "invalid" and isinstance(outcome, dict):
            challenge["error"] = outcome
        return challenge

    def _authorization(self, name: str) -> dict[str, Any]:
        return {
            "status": self._status(name),
            "identifier": {"type": "dns", "value": name},
            "challenges": [self._challenge(name)],
        }

    def _order(self) -> dict[str, Any]:
        statuses = {self._status(n) for n in self.names}
        status = "invalid" if "invalid" in statuses else "pending" if "pending" in statuses else "ready"
        order: dict[str, Any] = {
            "status": "valid" if status == "ready" and self.finalized else status,
            "authorizations": [f"{self.base}/authz/{n}" for n in self.names],
            "finalize": f"{self.base}/order/1/finalize",
        }
        if order["status"] == "valid":
            order["certificate"] = f"{self.base}/cert/1"
        return order
