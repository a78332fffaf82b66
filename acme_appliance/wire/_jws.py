"""
JWS requests as RFC 8555 section 6.2 wants them: the flattened JSON
serialization (RFC 7515 section 7.2.2) with everything in the protected
header.

josepy knows RSA and ECDSA keys; this module adds Ed25519 (RFC 8037: the
C{OKP} key type and the C{EdDSA} algorithm) and does the ACME-specific
header checks.  Every failure is an L{AcmeProblem}.
"""

from __future__ import annotations

import json
import re
from base64 import urlsafe_b64decode
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import josepy
from attrs import frozen
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..core import AcmeProblem, ProblemType, malformed

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256", "ES384", "ES512", "EdDSA"})

RSA_MIN_BITS = 2048
# Verification cost grows with the modulus; nothing real uses more.
RSA_MAX_BITS = 8192

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_COMPACT = re.compile(rb"\s*[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\s*")
_FLATTENED_MEMBERS = frozenset({"protected", "payload", "signature"})
# RFC 7517/7518/8037 private key members: a client must never send them.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


# -- Ed25519 for josepy (RFC 8037) ---------------------------------------


@josepy.JWK.register
class JWKOKP(josepy.JWK):
    """
    An RFC 8037 octet key pair JWK; only C{crv} C{Ed25519} is supported.

    @ivar key: an C{Ed25519PublicKey} or C{Ed25519PrivateKey}.
    """

    typ = "OKP"
    __slots__ = ("key",)
    cryptography_key_types = (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)
    required = ("crv", josepy.JWK.type_field_name, "x")
    key: ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey

    def _identity(self) -> tuple[bool, bytes]:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return (True, self.key.private_bytes_raw())
        return (False, self.key.public_bytes_raw())

    # cryptography's Ed25519 keys are unhashable and private ones compare by
    # identity; josepy JWKs are expected to be values.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JWKOKP):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((JWKOKP, self._identity()))

    def public_key(self) -> JWKOKP:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return type(self)(key=self.key.public_key())
        return self

    def fields_to_partial_json(self) -> dict[str, str]:
        params: dict[str, str] = {"crv": "Ed25519"}
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            params["d"] = josepy.encode_b64jose(self.key.private_bytes_raw())
            public = self.key.public_key()
        else:
            public = self.key
        params["x"] = josepy.encode_b64jose(public.public_bytes_raw())
        return params

    @classmethod
    def fields_from_json(cls, jobj: Mapping[str, Any]) -> JWKOKP:
        crv = jobj.get("crv")
        if crv == "Ed448":
            raise josepy.DeserializationError("Ed448 keys are not supported; use Ed25519")
        if crv != "Ed25519":
            raise josepy.DeserializationError(f"unsupported OKP curve {crv!r}; only Ed25519 is supported")
        x = _okp_param(jobj, "x")
        try:
            public = ed25519.Ed25519PublicKey.from_public_bytes(x)
        except ValueError as e:
            raise josepy.DeserializationError(f"invalid Ed25519 public key: {e}")
        if "d" not in jobj:
            return cls(key=public)
        private = ed25519.Ed25519PrivateKey.from_private_bytes(_okp_param(jobj, "d"))
        if private.public_key().public_bytes_raw() != x:
            raise josepy.DeserializationError("Ed25519 'd' does not match 'x'")
        return cls(key=private)


def _okp_param(jobj: Mapping[str, Any], name: str) -> bytes:
    value = jobj.get(name)
    if not isinstance(value, str):
        raise josepy.DeserializationError(f"OKP '{name}' must be a base64url string")
    return josepy.decode_b64jose(value, size=32)


class _JWAEdDSA(josepy.JWASignature):
    kty = JWKOKP

    def sign(self, key: ed25519.Ed25519PrivateKey, msg: bytes) -> bytes:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise josepy.Error("Public key cannot be used for signing")
        return key.sign(msg)

    def verify(self, key: ed25519.Ed25519PublicKey, msg: bytes, sig: bytes) -> bool:
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


#: Ed25519 signatures (RFC 8037 section 3.1).
EdDSA = josepy.JWASignature.register(_JWAEdDSA("EdDSA"))

_EC_CURVE_FOR_ALG = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_EC_COORDINATE_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}
# What verifying takes per algorithm, made once: the size of r and s in a
# raw (RFC 7518 section 3.4) ECDSA signature and the signature algorithm.
_ECDSA = {
    "ES256": (32, ec.ECDSA(hashes.SHA256())),
    "ES384": (48, ec.ECDSA(hashes.SHA384())),
    "ES512": (66, ec.ECDSA(hashes.SHA512())),
}
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


