"""
Tests for L{acme_appliance.wire._jws}: flattened JWS parsing, the RFC 8555
header rules, signature checks and the Ed25519 (RFC 8037) additions.
"""

from __future__ import annotations

import json
from typing import Any

import josepy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance.core import AcmeProblem, ProblemType
from acme_appliance.wire._jws import (
    ALLOWED_ALGORITHMS,
    JWKOKP,
    AcmeJWS,
    BadSignatureAlgorithm,
    EdDSA,
    jwk_from_json,
    jwk_thumbprint,
    jwk_to_json,
    parse_inner_keychange_jws,
    parse_jws,
    public_key_of,
)

URL = "https://acme.test/acme/s3cret/new-order"
NONCE = "b2xkLW5vbmNl"
KID = "https://acme.test/acme/s3cret/acct/1"

RSA_KEY = josepy.JWKRSA(key=rsa.generate_private_key(65537, 2048))
P256_KEY = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
P384_KEY = josepy.JWKEC(key=ec.generate_private_key(ec.SECP384R1()))
P521_KEY = josepy.JWKEC(key=ec.generate_private_key(ec.SECP521R1()))
ED_PRIVATE = ed25519.Ed25519PrivateKey.generate()
ED_KEY = JWKOKP(key=ED_PRIVATE)

KEYS: dict[str, josepy.JWK] = {
    "RS256": RSA_KEY,
    "ES256": P256_KEY,
    "ES384": P384_KEY,
    "ES512": P521_KEY,
    "EdDSA": ED_KEY,
}
_UNSET: Any = object()


def b64(data: bytes) -> str:
    return josepy.encode_b64jose(data)


def natural_alg(key: josepy.JWK) -> josepy.JWASignature:
    """
    The algorithm C{key} signs with (header C{alg} can be set independently).
    """
    if isinstance(key, josepy.JWKEC):
        return {"secp256r1": josepy.ES256, "secp384r1": josepy.ES384, "secp521r1": josepy.ES512}[key.key.curve.name]
    if isinstance(key, JWKOKP):
        return EdDSA
    if isinstance(key, josepy.JWKOct):
        return josepy.HS256
    return josepy.RS256


