"""
Times on the wire and in logs.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(seconds: float, *, fraction: bool = True) -> str:
    """
    C{seconds} since the epoch as an RFC 3339 UTC time, with microseconds
    unless C{fraction} is false.
    """
    form = "%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.fromtimestamp(seconds, UTC).strftime(form)