# -- problems -------------------------------------------------------------


class BadSignatureAlgorithm(AcmeProblem):
    """
    A C{badSignatureAlgorithm} problem carrying the RFC 8555 section 6.2
    C{algorithms} member.

    @ivar algorithms: the algorithms the server accepts, sorted.
    """

    def __init__(self, detail: str) -> None:
        self.algorithms = tuple(sorted(ALLOWED_ALGORITHMS))
        super().__init__(
            ProblemType.BAD_SIGNATURE_ALGORITHM, f"{detail}; supported algorithms: {', '.join(self.algorithms)}"
        )

    def to_json(self) -> dict[str, Any]:
        doc = super().to_json()
        doc["algorithms"] = list(self.algorithms)
        return doc


def _bad_key(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.BAD_PUBLIC_KEY, detail)


# -- decoding helpers -----------------------------------------------------


class _DuplicateMember(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateMember(name)
            seen.add(name)
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """
    Decode UTF-8 JSON that must be an object; duplicate member names are
    refused (RFC 7515 section 5.2) so no two parsers can read it differently.
    """
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except _DuplicateMember as e:
        raise malformed(f"{what} has a duplicate member {str(e)!r}")
    except UnicodeDecodeError:
        raise malformed(f"{what} is not UTF-8")
    except (ValueError, RecursionError) as e:
        raise malformed(f"{what} is not valid JSON: {e}")
    if not isinstance(value, dict):
        raise malformed(f"{what} must be a JSON object")
    return value


def b64decode(value: Any, what: str) -> bytes:
    """
    Strict base64url without padding (RFC 7515 section 2).
    """
    if not isinstance(value, str):
        raise malformed(f"{what} must be a base64url string")
    if not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise malformed(f"{what} is not valid unpadded base64url")
    return urlsafe_b64decode(value + "=" * (-len(value) % 4))


# -- keys -----------------------------------------------------------------


def _key_b64(jobj: Mapping[str, Any], name: str, kty: str, size: int | None = None) -> bytes:
    if name not in jobj:
        raise malformed(f"{kty} jwk is missing {name!r}")
    value = b64decode(jobj[name], f"{kty} jwk member {name!r}")
    if size is not None and len(value) != size:
        raise malformed(f"{kty} jwk member {name!r} must be {size} bytes, not {len(value)}")
    return value


class JwkCache:
    """
    The last C{size} public JWKs parsed, by their members: an account's
    key (embedded or stored) is checked and loaded once, not per request,
    and so is the C{cryptography} key that verifies its signatures.  Only
    keys that passed every check are kept.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._keys: OrderedDict[Hashable, josepy.JWK] = OrderedDict()
        # id() of a kept JWK -> its public key; an entry lives exactly as
        # long as its JWK is in _keys, so an id is never reused meanwhile.
        self._public: dict[int, PublicKey] = {}

    def parse(self, jobj: Any) -> josepy.JWK:
        """L{_load_jwk} of C{jobj}, from the cache when seen lately."""
        if not isinstance(jobj, dict):
            raise malformed("jwk must be a JSON object")
        name = _members(jobj)
        if name is None:
            return _load_jwk(jobj)
        jwk = self._keys.get(name)
        if jwk is not None:
            self._keys.move_to_end(name)
            return jwk
        jwk = self._keys[name] = _load_jwk(jobj)
        self._public[id(jwk)] = _public_key_of(jwk)
        if len(self._keys) > self.size:
            _, old = self._keys.popitem(last=False)
            del self._public[id(old)]
        return jwk

    def public_key(self, jwk: josepy.JWK) -> PublicKey:
        """L{public_key_of} C{jwk}, made once for a JWK this cache parsed."""
        key = self._public.get(id(jwk))
        return _public_key_of(jwk) if key is None else key


def _members(jobj: dict[str, Any]) -> Hashable | None:
    """
    A JWK's members as a value that is the same whatever their order, or
    C{None} when they are not JSON.
    """
    if all(type(value) is str for value in jobj.values()):
        # The usual JWK: strings only; sorting compares the (unique) names alone.
        return tuple(sorted(jobj.items()))
    try:
        return json.dumps(jobj, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def _load_jwk(jobj: dict[str, Any]) -> josepy.JWK:
    kty = jobj.get("kty")
    if not isinstance(kty, str):
        raise malformed("jwk must have a string 'kty'")
    private = [m for m in _PRIVATE_MEMBERS if m in jobj]
    if private:
        raise _bad_key(f"jwk must be a public key; it contains private member(s) {', '.join(private)}")
    if kty == "RSA":
        n = _key_b64(jobj, "n", kty)
        e = _key_b64(jobj, "e", kty)
        # Base64urlUInt is minimal (RFC 7518 6.3.1); padding would change the thumbprint.
        if not n or n[0] == 0 or not e or e[0] == 0:
            raise malformed("RSA jwk 'n' and 'e' must be minimal non-empty big-endian integers")
        bits = int.from_bytes(n, "big").bit_length()
        if bits < RSA_MIN_BITS:
            raise _bad_key(f"RSA key is {bits} bits; at least {RSA_MIN_BITS} are required")
        if bits > RSA_MAX_BITS:
            raise _bad_key(f"RSA key is {bits} bits; at most {RSA_MAX_BITS} are supported")
    elif kty == "EC":
        crv = jobj.get("crv")
        if not isinstance(crv, str) or crv not in _EC_COORDINATE_SIZES:
            raise _bad_key(f"unsupported EC curve {crv!r}; use one of {', '.join(_EC_COORDINATE_SIZES)}")
        _key_b64(jobj, "x", kty, _EC_COORDINATE_SIZES[crv])
        _key_b64(jobj, "y", kty, _EC_COORDINATE_SIZES[crv])
    elif kty == "OKP":
        crv = jobj.get("crv")
        if crv != "Ed25519":
            raise _bad_key(f"unsupported OKP curve {crv!r}; only Ed25519 is supported")
        _key_b64(jobj, "x", kty, 32)
    else:
        raise _bad_key(f"unsupported key type {kty!r}; use RSA, EC or OKP (Ed25519)")
    try:
        jwk = josepy.JWK.from_json(jobj)
    except (josepy.Error, ValueError, TypeError, UnsupportedAlgorithm) as e:
        # Well-formed members that do not make a key: off-curve point, even e...
        raise _bad_key(f"jwk is not a valid {kty} public key: {e}")
    assert isinstance(jwk, josepy.JWK)
    return jwk


#: The JWKs parsed lately, shared by every request.
_jwk_cache = JwkCache()
_parse_jwk = _jwk_cache.parse


def _check_alg_for_key(alg: str, jwk: josepy.JWK) -> None:
    if alg == "RS256":
        ok = isinstance(jwk, josepy.JWKRSA)
    elif alg in _EC_CURVE_FOR_ALG:
        ok = isinstance(jwk, josepy.JWKEC) and jwk.key.curve.name == _EC_CURVE_FOR_ALG[alg]
    elif alg == "EdDSA":
        ok = isinstance(jwk, JWKOKP)
    else:
        ok = False
    if not ok:
        raise BadSignatureAlgorithm(f"alg {alg!r} cannot be used with {_describe(jwk)}")


def _describe(jwk: josepy.JWK) -> str:
    if isinstance(jwk, josepy.JWKEC):
        return f"an EC {jwk.key.curve.name} key"
    if isinstance(jwk, JWKOKP):
        return "an Ed25519 key"
    if isinstance(jwk, josepy.JWKRSA):
        return "an RSA key"
    return f"a {jwk.typ} key"


def jwk_from_json(obj: Any) -> josepy.JWK:
    """
    Load a public JWK (a stored account key, a keyChange C{oldKey}).

    @raise AcmeProblem: C{malformed} when it does not decode,
        C{badPublicKey} when it is private, weak or of an unsupported type.
    """
    return _parse_jwk(obj)


def jwk_to_json(jwk: josepy.JWK) -> dict[str, Any]:
    """
    The public part of C{jwk} as a JSON object, for storing.
    """
    result: dict[str, Any] = jwk.public_key().to_json()
    return result


def jwk_thumbprint(jwk: josepy.JWK) -> str:
    """
    The base64url SHA-256 JWK thumbprint (RFC 7638; RFC 8037 for OKP).
    """
    return josepy.encode_b64jose(jwk.thumbprint())


def public_key_of(jwk: josepy.JWK) -> PublicKey:
    """
    The C{cryptography} public key of C{jwk}, e.g. to compare with a CSR's
    (made once for a JWK that L{jwk_from_json} or a JWS parsed lately).

    @raise AcmeProblem: C{badPublicKey} for a key type with no public key.
    """
    return _jwk_cache.public_key(jwk)


def _public_key_of(jwk: josepy.JWK) -> PublicKey:
    key = jwk.public_key().key
    if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        return key
    if isinstance(key, josepy.ComparableKey):
        # josepy wraps RSA and EC keys; SPKI round-trips them to the plain type.
        loaded = serialization.load_der_public_key(
            key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        if isinstance(loaded, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            return loaded
    raise _bad_key(f"{_describe(jwk)} is not a supported public key")


# -- requests -------------------------------------------------------------


@frozen
class AcmeJWS:
    """
    A parsed JWS request whose signature has not been checked yet; call
    L{AcmeJWS.verify}.

    @ivar alg: one of L{ALLOWED_ALGORITHMS}.
    @ivar nonce: the anti-replay nonce; C{""} for an inner keyChange JWS.
    @ivar url: the C{url} header.
    @ivar jwk: the embedded public key, or C{None} when C{kid} is set.
    @ivar kid: the account URL, or C{None} when C{jwk} is set.
    @ivar payload: the decoded payload; C{b""} for POST-as-GET.
    @ivar protected: the decoded protected header.
    @ivar signing_input: C{BASE64URL(protected) || '.' || BASE64URL(payload)}.
    @ivar signature: the decoded signature.
    """

    alg: str
    nonce: str
    url: str
    jwk: josepy.JWK | None
    kid: str | None
    payload: bytes
    protected: dict[str, Any]
    signing_input: bytes
    signature: bytes

    def verify(self, jwk: josepy.JWK) -> None:
        """
        Check the signature with C{jwk} (the embedded key or the account's).

        @raise AcmeProblem: C{badSignatureAlgorithm} when C{alg} does not fit
            the key, C{malformed} when the signature is invalid.
        """
        _check_alg_for_key(self.alg, jwk)
        try:
            _verify_signature(self.alg, _jwk_cache.public_key(jwk), self.signing_input, self.signature)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            raise malformed("JWS signature is invalid") from None

    def payload_json(self) -> dict[str, Any]:
        """
        The payload as a JSON object.

        @raise AcmeProblem: C{malformed} for POST-as-GET, non-JSON or a
            non-object.
        """
        if not self.payload:
            raise malformed("this request needs a JSON object payload, not an empty (POST-as-GET) one")
        return _json_object(self.payload, "JWS payload")


def _verify_signature(alg: str, key: PublicKey, message: bytes, signature: bytes) -> None:
    """
    Check C{signature} with C{key}, whose type L{_check_alg_for_key} has
    matched with C{alg}.

    @raise InvalidSignature: when it does not verify.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        size, algorithm = _ECDSA[alg]
        # RFC 7518 section 3.4: r and s at full length, never shortened.
        if len(signature) != 2 * size:
            raise InvalidSignature()
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        key.verify(encode_dss_signature(r, s), message, algorithm)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, message, _PKCS1V15, _SHA256)
    else:
        key.verify(signature, message)


@frozen
class _Flattened:
    """
    The decoded members of a flattened JSON JWS.
    """

    header: dict[str, Any]
    payload: bytes
    signature: bytes
    signing_input: bytes


def _flattened(body: bytes, what: str) -> _Flattened:
    if _COMPACT.fullmatch(body):
        raise malformed(f"{what} must use the flattened JSON serialization, not the compact one")
    outer = _json_object(body, f"{what} body")
    if "signatures" in outer:
        raise malformed(f"{what} must use the flattened JSON serialization, not the general one ('signatures')")
    if "header" in outer:
        raise malformed(f"{what} must not have an unprotected 'header'; put everything in 'protected'")
    if outer.keys() != _FLATTENED_MEMBERS:
        missing = sorted(_FLATTENED_MEMBERS - outer.keys())
        if missing:
            raise malformed(f"{what} is missing {', '.join(missing)}")
        extra = sorted(outer.keys() - _FLATTENED_MEMBERS)
        raise malformed(f"{what} has unexpected member(s) {', '.join(extra)}")
    protected_b64 = outer["protected"]
    payload_b64 = outer["payload"]
    protected_raw = b64decode(protected_b64, f"{what} 'protected'")
    payload = b64decode(payload_b64, f"{what} 'payload'")
    signature = b64decode(outer["signature"], f"{what} 'signature'")
    if not signature:
        raise malformed(f"{what} 'signature' is empty")
    return _Flattened(
        header=_json_object(protected_raw, f"{what} protected header"),
        payload=payload,
        signature=signature,
        signing_input=f"{protected_b64}.{payload_b64}".encode("ascii"),
    )


def _alg_of(header: Mapping[str, Any], what: str) -> str:
    if "crit" in header:
        raise malformed(f"{what} 'crit' header is not supported")
    if "alg" not in header:
        raise malformed(f"{what} protected header has no 'alg'")
    alg = header["alg"]
    if not isinstance(alg, str):
        raise malformed(f"{what} 'alg' must be a string")
    if alg not in ALLOWED_ALGORITHMS:
        raise BadSignatureAlgorithm(f"{what} alg {alg!r} is not supported")
    return alg


def _key_of(header: Mapping[str, Any], alg: str, what: str, inner: bool) -> tuple[josepy.JWK | None, str | None]:
    """
    The C{jwk} or the C{kid} of a protected header (exactly one is there).
    """
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise malformed(f"{what} protected header must have exactly one of 'jwk' and 'kid'")
    if has_jwk:
        jwk = _parse_jwk(header["jwk"])
        _check_alg_for_key(alg, jwk)
        return jwk, None
    if inner:
        raise malformed("inner JWS must carry the new key as 'jwk', not 'kid'")
    kid = header["kid"]
    if not isinstance(kid, str) or not kid:
        raise malformed("JWS 'kid' must be a non-empty string (the account URL)")
    return None, kid


def _nonce_of(header: Mapping[str, Any], inner: bool) -> str:
    if inner:
        if "nonce" in header:
            raise malformed("inner JWS must not have a 'nonce'")
        return ""
    if "nonce" not in header:
        raise AcmeProblem(ProblemType.BAD_NONCE, "JWS protected header has no 'nonce'")
    nonce = header["nonce"]
    # RFC 8555 section 6.5.2: a nonce that is not base64url is malformed.
    if not isinstance(nonce, str) or not nonce or not _B64URL.fullmatch(nonce):
        raise malformed("JWS 'nonce' must be a non-empty base64url string")
    return nonce


def _url_of(header: Mapping[str, Any], what: str, inner: bool) -> str:
    if "url" not in header:
        if inner:
            raise malformed("inner JWS must have the same 'url' as the outer JWS")
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "JWS protected header has no 'url'")
    url = header["url"]
    if not isinstance(url, str):
        raise malformed(f"{what} 'url' must be a string")
    return url


