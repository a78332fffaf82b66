"""
L{HeapTrimService}: the C heap's free pages handed back to the system
once a minute, where the C library can (glibc's C{malloc_trim}).
"""

from __future__ import annotations

import platform

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance._heap import TRIM_INTERVAL, HeapTrimService, malloc_trim
from acme_appliance.config import load_config
from acme_appliance.storage import MemoryStore
from acme_appliance.tap import ApplianceService

from .test_tap_wiring import config_file

GLIBC = platform.libc_ver()[0] == "glibc"


def resident_kib() -> int:
    """This process's resident set (VmRSS), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class HeapTrimServiceTests(SynchronousTestCase):
    def test_trims_at_start_and_every_interval(self) -> None:
        clock = Clock()
        trims: list[None] = []
        service = HeapTrimService(lambda: trims.append(None), clock)
        service.startService()
        self.assertEqual(len(trims), 1)
        clock.advance(TRIM_INTERVAL - 1)
        self.assertEqual(len(trims), 1)
        clock.advance(1)
        self.assertEqual(len(trims), 2)
        service.stopService()
        clock.advance(10 * TRIM_INTERVAL)
        self.assertEqual((len(trims), clock.getDelayedCalls()), (2, []))

    def test_the_appliance_trims_where_it_can(self) -> None:
        reactor = MemoryReactorClock()
        service = ApplianceService(load_config(config_file(self)), MemoryStore(reactor), reactor)  # type: ignore[arg-type]
        trimming = [s for s in service if isinstance(s, HeapTrimService)]
        self.assertEqual(len(trimming), 1 if malloc_trim() is not None else 0)


class MallocTrimTests(SynchronousTestCase):
    if not GLIBC:
        skip = "glibc's malloc_trim only"

    def test_free_pages_go_back(self) -> None:
        """
        Memory freed between blocks that stay (what fragments a long-lived
        heap) stays resident until a trim hands its pages back.
        """
        trim = malloc_trim()
        assert trim is not None
        # Blocks of 4 KiB come from the C heap (not Python's small-object
        # arenas); one in sixteen stays, so the heap cannot shrink by itself.
        blocks = [bytearray(4096) for _ in range(16 * 1024)]
        kept = blocks[::16]
        del blocks
        before = resident_kib()
        trim()
        self.assertGreater(before - resident_kib(), 16 * 1024)  # of the 60 MiB freed
        del kept
