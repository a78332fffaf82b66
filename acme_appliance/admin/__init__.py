"""
The admin API for operators.
"""

from ._api import AdminAPI, ensure_api_key

__all__ = ["AdminAPI", "ensure_api_key"]
