"""
Statistics: counters fed by events, exposed as Prometheus metrics.
"""

from ._dashboard import dashboard_data, dashboard_page
from ._metrics import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "Metrics", "dashboard_data", "dashboard_page"]