def parse_jws(body: bytes, *, inner: bool = False) -> AcmeJWS:
    """
    Parse a flattened JSON JWS and check its protected header.

    @param inner: parse the inner JWS of a keyChange (RFC 8555 section
        7.3.5): C{jwk} required, C{nonce} forbidden.
    @raise AcmeProblem: with the RFC 8555 type for each rule broken.
    """
    what = "inner JWS" if inner else "JWS"
    flattened = _flattened(body, what)
    header = flattened.header
    alg = _alg_of(header, what)
    jwk, kid = _key_of(header, alg, what, inner)
    nonce = _nonce_of(header, inner)
    return AcmeJWS(
        alg=alg,
        nonce=nonce,
        url=_url_of(header, what, inner),
        jwk=jwk,
        kid=kid,
        payload=flattened.payload,
        protected=header,
        signing_input=flattened.signing_input,
        signature=flattened.signature,
    )


def parse_inner_keychange_jws(body: bytes, outer: AcmeJWS) -> AcmeJWS:
    """
    Parse and verify the inner JWS of a keyChange request (RFC 8555
    section 7.3.5): it is signed by the new key it embeds and repeats the
    outer C{url}.

    @param body: the outer JWS payload.
    @param outer: the outer JWS, already verified with the account key.
    """
    inner = parse_jws(body, inner=True)
    if inner.url != outer.url:
        raise malformed("the inner JWS url must equal the outer JWS url")
    assert inner.jwk is not None
    inner.verify(inner.jwk)
    return inner


# -- signing (the CA client's side) ---------------------------------------


def sign_flattened(key: Any, alg: josepy.JWASignature, protected: Mapping[str, Any], payload: bytes) -> bytes:
    """
    A flattened JSON JWS over C{payload} (C{b""} for POST-as-GET) with
    C{protected} as its header, signed with C{key} (a C{cryptography}
    private key, or the secret C{bytes} for HS256).
    """
    header = josepy.encode_b64jose(json.dumps(dict(protected), separators=(",", ":")).encode())
    data = josepy.encode_b64jose(payload)
    signature = alg.sign(key, f"{header}.{data}".encode("ascii"))
    return json.dumps({"protected": header, "payload": data, "signature": josepy.encode_b64jose(signature)}).encode()
