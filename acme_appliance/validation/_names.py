"""
The names validation values are keyed by: customer domains (DNS), HTTP hosts
and the two well-known paths the file proxy serves.
"""

from __future__ import annotations

import ipaddress
import re

from ..core import InvalidName, normalise_name

ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
PKI_VALIDATION_PREFIX = "/.well-known/pki-validation/"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
# File names may hold dots (C{ABC123.txt}) but never start with one, so
# C{.} and C{..} (and hidden files) are impossible.
_FILE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
_PORT = re.compile(r"[0-9]{0,5}")


class InvalidValue(ValueError):
    """
    A validation value, path, body or lifetime the appliance will not store
    or serve.
    """


def normalise_domain(name: str) -> str:
    """
    A customer domain as the owner of dcv TXT values: lower case, no trailing
    dot, A-labels only, no wildcard (the values for C{*.example.com} live at
    C{example.com}).

    @raise InvalidName: with a sentence saying what is wrong.
    """
    return normalise_name(name, allow_wildcard=False)


def normalise_host(host: str) -> str:
    """
    An HTTP host a validation file is served for: a DNS name (normalised as
    by L{normalise_domain}) or an IP address literal (IPv6 in brackets or
    bare), in its canonical text form.

    @raise InvalidName: with a sentence saying what is wrong.
    """
    if not isinstance(host, str):
        raise InvalidName("a host must be a string")
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise InvalidName(f"{host!r} is not an IPv6 address in brackets") from None
    if ":" in host:
        if "%" in host:
            raise InvalidName(f"{host!r}: IPv6 scope identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise InvalidName(f"{host!r} is neither a DNS name nor an IP address") from None
    try:
        return ipaddress.IPv4Address(host).compressed
    except ValueError:
        pass
    return normalise_name(host, allow_wildcard=False)


def host_from_header(value: bytes) -> str:
    """
    The normalised host of an HTTP C{Host} header: the port, the brackets of
    an IPv6 literal and a trailing dot are dropped, the name lower-cased.

    @raise InvalidName: the header is not C{host[:port]}.
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidName("the Host header is not ASCII") from None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidName(f"Host {text!r}: unterminated IPv6 literal")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
            raise InvalidName(f"Host {text!r}: unexpected text after the IPv6 literal")
        return normalise_host(host)
    host, colon, port = text.partition(":")
    if colon and not _PORT.fullmatch(port):
        raise InvalidName(f"Host {text!r}: the port is not a number")
    if not host:
        raise InvalidName("the Host header is empty")
    return normalise_host(host)


def check_http_path(path: str) -> str:
    """
    Check that C{path} is a file the proxy may serve:
    C{/.well-known/acme-challenge/<token>} (token of C{A-Z a-z 0-9 _ -}) or
    C{/.well-known/pki-validation/<file>} (also C{.}, never leading, never
    C{..}).

    @return: C{path} unchanged.
    @raise InvalidValue: anything else, naming the rule broken.
    """
    if not isinstance(path, str):
        raise InvalidValue("an HTTP validation path must be a string")
    if path.startswith(ACME_CHALLENGE_PREFIX):
        token = path[len(ACME_CHALLENGE_PREFIX) :]
        if not _TOKEN.fullmatch(token):
            raise InvalidValue(f"{path!r}: an ACME token is 1-255 characters of A-Z, a-z, 0-9, '_' and '-'")
        return path
    if path.startswith(PKI_VALIDATION_PREFIX):
        name = path[len(PKI_VALIDATION_PREFIX) :]
        if not _FILE.fullmatch(name) or ".." in name:
            raise InvalidValue(
                f"{path!r}: a pki-validation file name is 1-255 characters of A-Z, a-z, 0-9, '_', '-' and '.',"
                " not starting with '.' and without '..'"
            )
        return path
    raise InvalidValue(f"{path!r} is not under {ACME_CHALLENGE_PREFIX} or {PKI_VALIDATION_PREFIX}")
