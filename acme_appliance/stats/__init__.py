"""
Statistics: counters fed by events, exposed as Prometheus metrics.
"""

from ._dashboard import ca_state, dashboard_data, dashboard_page
from ._metrics import CONTENT_TYPE, FLUSH_INTERVAL, Metrics

__all__ = ["CONTENT_TYPE", "FLUSH_INTERVAL", "Metrics", "ca_state", "dashboard_data", "dashboard_page"]
