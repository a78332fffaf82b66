"""
Issuance: background jobs that turn finalized orders into certificates.
"""

from ._jobs import DurationEstimate, IssuanceService, Revoker
from ._locks import LEASE, OrderLocks, order_key
from ._reuse import IssueMode, UpstreamOrder, UpstreamReuse

__all__ = [
    "LEASE",
    "DurationEstimate",
    "IssuanceService",
    "IssueMode",
    "OrderLocks",
    "Revoker",
    "UpstreamOrder",
    "UpstreamReuse",
    "order_key",
]
