"""
The store of validation values: what the dcv DNS authority and the HTTP file
proxy serve while an upstream CA validates.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..core import report_failure
from ..storage import Store, keys
from ._names import InvalidValue, check_http_path, normalise_domain, normalise_host

MAX_BODY_BYTES = 65536
#: The most TXT values a L{TxtView} holds; beyond, lookups use the store.
MAX_VIEW_ENTRIES = 50_000


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
        self._view: TxtView | None = None

    @property
    def store(self) -> Store:
        """
        Where the values live.
        """
        return self._store

    def txt_view(self, clock: IReactorTime, *, refresh_interval: float = 1.0) -> TxtView:
        """
        An in-memory view of the TXT values, updated at once by this
        object's C{add_txt}/C{remove_txt} and refreshed from the store
        every C{refresh_interval} seconds while it runs as a service.
        """
        self._view = TxtView(self._store, clock, refresh_interval=refresh_interval)
        return self._view

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
        key = _txt_key(name, data)
        await self._store.set(key, data, ttl=_check_ttl(ttl))
        if self._view is not None:
            self._view.published(key, data, ttl)
        self._log.info("dcv TXT value added for {domain} (ttl {ttl}s)", domain=name, ttl=ttl)

    async def remove_txt(self, domain: str, value: str) -> None:
        """
        Stop serving C{value} for C{domain}; the name's other values stay.

        @raise InvalidName: C{domain} is not a DNS name.
        @raise InvalidValue: C{value} is not a TXT value.
        """
        name = normalise_domain(domain)
        key = _txt_key(name, _check_txt(value))
        if self._view is not None:
            # Withdrawn from the view first: never served after the delete.
            self._view.withdrawn(key)
        if await self._store.delete(key):
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


def wire_name(domain: bytes) -> bytes:
    """
    C{domain} in DNS wire form: length-prefixed labels, without the root.
    """
    return b"".join(bytes([len(label)]) + label for label in domain.split(b"."))


def _domain_of(key: str) -> bytes:
    return wire_name(key[len(keys.DCV_TXT_PREFIX) :].partition("/")[0].encode("ascii"))


def _ancestors(name: bytes) -> list[bytes]:
    found = []
    while name:
        name = name[1 + name[0] :]
        if name:
            found.append(name)
    return found


class TxtView(Service):
    """
    The TXT values of the store in memory, for the DNS fast path: values
    change rarely, queries come often.

    It holds the values published through this process's
    L{ValidationValues} only: published or withdrawn here, the view changes
    at once, and a value drops out when its TTL ends.  Every
    C{refresh_interval} seconds the store is read again, and a value that
    is no longer there (another process withdrew it) leaves the view.

    The trade-off: the view is trusted only for names it holds, and a name
    it does not hold is not answered from it at all (the caller asks the
    store, so a value another process or node has just published is never
    missed nor negatively cached).  Values other processes publish are not
    taken in: a name they validate again would otherwise be answered with
    their earlier value until the next refresh, and the CA's check of the
    new one would fail.  A value withdrawn elsewhere may still be served for
    one interval.  When refreshes keep failing, the view is emptied after
    three intervals so that nothing stale is served for long (what was
    published before is then answered through the store).  At most
    C{max_entries} values are held: the values of a name published beyond
    that are answered through the store.
    """

    _log = Logger()

    def __init__(
        self, store: Store, clock: IReactorTime, *, refresh_interval: float = 1.0, max_entries: int = MAX_VIEW_ENTRIES
    ) -> None:
        if not (isinstance(refresh_interval, (int, float)) and 0 < refresh_interval <= 60):
            raise ValueError(f"the TXT view refresh interval must be 0-60 seconds, not {refresh_interval!r}")
        self._store = store
        self._clock = clock
        self.refresh_interval = refresh_interval
        self._max_entries = max_entries
        # key -> (domain, value, expiry)
        self._entries: dict[str, tuple[bytes, bytes, float]] = {}
        self._by_domain: dict[bytes, tuple[bytes, ...]] = {}
        # ancestor -> how many names with values lie below it
        self._below: Counter[bytes] = Counter()
        self._check_at = math.inf
        self._fresh_until = math.inf
        self._changes: list[tuple[str, tuple[bytes, float] | None]] | None = None
        self._loop: LoopingCall | None = None

    def values(self, domain: bytes) -> tuple[bytes, ...]:
        """
        The values of C{domain} (lower case, in wire form: see L{wire_name}),
        sorted; empty when the view does not know the name.
        """
        if self._clock.seconds() >= self._check_at:
            self._maintain()
        return self._by_domain.get(domain, ())

    def exists_below(self, domain: bytes) -> bool:
        """
        Whether the view holds a value strictly below C{domain} (wire form).
        """
        if self._clock.seconds() >= self._check_at:
            self._maintain()
        return domain in self._below

    def published(self, key: str, value: bytes, ttl: float) -> None:
        """
        The value at store key C{key} is served for C{ttl} seconds.
        """
        self._change(key, (value, self._clock.seconds() + ttl))

    def withdrawn(self, key: str) -> None:
        """
        The value at store key C{key} is no longer served.
        """
        self._change(key, None)

    def _change(self, key: str, published: tuple[bytes, float] | None) -> None:
        # One name changes: only its values are indexed again (a rebuild
        # of the whole view per published value would be quadratic).
        if self._changes is not None:
            self._changes.append((key, published))
        domain = _domain_of(key)
        old = self._entries.get(key)
        self._apply(key, published)
        new = self._entries.get(key)
        values = list(self._by_domain.get(domain, ()))
        if old is not None:
            values.remove(old[1])
        if new is not None:
            values.append(new[1])
            self._check_at = min(self._check_at, new[2])
        elif published is not None:
            values = []  # no room: the whole name went to the store
        self._index_domain(domain, values)

    def _index_domain(self, domain: bytes, values: list[bytes]) -> None:
        had = domain in self._by_domain
        if values:
            self._by_domain[domain] = tuple(sorted(values))
        else:
            self._by_domain.pop(domain, None)
        if bool(values) == had:
            return
        for ancestor in _ancestors(domain):
            self._below[ancestor] += 1 if values else -1
            if self._below[ancestor] <= 0:
                del self._below[ancestor]

    def _apply(self, key: str, published: tuple[bytes, float] | None) -> None:
        if published is None:
            self._entries.pop(key, None)
        elif len(self._entries) < self._max_entries or key in self._entries:
            self._entries[key] = (_domain_of(key), *published)
        else:
            # No room: the whole name goes to the store, never half of it.
            domain = _domain_of(key)
            self._entries = {k: e for k, e in self._entries.items() if e[0] != domain}

    def _rebuild(self) -> None:
        by_domain: dict[bytes, list[bytes]] = {}
        expiries = [self._fresh_until]
        for domain, value, expiry in self._entries.values():
            by_domain.setdefault(domain, []).append(value)
            expiries.append(expiry)
        self._by_domain = {d: tuple(sorted(v)) for d, v in by_domain.items()}
        self._below = Counter(a for d in by_domain for a in _ancestors(d))
        self._check_at = min(expiries)

    def _maintain(self) -> None:
        now = self._clock.seconds()
        if now >= self._fresh_until:
            self._entries = {}
            self._fresh_until = math.inf
        self._entries = {k: e for k, e in self._entries.items() if e[2] > now}
        self._rebuild()

    async def refresh(self) -> None:
        """
        Keep the values still in the store; local changes made meanwhile
        are applied again on top.

        @raise StorageError: The store failed; the view is unchanged.
        """
        changes: list[tuple[str, tuple[bytes, float] | None]] = []
        self._changes = changes
        try:
            found = await self._store.scan(keys.DCV_TXT_PREFIX)
        finally:
            self._changes = None
        old = self._entries
        self._entries = {k: (old[k][0], v, old[k][2]) for k, v in found if k in old}
        for change in changes:
            self._apply(*change)
        self._fresh_until = self._clock.seconds() + 3 * self.refresh_interval
        self._rebuild()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception:
            report_failure(self._log, "could not refresh the dcv TXT view")

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self._refresh_quietly()))
        self._loop.clock = self._clock
        self._loop.start(self.refresh_interval, now=True)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return None