def sign(
    key: josepy.JWK = P256_KEY,
    payload: Any = _UNSET,
    *,
    alg: str | None = None,
    jwk: Any = _UNSET,
    kid: Any = _UNSET,
    nonce: Any = NONCE,
    url: Any = URL,
    extra: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> bytes:
    """
    A flattened JWS signed with C{key}.  C{alg} defaults to the key's own
    algorithm and only changes the header.  C{jwk} defaults to C{key}'s public
    JWK unless C{kid} is given; C{None} for C{nonce}/C{url} leaves them out;
    C{payload=None} makes a POST-as-GET.
    """
    natural = natural_alg(key)
    header: dict[str, Any] = {"alg": natural.name if alg is None else alg}
    if kid is not _UNSET:
        header["kid"] = kid
    if jwk is not _UNSET:
        header["jwk"] = jwk
    elif kid is _UNSET:
        header["jwk"] = key.public_key().to_json()
    if nonce is not None:
        header["nonce"] = nonce
    if url is not None:
        header["url"] = url
    header.update(extra or {})
    for name in drop:
        header.pop(name)
    if payload is _UNSET:
        payload = {"identifiers": [{"type": "dns", "value": "example.com"}]}
    body = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    protected = b64(json.dumps(header).encode())
    encoded = b64(body)
    signature = natural.sign(key.key, f"{protected}.{encoded}".encode())
    return json.dumps({"protected": protected, "payload": encoded, "signature": b64(signature)}).encode()


def flattened(protected: Any, payload: Any = "", signature: Any = "c2ln", **extra: Any) -> bytes:
    """
    A flattened JWS from a protected header object (or a raw string) with a
    dummy signature.
    """
    if not isinstance(protected, str):
        protected = b64(json.dumps(protected).encode())
    obj = {"protected": protected, "payload": payload, "signature": signature}
    obj.update(extra)
    return json.dumps(obj).encode()


class ProblemAssertions(SynchronousTestCase):
    def assertProblem(self, kind: ProblemType, body: bytes, **kw: Any) -> AcmeProblem:
        problem = self.assertRaises(AcmeProblem, parse_jws, body, **kw)
        self.assertEqual(problem.type, kind, problem.detail)
        return problem


class ValidRequestTests(ProblemAssertions):
    """
    Real signed requests parse and verify for every allowed algorithm.
    """

    def test_allowedAlgorithms(self) -> None:
        self.assertEqual(ALLOWED_ALGORITHMS, frozenset({"RS256", "ES256", "ES384", "ES512", "EdDSA"}))

    def test_jwkEveryAlgorithm(self) -> None:
        for alg, key in KEYS.items():
            jws = parse_jws(sign(key, {"hello": alg}))
            assert jws.jwk is not None
            self.assertEqual(jws.alg, alg)
            self.assertEqual(jws.nonce, NONCE)
            self.assertEqual(jws.url, URL)
            self.assertIsNone(jws.kid)
            self.assertEqual(jws.jwk, key.public_key())
            self.assertEqual(jws.payload_json(), {"hello": alg})
            self.assertEqual(jws.protected["alg"], alg)
            jws.verify(jws.jwk)

    def test_kidEveryAlgorithm(self) -> None:
        for key in KEYS.values():
            jws = parse_jws(sign(key, kid=KID))
            self.assertEqual(jws.kid, KID)
            self.assertIsNone(jws.jwk)
            jws.verify(jwk_from_json(jwk_to_json(key)))

    def test_postAsGet(self) -> None:
        jws = parse_jws(sign(ED_KEY, None, kid=KID))
        self.assertEqual(jws.payload, b"")
        jws.verify(ED_KEY.public_key())
        problem = self.assertRaises(AcmeProblem, jws.payload_json)
        self.assertEqual(problem.type, ProblemType.MALFORMED)

    def test_emptyObjectPayload(self) -> None:
        jws = parse_jws(sign(P256_KEY, {}))
        self.assertEqual(jws.payload, b"{}")
        self.assertEqual(jws.payload_json(), {})

    def test_signingInput(self) -> None:
        body = sign(P256_KEY)
        obj = json.loads(body)
        jws = parse_jws(body)
        self.assertEqual(jws.signing_input, f"{obj['protected']}.{obj['payload']}".encode())
        self.assertEqual(jws.signature, josepy.decode_b64jose(obj["signature"]))

    def test_frozen(self) -> None:
        jws = parse_jws(sign(P256_KEY))
        self.assertIsInstance(jws, AcmeJWS)
        self.assertRaises(AttributeError, setattr, jws, "url", "https://evil.test/")


class VerifyTests(ProblemAssertions):
    """
    L{AcmeJWS.verify} turns every failure into a problem.
    """

    def assertInvalid(self, jws: AcmeJWS, key: josepy.JWK) -> None:
        problem = self.assertRaises(AcmeProblem, jws.verify, key)
        self.assertEqual(problem.type, ProblemType.MALFORMED)
        self.assertEqual(problem.detail, "JWS signature is invalid")

    def tampered(self, body: bytes, member: str, value: str) -> AcmeJWS:
        obj = json.loads(body)
        obj[member] = value
        return parse_jws(json.dumps(obj).encode())

    def test_tamperedPayload(self) -> None:
        for key in KEYS.values():
            other = b64(json.dumps({"identifiers": [{"type": "dns", "value": "evil.com"}]}).encode())
            self.assertInvalid(self.tampered(sign(key), "payload", other), key)

    def test_tamperedProtected(self) -> None:
        for alg, key in KEYS.items():
            header = {"alg": alg, "jwk": key.public_key().to_json(), "nonce": NONCE, "url": URL + "x"}
            jws = self.tampered(sign(key), "protected", b64(json.dumps(header).encode()))
            self.assertInvalid(jws, key)

    def test_tamperedSignature(self) -> None:
        for key in KEYS.values():
            obj = json.loads(sign(key))
            raw = bytearray(josepy.decode_b64jose(obj["signature"]))
            raw[len(raw) // 2] ^= 0x01
            self.assertInvalid(self.tampered(sign(key), "signature", b64(bytes(raw))), key)

    def test_truncatedSignature(self) -> None:
        for key in KEYS.values():
            obj = json.loads(sign(key))
            raw = josepy.decode_b64jose(obj["signature"])
            self.assertInvalid(self.tampered(sign(key), "signature", b64(raw[:-1])), key)

    def test_otherKey(self) -> None:
        jws = parse_jws(sign(P256_KEY, kid=KID))
        self.assertInvalid(jws, josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())))
        jws = parse_jws(sign(ED_KEY, kid=KID))
        self.assertInvalid(jws, JWKOKP(key=ed25519.Ed25519PrivateKey.generate()))

    def test_algDoesNotFitStoredKey(self) -> None:
        # A kid request signed ES256 while the account's key is RSA.
        jws = parse_jws(sign(P256_KEY, kid=KID))
        problem = self.assertRaises(AcmeProblem, jws.verify, jwk_from_json(jwk_to_json(RSA_KEY)))
        self.assertEqual(problem.type, ProblemType.BAD_SIGNATURE_ALGORITHM)
        jws = parse_jws(sign(P256_KEY, kid=KID))
        problem = self.assertRaises(AcmeProblem, jws.verify, P384_KEY.public_key())
        self.assertEqual(problem.type, ProblemType.BAD_SIGNATURE_ALGORITHM)

    def test_ecdsaDerSignatureRejected(self) -> None:
        # RFC 7518 3.4: R || S, not DER.
        body = sign(P256_KEY)
        obj = json.loads(body)
        der = P256_KEY.key.sign(f"{obj['protected']}.{obj['payload']}".encode(), ec.ECDSA(hashes.SHA256()))
        self.assertInvalid(self.tampered(body, "signature", b64(der)), P256_KEY)


