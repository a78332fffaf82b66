"""
ACME on the wire, for the server and the upstream client alike: JWS
(parsing, verifying, signing), JWKs and the RFC 8555 messages as josepy
objects.
"""

from . import _messages as messages
from ._jws import (
    ALLOWED_ALGORITHMS,
    JWKOKP,
    AcmeJWS,
    BadSignatureAlgorithm,
    EdDSA,
    PublicKey,
    b64decode,
    jwk_from_json,
    jwk_thumbprint,
    jwk_to_json,
    parse_inner_keychange_jws,
    parse_jws,
    public_key_of,
    sign_flattened,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "JWKOKP",
    "AcmeJWS",
    "BadSignatureAlgorithm",
    "EdDSA",
    "PublicKey",
    "b64decode",
    "jwk_from_json",
    "jwk_thumbprint",
    "jwk_to_json",
    "messages",
    "parse_inner_keychange_jws",
    "parse_jws",
    "public_key_of",
    "sign_flattened",
]
