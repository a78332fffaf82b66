"""
Checks of single values: DNS names, URLs, IP addresses, files and
durations.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import SplitResult, urlsplit

from ..core import InvalidName, NameProblem, is_label, prepare_name
from ._table import Problem

# The configuration's own wording of the problems core finds.
_NAME_WORDING = {
    NameProblem.NOT_ASCII: "{value!r} is not ASCII: give internationalised names as A-labels (xn--...)",
    NameProblem.EMPTY: "empty DNS name",
}


def is_ip(text: str) -> bool:
    """
    Whether C{text} is an IPv4 or IPv6 address.
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def dns_name(key: str, value: str, *, wildcard: bool = False) -> str:
    """
    Normalise a DNS name (lower case, no trailing dot) as
    L{acme_appliance.core.normalise_name} does; with C{wildcard}, a leading
    C{*.} is allowed.  A-labels must decode, and a wildcard may stand for a
    whole top-level domain.

    @raise Problem: naming C{key}.
    """
    try:
        name = prepare_name(value)
    except InvalidName as e:
        wording = _NAME_WORDING.get(e.problem) if e.problem is not None else None
        raise Problem(key, wording.format(value=value) if wording else str(e)) from None
    labels = name.split(".")
    is_wildcard = wildcard and labels[0] == "*" and len(labels) > 1
    rest = labels[1:] if is_wildcard else labels
    if "*" in ".".join(rest):
        where = "only as the whole leftmost label, as in '*.example.com'" if wildcard else "nowhere in this name"
        raise Problem(key, f"{name!r}: '*' is allowed {where}")
    for label in rest:
        if not is_label(label):
            raise Problem(key, f"{name!r}: {label!r} is not a valid DNS label (letters, digits and '-', 1-63 long)")
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise Problem(key, f"{name!r}: {label!r} is not a valid A-label") from None
    if not is_wildcard and len(labels) < 2:
        raise Problem(key, f"{name!r} is not a fully qualified name (it needs a dot)")
    return name


def url(key: str, value: str, what: str = "URL") -> SplitResult:
    """
    Check an C{http(s)://} URL with a host.

    @raise Problem: naming C{key}.
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it checks the port (ValueError)
    except ValueError as e:
        raise Problem(key, f"{value!r} is not a valid {what}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise Problem(key, f"{value!r} must start with https:// or http://")
    if not parts.hostname:
        raise Problem(key, f"{value!r} has no host")
    if any(c.isspace() for c in value):
        raise Problem(key, f"{value!r} contains whitespace")
    return parts


def readable(key: str, path: str, what: str) -> None:
    """
    @raise Problem: C{path} is not a readable file.
    """
    if not os.path.isfile(path):
        raise Problem(key, f"{what} {path!r} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise Problem(key, f"{what} {path!r} is not readable")


_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(key: str, value: str) -> float:
    """
    Seconds in a duration such as C{"90s"}, C{"15m"}, C{"3h"} or C{"7d"}.

    @raise Problem: naming C{key}.
    """
    found = _DURATION.match(value.strip())
    if found is None:
        raise Problem(key, f"{value!r} is not a duration: a whole number and a unit s, m, h or d, such as '3h' or '7d'")
    seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if seconds <= 0:
        raise Problem(key, f"{value!r} must be longer than 0")
    return float(seconds)