class EnvelopeRejectionTests(ProblemAssertions):
    """
    Only the flattened JSON serialization with exactly three members.
    """

    def test_notJson(self) -> None:
        for body in (b"", b"garbage", b"{", b"\xff\xfe{}", b"[" * 100_000):
            self.assertProblem(ProblemType.MALFORMED, body)

    def test_notObject(self) -> None:
        for body in (b"[]", b"null", b"42", b'"protected"'):
            self.assertProblem(ProblemType.MALFORMED, body)

    def test_compact(self) -> None:
        obj = json.loads(sign(P256_KEY))
        compact = f"{obj['protected']}.{obj['payload']}.{obj['signature']}".encode()
        problem = self.assertProblem(ProblemType.MALFORMED, compact)
        self.assertIn("compact", problem.detail)

    def test_general(self) -> None:
        obj = json.loads(sign(P256_KEY))
        general = {
            "payload": obj["payload"],
            "signatures": [{"protected": obj["protected"], "signature": obj["signature"]}],
        }
        problem = self.assertProblem(ProblemType.MALFORMED, json.dumps(general).encode())
        self.assertIn("signatures", problem.detail)

    def test_unprotectedHeader(self) -> None:
        obj = json.loads(sign(P256_KEY))
        obj["header"] = {"kid": KID}
        problem = self.assertProblem(ProblemType.MALFORMED, json.dumps(obj).encode())
        self.assertIn("header", problem.detail)

    def test_missingMember(self) -> None:
        for member in ("protected", "payload", "signature"):
            obj = json.loads(sign(P256_KEY))
            del obj[member]
            problem = self.assertProblem(ProblemType.MALFORMED, json.dumps(obj).encode())
            self.assertIn(member, problem.detail)

    def test_extraMember(self) -> None:
        obj = json.loads(sign(P256_KEY))
        obj["extra"] = 1
        self.assertProblem(ProblemType.MALFORMED, json.dumps(obj).encode())

    def test_duplicateMember(self) -> None:
        body = sign(P256_KEY)
        self.assertProblem(ProblemType.MALFORMED, body[:-1] + b', "payload": ""}')

    def test_badBase64(self) -> None:
        for bad in ("a+b/", "YQ==", "a", "a b", "é", 5, None, ["YQ"]):
            for member in ("protected", "payload", "signature"):
                obj = json.loads(sign(P256_KEY))
                obj[member] = bad
                problem = self.assertProblem(ProblemType.MALFORMED, json.dumps(obj).encode())
                self.assertIn(member, problem.detail)

    def test_emptySignature(self) -> None:
        obj = json.loads(sign(P256_KEY))
        obj["signature"] = ""
        self.assertProblem(ProblemType.MALFORMED, json.dumps(obj).encode())

    def test_protectedNotObject(self) -> None:
        for raw in (b"not json", b"[]", b'"alg"', b"\xff"):
            self.assertProblem(ProblemType.MALFORMED, flattened(b64(raw)))
        self.assertProblem(ProblemType.MALFORMED, flattened(""))

    def test_protectedDuplicate(self) -> None:
        # Two parsers could disagree about which "url" counts.
        raw = f'{{"alg":"ES256","kid":"{KID}","nonce":"{NONCE}","url":"{URL}","url":"https://evil.test/"}}'
        problem = self.assertProblem(ProblemType.MALFORMED, flattened(b64(raw.encode())))
        self.assertIn("url", problem.detail)


