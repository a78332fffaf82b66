"""
Issuance: background jobs that turn finalized orders into certificates.
"""

from ._jobs import IssuanceService, Revoker
from ._locks import LEASE, OrderLocks, order_key
from ._reuse import IssueMode, UpstreamOrder, UpstreamReuse

__all__ = [
    "LEASE",
    "IssuanceService",
    "IssueMode",
    "OrderLocks",
    "Revoker",
    "UpstreamOrder",
    "UpstreamReuse",
    "order_key",
]
