"""
The store of validation values: what the dcv DNS authority and the HTTP file
proxy serve while an upstream CA validates.
"""

from __future__ import annotations

import hashlib
import math

from twisted.logger import Logger

from ..storage import Store, keys
from ._names import InvalidValue, check_http_path, normalise_domain, normalise_host

MAX_BODY_BYTES = 65536


def _check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        raise InvalidValue(f"a validation value needs a positive, finite lifetime in seconds, not {ttl!r}")
    return ttl


def _check_txt(value: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidValue(f"a TXT value must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= 255:
        raise InvalidValue(f"a TXT value must be 1-255 characters long, not {len(value)}")
    if not all(" " <= c <= "~" for c in value):
        raise InvalidValue(f"a TXT value must be printable ASCII: {value[:40]!r}")
    return value.encode("ascii")


def _txt_key(domain: str, value: bytes) -> str:
    return f"{keys.dcv_txt(domain)}{hashlib.sha256(value).hexdigest()[:32]}"


class ValidationValues:
    """
    Validation values in a L{Store}, one key per value so that each has its
    own expiry: a wildcard and its base name put two TXT values on one name
    at once, and a value whose process died still goes away.

    DNS names and hosts are normalised (lower case, no trailing dot,
    A-labels only) before use.
    """

    _log = Logger()

    def __init__(self, store: Store) -> None:
        """
        @param store: Where the values live; shared by every process that
            issues or serves.
        """
        self._store = store

    async def add_txt(self, domain: str, value: str, *, ttl: float) -> None:
        """
        Serve C{value} as one of the TXT values of C{<domain>.<dns_zone>}
        for at most C{ttl} seconds.  Adding a value again renews it.

        @param domain: The customer domain, without C{_acme-challenge.} and
            without C{*.}.
        @raise InvalidName: C{domain} is not a DNS name.
        @raise InvalidValue: C{value} or C{ttl} is unusable.
        """
        name = normalise_domain(domain)
        data = _check_txt(value)
        await self._store.set(_txt_key(name, data), data, ttl=_check_ttl(ttl))
        self._log.info("dcv TXT value added for {domain} (ttl {ttl}s)", domain=name, ttl=ttl)

    async def remove_txt(self, domain: str, value: str) -> None:
        """
        Stop serving C{value} for C{domain}; the name's other values stay.

        @raise InvalidName: C{domain} is not a DNS name.
        @raise InvalidValue: C{value} is not a TXT value.
        """
        name = normalise_domain(domain)
        if await self._store.delete(_txt_key(name, _check_txt(value))):
            self._log.info("dcv TXT value removed for {domain}", domain=name)

    async def txt_values(self, domain: str) -> list[str]:
        """
        Every current TXT value of C{domain}, in no particular order.

        @raise InvalidName: C{domain} is not a DNS name.
        """
        name = normalise_domain(domain)
        return [value.decode("ascii") for _, value in await self._store.scan(keys.dcv_txt(name))]

    async def has_txt_below(self, name: str) -> bool:
        """
        Whether some domain strictly below C{name} holds a TXT value, so
        that C{name} exists in DNS as an empty non-terminal.

        @param name: Any lower-case name; no syntax is required of it.
        """
        suffix = "." + name.lower().rstrip(".")
        for key, _ in await self._store.scan(keys.DCV_TXT_PREFIX):
            domain = key[len(keys.DCV_TXT_PREFIX) :].partition("/")[0]
            if domain.endswith(suffix):
                return True
        return False

    async def add_http(self, host: str, path: str, body: bytes, *, ttl: float) -> None:
        """
        Serve C{body} at C{http://<host><path>} for at most C{ttl} seconds.

        @param host: A DNS name or an IP address.
        @param path: C{/.well-known/acme-challenge/<token>} or
            C{/.well-known/pki-validation/<file>}.
        @raise InvalidName: C{host} is not a DNS name or IP address.
        @raise InvalidValue: C{path}, C{body} or C{ttl} is unusable.
        """
        name = normalise_host(host)
        check_http_path(path)
        if not isinstance(body, bytes):
            raise InvalidValue(f"an HTTP validation body must be bytes, not {type(body).__name__}")
        if len(body) > MAX_BODY_BYTES:
            raise InvalidValue(f"an HTTP validation body is at most {MAX_BODY_BYTES} bytes, not {len(body)}")
        await self._store.set(keys.dcv_http(name, path), body, ttl=_check_ttl(ttl))
        self._log.info("dcv file {path} added for {host} (ttl {ttl}s)", host=name, path=path, ttl=ttl)

    async def remove_http(self, host: str, path: str) -> None:
        """
        Stop serving C{path} for C{host}.

        @raise InvalidName: C{host} is not a DNS name or IP address.
        @raise InvalidValue: C{path} is not a servable path.
        """
        name = normalise_host(host)
        if await self._store.delete(keys.dcv_http(name, check_http_path(path))):
            self._log.info("dcv file {path} removed for {host}", host=name, path=path)

    async def http_body(self, host: str, path: str) -> bytes | None:
        """
        The body served at C{http://<host><path>}, or C{None}.

        @raise InvalidName: C{host} is not a DNS name or IP address.
        @raise InvalidValue: C{path} is not a servable path.
        """
        name = normalise_host(host)
        return await self._store.get(keys.dcv_http(name, check_http_path(path)))
