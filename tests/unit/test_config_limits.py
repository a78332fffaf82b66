"""
Tests for C{[limits]} and C{[retention]} in the configuration file.
"""

from __future__ import annotations

from typing import Any

from acme_appliance.orders import Limits, Rate, Retention

from .test_config import ConfigTestCase, setting


class LimitsSectionTests(ConfigTestCase):
    def test_defaults(self) -> None:
        """
        Without the sections: the limits are on, with generous defaults.
        """
        config = self.load()
        self.assertEqual(config.limits, Limits())
        self.assertEqual(config.limits.account_orders, Rate(300, 10800.0))
        self.assertEqual(config.retention, Retention(orders=90 * 86400.0, accounts=365 * 86400.0))

    def test_values(self) -> None:
        def change(data: dict[str, Any]) -> None:
            data["limits"] = {
                "period": 60,
                "account_orders": 5,
                "token_orders": 0,
                "token_accounts": 2,
                "token_finalizes": 3,
            }
            data["retention"] = {"order_days": 7, "account_days": 30}

        config = self.load(change)
        self.assertEqual(config.limits, Limits(Rate(5, 60.0), Rate(0, 60.0), Rate(2, 60.0), 3))
        self.assertEqual(config.retention, Retention(orders=7 * 86400.0, accounts=30 * 86400.0))

    def test_problems(self) -> None:
        self.assertProblem(setting("limits", "period", 0), "limits.period", "must be greater than 0, got 0")
        self.assertProblem(
            setting("limits", "account_orders", -1), "limits.account_orders", "must be at least 0, got -1"
        )
        self.assertProblem(
            setting("limits", "token_finalizes", "many"), "limits.token_finalizes", "expected an integer, got a string"
        )
        self.assertProblem(setting("limits", "per_ip", 3), "limits.per_ip", "unknown")
        self.assertProblem(setting("retention", "order_days", 0), "retention.order_days", "out of range (1 to 36500)")
        self.assertProblem(setting("retention", "account_days", 1.5), "retention.account_days", "expected an integer")