class HeaderRejectionTests(ProblemAssertions):
    """
    The RFC 8555 section 6.2 header rules, each with its problem type.
    """

    def test_algMissing(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, drop=("alg",)))

    def test_algNotString(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, extra={"alg": ["ES256"]}))

    def test_algNotAllowed(self) -> None:
        for alg in ("none", "HS256", "RS384", "RS512", "PS256", "ES256K", "Ed25519", "es256", ""):
            problem = self.assertProblem(ProblemType.BAD_SIGNATURE_ALGORITHM, sign(RSA_KEY, alg=alg))
            self.assertIsInstance(problem, BadSignatureAlgorithm)
            doc = problem.to_json()
            self.assertEqual(doc["type"], "urn:ietf:params:acme:error:badSignatureAlgorithm")
            self.assertEqual(doc["algorithms"], ["ES256", "ES384", "ES512", "EdDSA", "RS256"])
            self.assertIn("EdDSA", problem.detail)
            self.assertEqual(problem.status, 400)

    def test_hmacWithKid(self) -> None:
        # The classic confusion attack: HS256 keyed with the public key.
        body = sign(josepy.JWKOct(key=b"k" * 32), kid=KID)
        self.assertProblem(ProblemType.BAD_SIGNATURE_ALGORITHM, body)

    def test_bothJwkAndKid(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, kid=KID, jwk=P256_KEY.public_key().to_json()))

    def test_neitherJwkNorKid(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, kid=KID, drop=("kid",)))

    def test_kidNotString(self) -> None:
        for kid in ("", 1, None, [KID]):
            self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, kid=kid))

    def test_nonceMissing(self) -> None:
        self.assertProblem(ProblemType.BAD_NONCE, sign(P256_KEY, nonce=None))

    def test_nonceNotBase64url(self) -> None:
        for nonce in ("", "a+b", "abc=", 7, None, ["x"]):
            body = sign(P256_KEY, extra={"nonce": nonce})
            self.assertProblem(ProblemType.MALFORMED, body)

    def test_urlMissing(self) -> None:
        self.assertProblem(ProblemType.UNAUTHORIZED, sign(P256_KEY, url=None))

    def test_urlNotString(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, url=["https://acme.test/"]))

    def test_crit(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, sign(P256_KEY, extra={"crit": ["b64"], "b64": False}))


