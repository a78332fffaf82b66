"""
Accounts, orders, authorizations and certificates, the repository that
keeps them in the store, and the rules for ordering, finalizing (CSR
checks) and revoking.
"""

from ._csr import KeyRules, check_csr, check_key, csr_names
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
from ._service import (
    MAX_IDENTIFIERS,
    REVOCATION_REASONS,
    CertificateRevoker,
    IssuanceQueue,
    OrderService,
    check_names,
    owned,
)

__all__ = [
    "MAX_IDENTIFIERS",
    "REVOCATION_REASONS",
    "Account",
    "AccountStatus",
    "AcmeRepository",
    "Authorization",
    "CertificateRecord",
    "CertificateRevoker",
    "ConcurrentUpdate",
    "IssuanceQueue",
    "KeyRules",
    "Order",
    "OrderService",
    "OrderStatus",
    "check_csr",
    "check_key",
    "check_names",
    "csr_names",
    "new_id",
    "owned",
]
