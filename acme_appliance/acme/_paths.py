"""
The C{/acme/<token>/...} URL layout: building URLs, and reading (or hiding)
the token and the resource in a request path.
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes, unquote_to_bytes

from attrs import field, frozen

ACME_SEGMENT = b"acme"
REDACTED_TOKEN = b"<token>"
REDACTED_VALUE = b"<redacted>"
_ACME = ACME_SEGMENT.decode()
# What a decoded path segment may show unescaped in a log line.
_SAFE = "-._~!$&'()*+,;=:@"

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
        "renewal-info",
        "renewal-explanation",
    }
)
TOP_SEGMENTS = frozenset(
    {"acme", "health", "metrics", "cas", "tokens", "orders", "dashboard.json", ".well-known", "renew-now"}
)
OTHER_ENDPOINT = "other"
ROOT_ENDPOINT = "/"


def resource_url(base_url: str, secret: str, *parts: str) -> str:
    """
    The URL of a resource under a token's directory.
    """
    return "/".join((base_url.rstrip("/"), _ACME, secret, *parts))


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


def _routed(path: bytes) -> list[bytes]:
    """
    The non-empty segments of C{path} as routing sees them: each raw
    segment percent-decoded (as twisted.web does), joined and split again
    (Klein joins them), empty and C{.} segments dropped (the router merges
    slashes).
    """
    decoded = b"/".join(unquote_to_bytes(segment) for segment in path.split(b"/"))
    return [segment for segment in decoded.split(b"/") if segment not in (b"", b".")]


def redact_token(path: bytes) -> bytes:
    """
    The request path with the directory token hidden, however it is
    spelled (percent-encoded, with doubled slashes): tokens are secrets
    and must never reach a log.  A path that routes to a token's directory
    is logged decoded, as C{/acme/<token>/...}; any other path as it came.
    """
    segments = _routed(path)
    if len(segments) < 2 or segments[0].lower() != ACME_SEGMENT:
        return path
    rest = [quote_from_bytes(segment, safe=_SAFE) for segment in segments[2:]]
    return b"/".join([b"", ACME_SEGMENT, REDACTED_TOKEN, *(r.encode() for r in rest)])


def _redact_query(query: bytes, secret_names: frozenset[str]) -> bytes:
    # twisted.web splits parameters at "&" and ";" and decodes each name;
    # a secret's value is hidden up to the next "&", ";"-parts included.
    parts = []
    for part in query.split(b"&"):
        items = part.split(b";")
        for i, item in enumerate(items):
            name, equals, _ = item.partition(b"=")
            if equals and unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace") in secret_names:
                part = b";".join([*items[:i], name + b"=" + REDACTED_VALUE])
                break
        parts.append(part)
    return b"&".join(parts)


def redact_uri(uri: bytes, secret_parameters: frozenset[str] = frozenset({"key"})) -> bytes:
    """
    A request URI fit for a log: the directory token hidden as
    L{redact_token} does, and the value of every query parameter whose
    decoded name is in C{secret_parameters} (the dashboard's log-in
    C{key}) replaced, however the name is spelled.
    """
    path, question, query = uri.partition(b"?")
    return redact_token(path) + question + _redact_query(query, secret_parameters)


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
    # resource_url(base_url, secret, ""): what every URL of the directory starts with.
    _prefix: str = field(init=False, repr=False, eq=False)

    @_prefix.default
    def _directory_prefix(self) -> str:
        return resource_url(self.base_url, self.secret, "")

    def __call__(self, *parts: str) -> str:
        return self._prefix + "/".join(parts) if parts else resource_url(self.base_url, self.secret)