class KeyRejectionTests(ProblemAssertions):
    """
    Embedded keys must be public, supported, strong enough and fit C{alg}.
    """

    def withJwk(self, jwk: Any, alg: str = "ES256") -> bytes:
        return sign(P256_KEY, alg=alg, jwk=jwk)

    def test_jwkNotObject(self) -> None:
        for jwk in ("key", 1, None, [P256_KEY.public_key().to_json()]):
            self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk))

    def test_ktyMissing(self) -> None:
        jwk = P256_KEY.public_key().to_json()
        del jwk["kty"]
        self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk))

    def test_ktyUnsupported(self) -> None:
        for jwk in ({"kty": "oct", "k": "c2VjcmV0"}, {"kty": "DSA"}, {"kty": ""}):
            self.assertProblem(ProblemType.BAD_PUBLIC_KEY, self.withJwk(jwk))

    def test_privateKey(self) -> None:
        for alg, key in KEYS.items():
            jwk = key.to_json()
            self.assertIn("d", jwk)
            problem = self.assertProblem(ProblemType.BAD_PUBLIC_KEY, self.withJwk(jwk, alg))
            self.assertIn("private", problem.detail)

    def test_membersNotStrings(self) -> None:
        for alg, key in KEYS.items():
            public = key.public_key().to_json()
            for name in ("n", "e", "x", "y"):
                if name in public:
                    for bad in (5, None, "a+b", ""):
                        jwk = dict(public, **{name: bad})
                        self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk, alg))

    def test_memberMissing(self) -> None:
        for alg, key in KEYS.items():
            public = key.public_key().to_json()
            for name in ("n", "e", "x", "y"):
                if name in public:
                    jwk = {k: v for k, v in public.items() if k != name}
                    self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk, alg))

    def test_rsaTooSmall(self) -> None:
        small = josepy.JWKRSA(key=rsa.generate_private_key(65537, 1024))
        problem = self.assertProblem(ProblemType.BAD_PUBLIC_KEY, sign(small, alg="RS256"))
        self.assertIn("1024", problem.detail)

    def test_rsaLeadingZero(self) -> None:
        jwk = RSA_KEY.public_key().to_json()
        jwk["n"] = b64(b"\x00" + josepy.decode_b64jose(jwk["n"]))
        self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk, "RS256"))

    def test_rsaInvalidExponent(self) -> None:
        jwk = dict(RSA_KEY.public_key().to_json(), e=b64(b"\x02"))
        self.assertProblem(ProblemType.BAD_PUBLIC_KEY, self.withJwk(jwk, "RS256"))

    def test_ecUnsupportedCurve(self) -> None:
        for crv in ("P-192", "secp256k1", None, ["P-256"]):
            jwk = dict(P256_KEY.public_key().to_json(), crv=crv)
            self.assertProblem(ProblemType.BAD_PUBLIC_KEY, self.withJwk(jwk))

    def test_ecWrongLength(self) -> None:
        jwk = P256_KEY.public_key().to_json()
        jwk["x"] = b64(josepy.decode_b64jose(jwk["x"])[1:])
        self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk))

    def test_ecPointNotOnCurve(self) -> None:
        jwk = P256_KEY.public_key().to_json()
        y = josepy.decode_b64jose(jwk["y"])
        jwk["y"] = b64(y[:-1] + bytes([y[-1] ^ 1]))
        self.assertProblem(ProblemType.BAD_PUBLIC_KEY, self.withJwk(jwk))

    def test_okpUnsupportedCurve(self) -> None:
        for crv in ("Ed448", "X25519", "X448", None):
            jwk = {"kty": "OKP", "crv": crv, "x": b64(b"\x01" * 57)}
            problem = self.assertProblem(ProblemType.BAD_PUBLIC_KEY, self.withJwk(jwk, "EdDSA"))
            self.assertIn("Ed25519", problem.detail)

    def test_okpWrongLength(self) -> None:
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(b"\x01" * 31)}
        self.assertProblem(ProblemType.MALFORMED, self.withJwk(jwk, "EdDSA"))

    def test_algDoesNotFitKey(self) -> None:
        for alg, key in (
            ("ES256", RSA_KEY),
            ("ES256", P384_KEY),
            ("ES384", P256_KEY),
            ("ES512", P384_KEY),
            ("EdDSA", RSA_KEY),
            ("EdDSA", P256_KEY),
            ("RS256", ED_KEY),
            ("RS256", P256_KEY),
        ):
            body = sign(key, alg=alg)
            self.assertProblem(ProblemType.BAD_SIGNATURE_ALGORITHM, body)


