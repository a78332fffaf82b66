"""
Accounts, orders, authorizations and certificates, the repository that
keeps them in the store, and the rules for ordering, finalizing (CSR
checks) and revoking.
"""

from ._csr import KeyRules, check_csr, check_key, csr_names
from ._limits import SLOT_LEASE, Limit, Limits, Rate, RateLimiter
from ._records import (
    Account,
    AccountStatus,
    AcmeRepository,
    Authorization,
    CertificateRecord,
    ConcurrentUpdate,
    Order,
    OrderStatus,
    Retention,
    new_id,
    order_cursor,
)
from ._service import (
    MAX_IDENTIFIERS,
    REVOCATION_REASONS,
    CertificateRevoker,
    IssuanceProgress,
    IssuanceQueue,
    OrderService,
    check_names,
    owned,
    recheck_names,
)

__all__ = [
    "MAX_IDENTIFIERS",
    "REVOCATION_REASONS",
    "SLOT_LEASE",
    "Account",
    "AccountStatus",
    "AcmeRepository",
    "Authorization",
    "CertificateRecord",
    "CertificateRevoker",
    "ConcurrentUpdate",
    "IssuanceProgress",
    "IssuanceQueue",
    "KeyRules",
    "Limit",
    "Limits",
    "Order",
    "OrderService",
    "OrderStatus",
    "Rate",
    "RateLimiter",
    "Retention",
    "check_csr",
    "check_key",
    "check_names",
    "csr_names",
    "new_id",
    "order_cursor",
    "owned",
    "recheck_names",
]
