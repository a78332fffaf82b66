"""
Times on the wire and in logs.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

# The last whole second formatted, and its text: the times written together
# (an event, an order and its authorizations) mostly share their second.
_last: tuple[int, str] = (0, datetime.fromtimestamp(0, UTC).strftime("%Y-%m-%dT%H:%M:%S"))


def rfc3339(seconds: float, *, fraction: bool = True) -> str:
    """
    C{seconds} since the epoch as an RFC 3339 UTC time, with microseconds
    unless C{fraction} is false.
    """
    global _last
    # Rounded to the microsecond as datetime.fromtimestamp rounds.
    part, whole_float = math.modf(seconds)
    micros = round(part * 1e6)
    whole = int(whole_float)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second, text = _last
    if whole != second:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last = (whole, text)
    return f"{text}.{micros:06d}Z" if fraction else f"{text}Z"
