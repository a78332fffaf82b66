"""
Issuance: background jobs that turn finalized orders into certificates.
"""

from ._budget import (
    BudgetExhausted,
    BudgetKind,
    BudgetLedger,
    BudgetUse,
    CALimit,
    NoRoom,
    Reservation,
    registered_domain,
)
from ._health import SHARED_DOWN_TTL, CAHealth
from ._jobs import DurationEstimate, IssuanceService, Revoker
from ._locks import LEASE, JobLeases, OrderLocks, order_key
from ._pacing import BudgetPacer
from ._reuse import FAILURE_WINDOW, IssueMode, UpstreamOrder, UpstreamReuse

__all__ = [
    "FAILURE_WINDOW",
    "LEASE",
    "SHARED_DOWN_TTL",
    "BudgetExhausted",
    "BudgetKind",
    "BudgetLedger",
    "BudgetPacer",
    "BudgetUse",
    "CAHealth",
    "CALimit",
    "DurationEstimate",
    "IssuanceService",
    "IssueMode",
    "JobLeases",
    "NoRoom",
    "OrderLocks",
    "Reservation",
    "Revoker",
    "UpstreamOrder",
    "UpstreamReuse",
    "order_key",
    "registered_domain",
]
