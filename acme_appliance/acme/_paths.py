"""
The C{/acme/<token>/...} URL layout: building URLs, and reading (or hiding)
the token and the resource in a request path.
"""

from __future__ import annotations

import re

from attrs import frozen

ACME_SEGMENT = b"acme"
REDACTED_TOKEN = b"<token>"

# Metric labels: a resource name as the server routes them.
_LABEL = re.compile(rb"[a-z][a-z0-9.-]{0,31}")


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
    (C{new-order}, C{order}, ...), else the first path segment; anything
    odd is C{other}, so that clients cannot invent label values.
    """
    parts, acme = _segments(path)
    segment = parts[3] if acme and len(parts) > 3 else parts[1] if len(parts) > 1 else b""
    if not segment:
        return "/"
    return segment.decode() if _LABEL.fullmatch(segment) else "other"


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
