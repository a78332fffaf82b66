"""
The C{/acme/<token>/...} URL layout: building URLs, and reading (or hiding)
the token and the resource in a request path.
"""

from __future__ import annotations

from attrs import frozen

ACME_SEGMENT = b"acme"
REDACTED_TOKEN = b"<token>"

# Metric labels, a closed set: the resources the ACME server routes after
# the token, and the first path segments the admin API, the dashboard and the
# file proxy route.  Anything else is counted as OTHER_ENDPOINT.
ACME_RESOURCES = frozenset(
    {
        "directory",
        "new-nonce",
        "new-account",
        "acct",
        "key-change",
        "new-order",
        "order",
        "authz",
        "chall",
        "cert",
        "issuer",
        "revoke-cert",
    }
)
TOP_SEGMENTS = frozenset({"acme", "health", "metrics", "cas", "tokens", "orders", "dashboard.json", ".well-known"})
OTHER_ENDPOINT = "other"
ROOT_ENDPOINT = "/"


def resource_url(base_url: str, secret: str, *parts: str) -> str:
    """
    The URL of a resource under a token's directory.
    """
    return "/".join((base_url.rstrip("/"), ACME_SEGMENT.decode(), secret, *parts))


def directory_url(base_url: str, secret: str) -> str:
    """
    The directory URL a token's clients are configured with.
    """
    return resource_url(base_url, secret, "directory")


def _segments(path: bytes) -> tuple[list[bytes], bool]:
    parts = path.split(b"/")
    return parts, len(parts) > 2 and parts[1] == ACME_SEGMENT


def secret_of(path: bytes) -> str | None:
    """
    The directory token in a request path, if it is an ACME path.
    """
    parts, acme = _segments(path)
    return parts[2].decode("ascii", "replace") if acme and parts[2] else None


def redact_token(path: bytes) -> bytes:
    """
    The request path (or URI) with the directory token hidden: tokens are
    secrets and must never reach a log.
    """
    parts, acme = _segments(path)
    if acme:
        parts[2] = REDACTED_TOKEN
    return b"/".join(parts)


def endpoint_of(path: bytes) -> str:
    """
    The metrics label of a request path: the ACME resource after the token
    (C{new-order}, C{order}, ...; one of L{ACME_RESOURCES}), else the
    first path segment (one of L{TOP_SEGMENTS}), C{/} for the root;
    anything else is C{other}, so that clients cannot invent label values.
    """
    parts, acme = _segments(path)
    if acme and len(parts) > 3:
        segment, known = parts[3], ACME_RESOURCES
    else:
        segment, known = (parts[1] if len(parts) > 1 else b""), TOP_SEGMENTS
    if not segment:
        return ROOT_ENDPOINT
    label = segment.decode("ascii", "replace")
    return label if label in known else OTHER_ENDPOINT


def account_id_of(base_url: str, secret: str, kid: str) -> str | None:
    """
    The account id a C{kid} names, if it is an account URL of this
    directory.
    """
    prefix = resource_url(base_url, secret, "acct") + "/"
    rest = kid[len(prefix) :]
    return rest if kid.startswith(prefix) and "/" not in rest else None


@frozen
class DirectoryUrls:
    """
    The URLs of one token's directory.
    """

    base_url: str
    secret: str

    def __call__(self, *parts: str) -> str:
        return resource_url(self.base_url, self.secret, *parts)
