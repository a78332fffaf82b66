"""
Accounts, orders, authorizations and certificates, the repository that
keeps them in the store, and the rules for ordering, finalizing (CSR
checks) and revoking.
"""

from ._certid import BadCertId, CertId, cert_id_of, cert_id_of_pem, names_digest, parse_cert_id
from ._csr import KeyRules, check_csr, check_key, csr_names
from ._limits import SLOT_LEASE, Limit, Limits, Rate, RateLimiter
from ._mirror import MIRROR_INTERVAL, RenewalInfoSource, UpstreamRenewalMirror
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
from ._renewal import RenewalReason, RenewalWindows, Window, WindowPacer, budget_window, retry_after
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
    "MIRROR_INTERVAL",
    "REVOCATION_REASONS",
    "SLOT_LEASE",
    "Account",
    "AccountStatus",
    "AcmeRepository",
    "Authorization",
    "BadCertId",
    "CertId",
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
    "RenewalInfoSource",
    "RenewalReason",
    "RenewalWindows",
    "Retention",
    "UpstreamRenewalMirror",
    "Window",
    "WindowPacer",
    "budget_window",
    "cert_id_of",
    "cert_id_of_pem",
    "check_csr",
    "check_key",
    "check_names",
    "csr_names",
    "names_digest",
    "new_id",
    "order_cursor",
    "owned",
    "parse_cert_id",
    "recheck_names",
    "retry_after",
]
