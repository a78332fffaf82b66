"""
The ACME server's state: accounts, orders, authorizations and certificates,
kept as records in a L{Store}.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

from attrs import evolve, frozen
from cryptography import x509
from twisted.internet.interfaces import IReactorTime

from ..storage import Put, Store, Swap, Write, dump_record, get_record, keys, load_record, put_record, record_bytes
from ._certid import BadCertId, cert_id_of, cert_id_of_pem, names_digest, parse_cert_id

R = TypeVar("R")


class AccountStatus(Enum):
    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(Enum):
    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


def new_id() -> str:
    """
    A random, URL-safe identifier (128 bits).
    """
    return secrets.token_urlsafe(16)


@frozen
class Account:
    id: str
    token_id: str
    key: dict[str, Any]
    thumbprint: str
    status: AccountStatus
    contact: tuple[str, ...]
    created: float
    terms_agreed: bool = False
    last_order: float | None = None


@frozen
class Order:
    """
    A client's order.  Its authorizations are valid from the start: the
    appliance validates upstream, not the client.

    @ivar names: normalised DNS names, wildcards as C{*.example.com}.
    @ivar error: the problem document of an C{invalid} order.
    @ivar csr: base64url DER of the finalize CSR.
    @ivar profile: the certificate profile asked for (or the policy's
        default); C{None} when the policy has none.
    """

    id: str
    token_id: str
    account_id: str
    policy: str
    names: tuple[str, ...]
    status: OrderStatus
    created: float
    expires: float
    authz_ids: tuple[str, ...]
    csr: str | None = None
    certificate_id: str | None = None
    error: dict[str, Any] | None = None
    ca_name: str | None = None
    processing_since: float | None = None
    completed: float | None = None
    profile: str | None = None
    replaces: str | None = None
    #: How the certificate was issued (an L{IssueMode} value), once C{valid}.
    issue_mode: str | None = None


@frozen
class Authorization:
    id: str
    order_id: str
    token_id: str
    account_id: str
    name: str
    wildcard: bool
    expires: float
    validated: float
    challenge_token: str


@frozen
class CertificateRecord:
    """
    An issued certificate.

    @ivar window_moved: when its renewal window was moved into the past
        (renew-now, revocation, the upstream CA's renewal info), for the
        C{window_reason} (a L{RenewalReason} value).
    @ivar replaced_by: the order that replaces it (RFC 9773 C{replaces}).
    @ivar slot: its place among the certificates for the same set of names,
        in issuance order, from 0 (its renewal window's slot).
    """

    id: str
    order_id: str
    token_id: str
    account_id: str
    names: tuple[str, ...]
    chain_pem: str
    serial: str
    ca_name: str
    issued: float
    revoked_at: float | None = None
    revocation_reason: int | None = None
    alternates: tuple[str, ...] = ()
    window_moved: float | None = None
    window_reason: str | None = None
    replaced_by: str | None = None
    slot: int | None = None


@frozen
class Retention:
    """
    How long records stay in the store (by TTLs set when they are written).

    @ivar orders: Seconds an order, its authorizations and index entries are
        kept after the order's C{expires} (an order finishes before it).
    @ivar accounts: Seconds an account is kept after it was created or last
        made an order.
    """

    orders: float = 90 * 86400.0
    accounts: float = 365 * 86400.0


#: How often (seconds) a new order refreshes its account's retention.
ACCOUNT_REFRESH = 86400.0


class ConcurrentUpdate(Exception):
    """
    A record kept changing under a read-modify-write; give up.
    """


def order_cursor(order: Order) -> str:
    """
    The position of C{order} in the time index (and the admin list's
    C{before} cursor): creation time in milliseconds, then the id.
    """
    return f"{int(order.created * 1000):016d}-{order.id}"


def _cursor_day(cursor: str) -> int:
    millis, dash, _ = cursor.partition("-")
    if not dash or not millis.isdigit():
        raise ValueError(f"{cursor!r} is not an order list cursor")
    return int(millis) // 86_400_000


class AcmeRepository:
    """
    Typed access to the ACME server's records and their indexes.
    """

    def __init__(self, store: Store, *, clock: IReactorTime | None = None, retention: Retention | None = None) -> None:
        """
        With a C{clock} and a C{retention}, records are written with TTLs;
        without, they are kept forever.
        """
        self.store = store
        self._clock = clock
        self._retention = retention

    def _ttl(self, until: float) -> float | None:
        if self._clock is None:
            return None
        return max(until - self._clock.seconds(), 1.0)

    def _order_ttl(self, order: Order) -> float | None:
        return None if self._retention is None else self._ttl(order.expires + self._retention.orders)

    def _account_ttl(self, account: Account) -> float | None:
        if self._retention is None:
            return None
        return self._ttl(max(account.created, account.last_order or 0.0) + self._retention.accounts)

    # accounts

    async def account(self, account_id: str) -> Account | None:
        return await get_record(self.store, Account, keys.account(account_id))

    async def account_by_thumbprint(self, token_id: str, thumbprint: str) -> Account | None:
        account_id = await self.store.get(keys.account_by_key(token_id, thumbprint))
        return None if account_id is None else await self.account(account_id.decode())

    async def add_account(self, account: Account) -> Account:
        """
        Store a new account unless its key already has one under the same
        token; return whichever account owns the key.
        """
        index = keys.account_by_key(account.token_id, account.thumbprint)
        ttl = self._account_ttl(account)
        if not await self.store.add(index, account.id.encode(), ttl=ttl):
            existing = await self.account_by_thumbprint(account.token_id, account.thumbprint)
            if existing is not None:
                return existing
            await self.store.set(index, account.id.encode(), ttl=ttl)
        await put_record(self.store, keys.account(account.id), account, ttl=ttl)
        return account

    async def put_account(self, account: Account) -> None:
        await put_record(self.store, keys.account(account.id), account, ttl=self._account_ttl(account))

    async def account_active(self, account: Account, now: float) -> None:
        """
        Note that C{account} made an order at C{now}: its retention starts
        again (at most once per L{ACCOUNT_REFRESH}).
        """
        if self._retention is None or (account.last_order or account.created) + ACCOUNT_REFRESH > now:
            return
        current = await self.account(account.id)
        if current is None:
            return
        active = evolve(current, last_order=now)
        await self.put_account(active)
        await self.store.set(
            keys.account_by_key(active.token_id, active.thumbprint), active.id.encode(), ttl=self._account_ttl(active)
        )

    async def rekey_account(self, account: Account, key: dict[str, Any], thumbprint: str) -> bool:
        """
        Move C{account} to a new key; C{False} if the key already belongs to
        another account of the same token.
        """
        new_index = keys.account_by_key(account.token_id, thumbprint)
        if not await self.store.add(new_index, account.id.encode(), ttl=self._account_ttl(account)):
            return False
        await self.put_account(evolve(account, key=key, thumbprint=thumbprint))
        await self.store.delete(keys.account_by_key(account.token_id, account.thumbprint))
        return True

    # orders

    async def orders_page(self, limit: int, before: str | None = None) -> tuple[list[Order], str | None]:
        """
        Up to C{limit} orders, newest first, created before the cursor
        C{before} (from an earlier page; C{None}: from the newest).

        Reads the time index one day at a time, so a page costs what it
        shows.  Returns the orders and the cursor of the next page (C{None}
        at the end).
        """
        last_day = None if before is None else _cursor_day(before)
        days = [int(key[len(keys.ORDER_DAY_PREFIX) :]) for key, _ in await self.store.scan(keys.ORDER_DAY_PREFIX)]
        cursors: list[str] = []
        for day in sorted((d for d in days if last_day is None or d <= last_day), reverse=True):
            prefix = keys.orders_of_day(day)
            found = [key[len(prefix) :] for key, _ in await self.store.scan(prefix)]
            cursors.extend(sorted((c for c in found if before is None or c < before), reverse=True))
            if len(cursors) > limit:
                break
        orders = []
        for cursor in cursors[:limit]:
            order = await self.order(cursor.partition("-")[2])
            if order is not None:
                orders.append(order)
        return orders, (cursors[limit - 1] if len(cursors) > limit else None)

    async def order(self, order_id: str) -> Order | None:
        return await get_record(self.store, Order, keys.order(order_id))

    async def add_order(self, order: Order, authorizations: list[Authorization]) -> None:
        ttl = self._order_ttl(order)
        # The authorizations before the order, the order before its indexes
        # (one write in order): whatever a crash leaves, nothing points to a
        # record not stored.
        await self.store.write_in_order(
            [
                *(Put(keys.authorization(a.id), dump_record(a), ttl) for a in authorizations),
                Put(keys.order(order.id), dump_record(order), ttl),
                Put(keys.account_orders(order.account_id) + order.id, b"", ttl),
                *self._time_index(order, ttl),
            ]
        )

    def _time_index(self, order: Order, ttl: float | None) -> list[Write]:
        day = int(order.created // 86400)
        return [Put(keys.order_by_time(day, order_cursor(order)), b"", ttl), Put(keys.order_day(day), b"", ttl)]

    async def index_stored_orders(self) -> int:
        """
        Put the orders stored before the time index existed into it, once,
        with their retention: the admin list shows them and they expire like
        new ones.  Returns how many were indexed.
        """
        if await self.store.get(keys.ORDER_INDEX_BUILT) is not None:
            return 0
        count = 0
        for key, value in await self.store.scan(keys.ORDER_PREFIX):
            order = load_record(Order, value)
            ttl = self._order_ttl(order)
            if await self.store.get(keys.order_by_time(int(order.created // 86400), order_cursor(order))) is None:
                # Only the expiry changes, and only if no job changed the order meanwhile.
                await self.store.write_in_order([Swap(key, value, value, ttl), *self._time_index(order, ttl)])
                count += 1
        await self.store.set(keys.ORDER_INDEX_BUILT, b"1")
        return count

    async def update_order(
        self,
        order_id: str,
        change: Callable[[Order], Order | None],
        *,
        attempts: int = 20,
        known: Order | None = None,
        before: Sequence[Write] = (),
    ) -> Order | None:
        """
        Atomically replace an order by C{change(order)}.

        C{change} returns C{None} to leave the order alone.  Returns the order
        as stored afterwards, or C{None} if it does not exist.  C{known} is
        the order as the caller last read it: the first compare-and-set
        expects it without reading the order again (a stale one costs the
        read it saved).  C{before}: writes that must come first, whatever
        happens (see L{Store.write_in_order}); with C{known}, they go in one
        write with the first compare-and-set.
        """
        return await self._update(keys.order(order_id), Order, change, self._order_ttl, attempts, known, before)

    async def _update(
        self,
        key: str,
        kind: type[R],
        change: Callable[[R], R | None],
        ttl: Callable[[R], float | None],
        attempts: int,
        known: R | None = None,
        before: Sequence[Write] = (),
    ) -> R | None:
        """
        Replace the record at C{key} by C{change(record)} with a
        compare-and-set, reading again when another writer came first;
        C{before} are written first, in order (with the first
        compare-and-set when C{known} is given).
        """
        if known is not None:
            guessed = change(known)
            if guessed is not None:
                # The stored bytes of the record as it was read (kept from
                # the read, not serialised again), so the compare-and-set
                # matches if nobody wrote it since.
                swap = Swap(key, record_bytes(known), dump_record(guessed), ttl(guessed))
                done = await self.store.write_in_order([*before, swap])
                if done[-1]:
                    return guessed
                before = ()
        if before:
            await self.store.write_in_order(before)
        for _ in range(attempts):
            raw = await self.store.get(key)
            if raw is None:
                return None
            current = load_record(kind, raw)
            updated = change(current)
            if updated is None:
                return current
            if await self.store.compare_and_set(key, raw, dump_record(updated), ttl=ttl(updated)):
                return updated
        raise ConcurrentUpdate(key.rpartition("/")[2])

    async def account_order_ids(self, account_id: str) -> list[str]:
        prefix = keys.account_orders(account_id)
        return [key[len(prefix) :] for key, _ in await self.store.scan(prefix)]

    async def authorization(self, authz_id: str) -> Authorization | None:
        return await get_record(self.store, Authorization, keys.authorization(authz_id))

    # certificates

    async def certificate(self, certificate_id: str) -> CertificateRecord | None:
        return await get_record(self.store, CertificateRecord, keys.certificate(certificate_id))

    async def certificate_by_serial(self, serial: str) -> CertificateRecord | None:
        certificate_id = await self.store.get(keys.certificate_by_serial(serial))
        return None if certificate_id is None else await self.certificate(certificate_id.decode())

    async def put_certificate(
        self, record: CertificateRecord, *, leaf: x509.Certificate | None = None
    ) -> CertificateRecord:
        """
        Store a certificate with its indexes; a new one gets its L{slot}.
        Returns it as stored.

        @param leaf: the first certificate of C{record.chain_pem}, when the
            caller has it parsed already.
        """
        record = await self.numbered(record)
        await self.store.write_in_order(self._certificate_writes(record, leaf))
        return record

    async def put_certificate_of(
        self, record: CertificateRecord, order: Order, change: Callable[[Order], Order | None], leaf: x509.Certificate
    ) -> Order | None:
        """
        L{put_certificate}, then L{update_order} of C{order} (as last read)
        by C{change}: the order that points to the certificate comes after
        it, in the same write when the order was not changed since.
        Returns the order as stored afterwards.
        """
        record = await self.numbered(record)
        return await self.update_order(order.id, change, known=order, before=self._certificate_writes(record, leaf))

    def _certificate_writes(self, record: CertificateRecord, leaf: x509.Certificate | None) -> list[Write]:
        """The certificate record, then its indexes."""
        return [
            Put(keys.certificate(record.id), dump_record(record)),
            Put(keys.certificate_by_serial(record.serial), record.id.encode()),
            *self._certificate_index(record, leaf),
        ]

    async def numbered(self, record: CertificateRecord) -> CertificateRecord:
        """
        C{record} with its L{CertificateRecord.slot}: the next one of its
        set of names when it has none yet.
        """
        if record.slot is not None:
            return record
        sequence = await self.store.increment(keys.certificate_sequence(names_digest(record.names)))
        return evolve(record, slot=sequence - 1)

    def _certificate_index(self, record: CertificateRecord, leaf: x509.Certificate | None = None) -> list[Write]:
        """
        The renewal indexes of C{record} (whose first certificate is
        C{leaf}, when known): by certID, by each name, by token.
        """
        writes: list[Write] = [Put(keys.certificates_of_token(record.token_id) + record.id, b"")]
        try:
            cert_id = cert_id_of_pem(record.chain_pem) if leaf is None else cert_id_of(leaf)
            writes.append(Put(keys.certificate_by_cert_id(cert_id), record.id.encode()))
        except (BadCertId, ValueError):
            pass  # no AKI: looked up by serial only
        cursor = f"{int(record.issued * 1000):016d}-{record.id}"
        digest = names_digest(record.names).encode()
        writes.extend(Put(keys.certificates_of_name(name) + cursor, digest) for name in record.names)
        return writes

    async def update_certificate(
        self,
        certificate_id: str,
        change: Callable[[CertificateRecord], CertificateRecord | None],
        *,
        attempts: int = 20,
    ) -> CertificateRecord | None:
        """
        Atomically replace a certificate by C{change(record)} (C{None}: leave
        it); returns it as stored afterwards, C{None} if it does not exist.
        """
        return await self._update(keys.certificate(certificate_id), CertificateRecord, change, lambda c: None, attempts)

    async def certificate_by_cert_id(self, cert_id: str) -> CertificateRecord | None:
        """
        The certificate an RFC 9773 certID names (certificates stored before
        the certID index are found by serial, their certID compared).

        @raise BadCertId: C{cert_id} is not a certID.
        """
        parse_cert_id(cert_id)
        found = await self.store.get(keys.certificate_by_cert_id(cert_id))
        if found is not None:
            return await self.certificate(found.decode())
        record = await self.certificate_by_serial(parse_cert_id(cert_id).serial_hex)
        try:
            return record if record is not None and cert_id_of_pem(record.chain_pem) == cert_id else None
        except (BadCertId, ValueError):
            return None

    async def certificates_of_name(self, name: str) -> list[tuple[str, str]]:
        """
        The certificates covering C{name}, oldest first: C{(id, digest of
        their set of names)}.
        """
        prefix = keys.certificates_of_name(name)
        entries = sorted((key[len(prefix) :], value.decode()) for key, value in await self.store.scan(prefix))
        return [(cursor.partition("-")[2], digest) for cursor, digest in entries]

    async def certificates_of_token(self, token_id: str) -> list[str]:
        prefix = keys.certificates_of_token(token_id)
        return [key[len(prefix) :] for key, _ in await self.store.scan(prefix)]

    async def all_certificates(self) -> list[CertificateRecord]:
        """
        Every stored certificate (for start-up indexing and the upstream
        renewal-info poll).
        """
        return [load_record(CertificateRecord, value) for _, value in await self.store.scan(keys.CERTIFICATE_PREFIX)]

    async def index_stored_certificates(self) -> int:
        """
        Put the certificates stored before the renewal indexes existed into
        them, once.  Returns how many were indexed.
        """
        if await self.store.get(keys.CERTIFICATE_INDEX_BUILT) is not None:
            return 0
        count = 0
        for record in await self.all_certificates():
            await self.store.write_in_order(self._certificate_index(record))
            count += 1
        await self.store.set(keys.CERTIFICATE_INDEX_BUILT, b"1")
        return count

    # the issuance queue: orders whose finalize was accepted but not finished

    async def enqueue(self, order_id: str, at: float = 0.0) -> None:
        """
        Queue the issuance of C{order_id}, at clock time C{at}.
        """
        await self.store.write_in_order([self.enqueue_write(order_id, at)])

    def enqueue_write(self, order_id: str, at: float = 0.0) -> Put:
        """
        The write of L{enqueue}, for a L{Store.write_in_order}.
        """
        return Put(keys.issue_queue(order_id), repr(at).encode("ascii"))

    def dequeue_write(self, order_id: str) -> Put:
        """
        The write of L{dequeue}, for a L{Store.write_in_order}.
        """
        return Put(keys.issue_queue(order_id), None)

    async def queued_at(self, order_id: str) -> float | None:
        """
        When C{order_id} was queued (C{0.0}: at an unknown time), or
        C{None} when it is not queued.
        """
        value = await self.store.get(keys.issue_queue(order_id))
        return None if value is None else _queued_at(value)

    async def dequeue(self, order_id: str) -> None:
        await self.store.write_in_order([self.dequeue_write(order_id)])

    async def queued(self, before: float | None = None) -> list[str]:
        """
        The orders queued for issuance; with C{before}, only those queued
        at that clock time or earlier (an entry without a time counts as
        old).
        """
        prefix = keys.ISSUE_QUEUE_PREFIX
        return [
            key[len(prefix) :]
            for key, value in await self.store.scan(prefix)
            if before is None or _queued_at(value) <= before
        ]


def _queued_at(value: bytes) -> float:
    try:
        return float(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return 0.0
