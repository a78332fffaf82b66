"""
Issuance: background jobs that turn finalized orders into certificates.
"""

from ._health import CAHealth
from ._jobs import IssuanceService, Revoker
from ._locks import LEASE, JobLeases, OrderLocks, order_key
from ._reuse import IssueMode, UpstreamOrder, UpstreamReuse

__all__ = [
    "LEASE",
    "CAHealth",
    "IssuanceService",
    "IssueMode",
    "JobLeases",
    "OrderLocks",
    "Revoker",
    "UpstreamOrder",
    "UpstreamReuse",
    "order_key",
]
