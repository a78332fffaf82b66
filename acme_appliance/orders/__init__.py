"""
Accounts, orders, authorizations and certificates, and the repository that
keeps them in the store.
"""

from ._records import (
    Account,
    AccountStatus,
    AcmeRepository,
    Authorization,
    CertificateRecord,
    ConcurrentUpdate,
    Order,
    OrderStatus,
    new_id,
)

__all__ = [
    "Account",
    "AccountStatus",
    "AcmeRepository",
    "Authorization",
    "CertificateRecord",
    "ConcurrentUpdate",
    "Order",
    "OrderStatus",
    "new_id",
]
