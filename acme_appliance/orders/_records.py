"""
The ACME server's state: accounts, orders, authorizations and certificates,
kept as records in a L{Store}.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from enum import Enum
from typing import Any

from attrs import evolve, frozen

from ..storage import Store, dump_record, get_record, keys, load_record, put_record


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


@frozen
class Order:
    """
    A client's order.  Its authorizations are valid from the start: the
    appliance validates upstream, not the client.

    @ivar names: normalised DNS names, wildcards as C{*.example.com}.
    @ivar error: the problem document of an C{invalid} order.
    @ivar csr: base64url DER of the finalize CSR.
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


class ConcurrentUpdate(Exception):
    """
    A record kept changing under a read-modify-write; give up.
    """


class AcmeRepository:
    """
    Typed access to the ACME server's records and their indexes.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

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
        if not await self.store.add(index, account.id.encode()):
            existing = await self.account_by_thumbprint(account.token_id, account.thumbprint)
            if existing is not None:
                return existing
            await self.store.set(index, account.id.encode())
        await put_record(self.store, keys.account(account.id), account)
        return account

    async def put_account(self, account: Account) -> None:
        await put_record(self.store, keys.account(account.id), account)

    async def rekey_account(self, account: Account, key: dict[str, Any], thumbprint: str) -> bool:
        """
        Move C{account} to a new key; C{False} if the key already belongs to
        another account of the same token.
        """
        new_index = keys.account_by_key(account.token_id, thumbprint)
        if not await self.store.add(new_index, account.id.encode()):
            return False
        await self.put_account(evolve(account, key=key, thumbprint=thumbprint))
        await self.store.delete(keys.account_by_key(account.token_id, account.thumbprint))
        return True

    # orders

    async def orders(self) -> list[Order]:
        """
        Every order in the store (for the admin API).
        """
        return [load_record(Order, value) for _, value in await self.store.scan(keys.ORDER_PREFIX)]

    async def order(self, order_id: str) -> Order | None:
        return await get_record(self.store, Order, keys.order(order_id))

    async def add_order(self, order: Order, authorizations: list[Authorization]) -> None:
        for authz in authorizations:
            await put_record(self.store, keys.authorization(authz.id), authz)
        await put_record(self.store, keys.order(order.id), order)
        await self.store.set(keys.account_orders(order.account_id) + order.id, b"")

    async def update_order(
        self, order_id: str, change: Callable[[Order], Order | None], *, attempts: int = 20
    ) -> Order | None:
        """
        Atomically replace an order by C{change(order)}.

        C{change} returns C{None} to leave the order alone.  Returns the order
        as stored afterwards, or C{None} if it does not exist.
        """
        key = keys.order(order_id)
        for _ in range(attempts):
            raw = await self.store.get(key)
            if raw is None:
                return None
            current = load_record(Order, raw)
            updated = change(current)
            if updated is None:
                return current
            if await self.store.compare_and_set(key, raw, dump_record(updated)):
                return updated
        raise ConcurrentUpdate(order_id)

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

    async def put_certificate(self, record: CertificateRecord) -> None:
        await put_record(self.store, keys.certificate(record.id), record)
        await self.store.set(keys.certificate_by_serial(record.serial), record.id.encode())

    # the issuance queue: orders whose finalize was accepted but not finished

    async def enqueue(self, order_id: str) -> None:
        await self.store.set(keys.issue_queue(order_id), b"")

    async def dequeue(self, order_id: str) -> None:
        await self.store.delete(keys.issue_queue(order_id))

    async def queued(self) -> list[str]:
        prefix = keys.ISSUE_QUEUE_PREFIX
        return [key[len(prefix) :] for key, _ in await self.store.scan(prefix)]
