"""
Statistics: counters fed by events, exposed as Prometheus metrics.
"""

from ._metrics import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "Metrics"]
