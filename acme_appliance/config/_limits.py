"""
C{[limits]} (rate limits) and C{[retention]} (how long records are kept).
"""

from __future__ import annotations

from ..orders import Limits, Rate, Retention
from ._table import Table

LIMITS_KEYS = ("period", "account_orders", "token_orders", "token_accounts", "token_finalizes")
RETENTION_KEYS = ("order_days", "account_days")

_DEFAULT = Limits()


def limits(t: Table) -> Limits:
    """
    C{[limits]}: counts per C{period} seconds (0 turns one off) and the
    finalizes one token may have issuing at once.
    """
    period = t.number("period", _DEFAULT.account_orders.period, positive=True)
    return Limits(
        account_orders=Rate(t.integer("account_orders", _DEFAULT.account_orders.count, 0), period),
        token_orders=Rate(t.integer("token_orders", _DEFAULT.token_orders.count, 0), period),
        token_accounts=Rate(t.integer("token_accounts", _DEFAULT.token_accounts.count, 0), period),
        token_finalizes=t.integer("token_finalizes", _DEFAULT.token_finalizes, 0),
    )


def retention(t: Table) -> Retention:
    """
    C{[retention]}: days finished orders and idle accounts are kept.
    """
    default = Retention()
    return Retention(
        orders=t.integer("order_days", int(default.orders // 86400), 1, 36500) * 86400.0,
        accounts=t.integer("account_days", int(default.accounts // 86400), 1, 36500) * 86400.0,
    )