class InnerKeyChangeTests(ProblemAssertions):
    """
    The inner keyChange JWS (RFC 8555 section 7.3.5).
    """

    def outer(self, new_key: josepy.JWK, inner: bytes | None = None) -> AcmeJWS:
        payload = inner if inner is not None else self.inner(new_key)
        jws = parse_jws(sign(P256_KEY, payload, kid=KID))
        jws.verify(P256_KEY)
        return jws

    def inner(self, new_key: josepy.JWK, **kw: Any) -> bytes:
        kw.setdefault("nonce", None)
        return sign(new_key, {"account": KID, "oldKey": P256_KEY.public_key().to_json()}, **kw)

    def test_valid(self) -> None:
        for new_key in KEYS.values():
            outer = self.outer(new_key)
            inner = parse_inner_keychange_jws(outer.payload, outer)
            self.assertEqual(inner.jwk, new_key.public_key())
            self.assertEqual(inner.nonce, "")
            self.assertEqual(inner.payload_json()["account"], KID)

    def test_parseInner(self) -> None:
        inner = parse_jws(self.inner(ED_KEY), inner=True)
        self.assertEqual(inner.url, URL)
        self.assertEqual(inner.alg, "EdDSA")

    def test_innerNonceRejected(self) -> None:
        problem = self.assertProblem(ProblemType.MALFORMED, self.inner(ED_KEY, nonce=NONCE), inner=True)
        self.assertIn("nonce", problem.detail)

    def test_innerNeedsNoNonceOuterDoes(self) -> None:
        self.assertProblem(ProblemType.BAD_NONCE, self.inner(ED_KEY))

    def test_innerKidRejected(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, self.inner(ED_KEY, kid=KID), inner=True)

    def test_innerUrlMissing(self) -> None:
        self.assertProblem(ProblemType.MALFORMED, self.inner(ED_KEY, url=None), inner=True)

    def test_innerUrlMismatch(self) -> None:
        outer = self.outer(ED_KEY, self.inner(ED_KEY, url=URL + "/other"))
        problem = self.assertRaises(AcmeProblem, parse_inner_keychange_jws, outer.payload, outer)
        self.assertEqual(problem.type, ProblemType.MALFORMED)
        self.assertIn("url", problem.detail)

    def test_innerSignedByOtherKey(self) -> None:
        # Claims the new key but is signed by the old one.
        inner = self.inner(P256_KEY, alg="ES256", jwk=P384_KEY.public_key().to_json(), extra={"alg": "ES384"})
        outer = self.outer(P384_KEY, inner)
        problem = self.assertRaises(AcmeProblem, parse_inner_keychange_jws, outer.payload, outer)
        self.assertEqual(problem.type, ProblemType.MALFORMED)
        self.assertEqual(problem.detail, "JWS signature is invalid")

    def test_innerNotJws(self) -> None:
        outer = self.outer(ED_KEY, b'{"account": "x"}')
        problem = self.assertRaises(AcmeProblem, parse_inner_keychange_jws, outer.payload, outer)
        self.assertEqual(problem.type, ProblemType.MALFORMED)


