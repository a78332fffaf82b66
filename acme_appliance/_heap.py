"""
Giving the C heap's free pages back to the system.

The appliance's own objects do not grow with the certificates it issues,
but glibc's heap does: memory freed between objects that live on (records,
pages of SQLite's cache, TLS buffers) stays mapped, and the process's
resident size crept up by about half a megabyte a thousand issuances.
C{malloc_trim(0)} hands every free page back, in about a tenth of a
millisecond; L{HeapTrimService} does it once a minute.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime

#: Seconds between two trims.
TRIM_INTERVAL = 60.0


def malloc_trim() -> Callable[[], object] | None:
    """
    glibc's C{malloc_trim(0)}, or C{None} where the C library has none
    (musl, macOS).
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimService(TimerService):
    """
    Calls C{trim} at start and every C{interval} seconds of C{clock}.
    """

    def __init__(self, trim: Callable[[], object], clock: IReactorTime, interval: float = TRIM_INTERVAL) -> None:
        super().__init__(interval, trim)
        self.clock = clock
