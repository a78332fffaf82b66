"""
A small ACME client for unit tests: signs requests with josepy and sends them
through C{treq.testing.StubTreq} to the server's Klein resource, in memory.
"""

from __future__ import annotations

import json
from typing import Any

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.wire import sign_flattened

JOSE = {b"Content-Type": [b"application/jose+json"]}


def b64(data: bytes) -> str:
    return josepy.json_util.encode_b64jose(data)


def ec_key() -> josepy.JWKEC:
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


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
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER), key


def rsa_jwk(bits: int = 2048) -> josepy.JWKRSA:
    return josepy.JWKRSA(key=rsa.generate_private_key(65537, bits))


class Response:
    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str | None:
        if self.header("content-type") != "application/problem+json":
            return None
        return str(self.json()["type"]).rsplit(":", 1)[-1]


class StubAcmeClient:
    """
    Drives one account through an in-memory ACME server.
    """

    def __init__(self, case: SynchronousTestCase, treq: StubTreq, directory_url: str, key: josepy.JWK | None = None):
        self.case = case
        self.treq = treq
        self.directory_url = directory_url
        self.key = key or ec_key()
        self.kid: str | None = None
        self._nonce: str | None = None
        self.directory = self.get(directory_url).json()

    def _done(self, d: Any) -> Response:
        self.treq.flush()
        response = self.case.successResultOf(d)
        body = self.case.successResultOf(response.content())
        nonce = response.headers.getRawHeaders("replay-nonce")
        if nonce:
            self._nonce = nonce[0]
        return Response(response.code, response.headers, body)

    def get(self, url: str) -> Response:
        return self._done(self.treq.get(url))

    def head(self, url: str) -> Response:
        return self._done(self.treq.head(url))

    def nonce(self) -> str:
        if self._nonce is None:
            self.head(self.directory["newNonce"])
        assert self._nonce is not None
        nonce, self._nonce = self._nonce, None
        return nonce

    def post_raw(self, url: str, body: bytes, headers: dict[bytes, list[bytes]] | None = None) -> Response:
        return self._done(self.treq.post(url, data=body, headers=JOSE if headers is None else headers))

    def post(self, url: str, payload: Any, *, key: josepy.JWK | None = None, use_jwk: bool = False, **kw: Any) -> Response:
        """
        Sign and send; like real clients, retry once on C{badNonce} unless
        the test chose the nonce.
        """
        kid = None if use_jwk else kw.pop("kid", self.kid)
        jws_url = kw.pop("jws_url", url)
        chosen = kw.pop("nonce", None)
        for attempt in (1, 2):
            body = sign(key or self.key, payload, url=jws_url, nonce=chosen or self.nonce(), kid=kid, **kw)
            response = self.post_raw(url, body)
            if chosen is not None or response.problem_type != "badNonce":
                break
        return response

    def register(self, **payload: Any) -> Response:
        response = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True, **payload}, use_jwk=True)
        if response.code in (200, 201):
            self.kid = response.header("location")
        return response

    def new_order(self, names: list[str]) -> Response:
        return self.post(self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]})

    def finalize(self, order: dict[str, Any], csr_der: bytes) -> Response:
        return self.post(order["finalize"], {"csr": b64(csr_der)})