class KeyHelperTests(SynchronousTestCase):
    """
    Storing, loading, thumbprinting and unwrapping keys.
    """

    def test_roundTrip(self) -> None:
        for key in KEYS.values():
            stored = jwk_to_json(key)
            self.assertNotIn("d", stored)
            json.dumps(stored)
            self.assertEqual(jwk_from_json(stored), key.public_key())
            self.assertEqual(jwk_thumbprint(jwk_from_json(stored)), jwk_thumbprint(key))

    def test_fromJsonRejects(self) -> None:
        for obj, kind in (
            ("nope", ProblemType.MALFORMED),
            ({"kty": "RSA"}, ProblemType.MALFORMED),
            (RSA_KEY.to_json(), ProblemType.BAD_PUBLIC_KEY),
            ({"kty": "oct", "k": "AA"}, ProblemType.BAD_PUBLIC_KEY),
        ):
            problem = self.assertRaises(AcmeProblem, jwk_from_json, obj)
            self.assertEqual(problem.type, kind)

    def test_rfc7638Thumbprint(self) -> None:
        # RFC 7638 section 3.1.
        jwk = jwk_from_json(
            {
                "kty": "RSA",
                "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXj"  # noqa: E501
                "BZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
                "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_x"
                "BniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
                "e": "AQAB",
                "alg": "RS256",
                "kid": "2011-04-29",
            }
        )
        self.assertEqual(jwk_thumbprint(jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")

    def test_rfc8037Thumbprint(self) -> None:
        # RFC 8037 appendix A.3.
        jwk = jwk_from_json({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
        self.assertEqual(jwk_thumbprint(jwk), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")

    def test_publicKeyOf(self) -> None:
        cases: list[tuple[josepy.JWK, type]] = [
            (RSA_KEY, rsa.RSAPublicKey),
            (P256_KEY, ec.EllipticCurvePublicKey),
            (P521_KEY, ec.EllipticCurvePublicKey),
            (ED_KEY, ed25519.Ed25519PublicKey),
        ]
        for key, kind in cases:
            public = public_key_of(key)
            self.assertIsInstance(public, kind)
            spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            self.assertEqual(public.public_bytes(*spki), key.key.public_key().public_bytes(*spki))
            self.assertEqual(public_key_of(jwk_from_json(jwk_to_json(key))), public)

    def test_publicKeyOfSymmetric(self) -> None:
        problem = self.assertRaises(AcmeProblem, public_key_of, josepy.JWKOct(key=b"secret"))
        self.assertEqual(problem.type, ProblemType.BAD_PUBLIC_KEY)


class JWKOKPTests(SynchronousTestCase):
    """
    Ed25519 plugs into josepy like the built-in key types.
    """

    def test_rfc8037Signature(self) -> None:
        # RFC 8037 appendix A.4: Ed25519 is deterministic.
        key = josepy.JWK.from_json(
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            }
        )
        assert isinstance(key, JWKOKP)
        signature = EdDSA.sign(key.key, b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc")
        self.assertEqual(
            b64(signature), "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        )

    def test_josepySignVerify(self) -> None:
        jws = josepy.JWS.sign(b"payload", key=ED_KEY, alg=EdDSA, protect=frozenset(["alg", "jwk"]))
        loaded = josepy.JWS.json_loads(jws.json_dumps())
        self.assertTrue(loaded.verify())
        self.assertEqual(josepy.JWASignature.from_json("EdDSA"), EdDSA)

    def test_load(self) -> None:
        pem = ED_PRIVATE.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.assertEqual(josepy.JWK.load(pem), ED_KEY)

    def test_jsonRoundTrip(self) -> None:
        self.assertEqual(josepy.JWK.from_json(ED_KEY.to_json()), ED_KEY)
        self.assertEqual(set(ED_KEY.public_key().to_json()), {"kty", "crv", "x"})

    def test_equality(self) -> None:
        same = JWKOKP(key=ed25519.Ed25519PrivateKey.from_private_bytes(ED_PRIVATE.private_bytes_raw()))
        self.assertEqual(same, ED_KEY)
        self.assertEqual(hash(same), hash(ED_KEY))
        self.assertNotEqual(ED_KEY.public_key(), ED_KEY)
        self.assertEqual(len({ED_KEY.public_key(), same.public_key()}), 1)

    def test_ed448(self) -> None:
        exc = self.assertRaises(
            josepy.DeserializationError, JWKOKP.from_json, {"kty": "OKP", "crv": "Ed448", "x": b64(b"\x00" * 57)}
        )
        self.assertIn("Ed448", str(exc))

    def test_mismatchedPrivate(self) -> None:
        jwk = dict(ED_KEY.to_json(), x=b64(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()))
        self.assertRaises(josepy.DeserializationError, JWKOKP.from_json, jwk)

    def test_signWithPublicKey(self) -> None:
        self.assertRaises(josepy.Error, EdDSA.sign, ED_KEY.public_key().key, b"msg")


def _b64s() -> st.SearchStrategy[str]:
    return st.binary(max_size=80).map(b64)


_json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | _b64s()
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_jwk = st.fixed_dictionaries(
    {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct", "x"]) | _json_leaf},
    optional={
        "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "Ed448"]) | _json_leaf,
        "x": _b64s() | _json_leaf,
        "y": _b64s() | _json_leaf,
        "n": st.sampled_from([RSA_KEY.public_key().to_json()["n"]]) | _b64s() | _json_leaf,
        "e": st.sampled_from(["AQAB", "Aw", "AA", "Ag"]) | _json_leaf,
        "d": _json_leaf,
    },
) | st.sampled_from([k.public_key().to_json() for k in KEYS.values()])
_header = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(sorted(ALLOWED_ALGORITHMS) + ["none", "HS256"]) | _json_leaf,
        "jwk": _jwk | _json,
        "kid": st.just(KID) | _json_leaf,
        "nonce": st.just(NONCE) | _json_leaf,
        "url": st.just(URL) | _json_leaf,
        "crit": _json,
    },
)


class FuzzTests(SynchronousTestCase):
    """
    Whatever arrives, the only exception is an L{AcmeProblem}.
    """

    def exercise(self, body: bytes, **kw: Any) -> None:
        try:
            jws = parse_jws(body, **kw)
        except AcmeProblem:
            return
        for key in [jws.jwk, *KEYS.values()]:
            if key is not None:
                try:
                    jws.verify(key)
                except AcmeProblem:
                    pass
        try:
            jws.payload_json()
        except AcmeProblem:
            pass

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300))
    def test_arbitraryBytes(self, body: bytes) -> None:
        self.exercise(body)

    @settings(max_examples=300, deadline=None)
    @given(_json)
    def test_arbitraryJson(self, obj: Any) -> None:
        self.exercise(json.dumps(obj).encode())

    @settings(max_examples=500, deadline=None)
    @given(_header, st.binary(max_size=40), st.binary(max_size=140), st.booleans())
    def test_arbitraryHeaders(self, header: dict[str, Any], payload: bytes, signature: bytes, inner: bool) -> None:
        self.exercise(flattened(header, b64(payload), b64(signature)), inner=inner)

    @settings(max_examples=200, deadline=None)
    @given(_jwk | _json)
    def test_arbitraryJwkFromJson(self, obj: Any) -> None:
        try:
            key = jwk_from_json(obj)
        except AcmeProblem:
            return
        jwk_thumbprint(key)
        jwk_to_json(key)
        public_key_of(key)
