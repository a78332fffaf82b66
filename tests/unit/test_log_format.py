"""
The log lines are exactly twistd's: L{ClassicLogFormat} writes what
twistd's C{textFileLogObserver} writes (time prefix, system, text), byte
for byte, and the appliance's observer is used for stdout as for a file.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.application.service import Application
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    eventAsText,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance._logs import STDOUT, ClassicLogFormat, install_log_observer, log_target_of, text_file_observer

# 2026-03-29T01:00:00Z: Central European Summer Time starts (02:00 +0100 is
# 03:00 +0200).
DST_START = 1774746000


def use_time_zone(case: SynchronousTestCase, zone: str) -> None:
    """
    Run C{case} in the local time zone C{zone}.
    """
    before = os.environ.get("TZ")

    def restore() -> None:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()

    case.addCleanup(restore)
    os.environ["TZ"] = zone
    time.tzset()


def twisted_line(event: LogEvent) -> str | None:
    """
    What twistd's C{textFileLogObserver} writes for C{event}.
    """
    return formatEventAsClassicLogText(event, formatTime=lambda when: formatTime(when, timeFormatRFC3339))


def logged(**kwargs: Any) -> LogEvent:
    """
    The event a L{Logger} emits for C{info(**kwargs)}.
    """
    events: list[LogEvent] = []
    log_format = kwargs.pop("format")
    Logger(namespace="acme_appliance.test", observer=cast(ILogObserver, events.append)).info(log_format, **kwargs)
    return events[0]


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no")

    def __repr__(self) -> str:
        return "<unprintable>"


class _Thing:
    size = 3

    def name(self) -> str:
        return "thing"


def _failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


class PinnedFormatTests(SynchronousTestCase):
    """
    The exact text of a line, so that an optimisation that changes it fails.
    """

    def setUp(self) -> None:
        use_time_zone(self, "UTC")

    def test_info_line(self) -> None:
        event = logged(format="order {order_id} is processing", order_id="o-1")
        event["log_time"] = 1764366000.75
        self.assertEqual(
            ClassicLogFormat()(event), "2025-11-28T21:40:00+0000 [acme_appliance.test#info] order o-1 is processing\n"
        )

    def test_system_spec_and_lines(self) -> None:
        event = {
            "log_format": "waiting {seconds:.0f} s for {who!r}\nthen {{more}}",
            "seconds": 2.6,
            "who": "ca",
            "log_system": "acme,3,127.0.0.1",
            "log_time": 0.0,
        }
        self.assertEqual(
            ClassicLogFormat()(event),
            "1970-01-01T00:00:00+0000 [acme,3,127.0.0.1] waiting 3 s for 'ca'\n\tthen {more}\n",
        )

    def test_offset_and_daylight_saving(self) -> None:
        use_time_zone(self, "Europe/Berlin")
        format_line = ClassicLogFormat()
        stamps = [format_line.time(t) for t in (DST_START - 0.5, DST_START + 0.25, DST_START - 1e-7)]
        self.assertEqual(stamps, ["2026-03-29T01:59:59+0100", "2026-03-29T03:00:00+0200", "2026-03-29T03:00:00+0200"])

    def test_no_time_no_level(self) -> None:
        self.assertEqual(ClassicLogFormat()({"log_format": "x"}), "- [-#-] x\n")

    def test_nothing_to_write(self) -> None:
        self.assertIsNone(ClassicLogFormat()({"log_time": 1.0}))
        self.assertIsNone(ClassicLogFormat()({"log_format": "{empty}", "empty": "", "log_time": 1.0}))


def _events() -> list[LogEvent]:
    thing = _Thing()
    base: dict[str, Any] = {"log_time": 1764366000.5, "log_level": LogLevel.warn, "log_namespace": "n"}
    formats: list[dict[str, Any]] = [
        {"log_format": "{a} and {b!s} and {c!r:>8}", "a": 1, "b": None, "c": "x"},
        {"log_format": "{thing.size} {thing.name()} {d[k]}", "thing": thing, "d": {"k": "v"}},
        {"log_format": "{} {0}"},
        {"log_format": "{missing}"},
        {"log_format": "{x!a}", "x": "é"},
        {"log_format": "{x:{width}}", "x": 1, "width": 5},
        {"log_format": "{x:q}", "x": 1},
        {"log_format": "{unprintable}", "unprintable": _Unprintable()},
        {"log_format": "unbalanced {"},
        {"log_format": b"bytes {x}", "x": 1},
        {"log_format": 7},
        {"log_format": "text", "log_system": _Unprintable()},
        {"log_format": "text", "log_system": 5},
        {"log_format": "text", "log_namespace": None},
        {"log_format": "{x}", "x": "failed", "log_failure": _failure()},
        {"log_format": "{x}", "x": "flat", "log_flattened": {"x!:": "flattened"}},
        {"log_format": None, "log_failure": _failure()},
        {"log_format": "{log_io}", "log_io": "a\nb\n"},
    ]
    return [{**base, **event} for event in formats]


class SameAsTwistedTests(SynchronousTestCase):
    """
    Whatever the event, the line is Twisted's.
    """

    def test_events(self) -> None:
        format_line = ClassicLogFormat()
        for event in _events():
            # Twice: the second time from the parsed format.
            self.assertEqual([format_line(event), format_line(event)], [twisted_line(event)] * 2, event)

    def test_untimed_events(self) -> None:
        """
        A worker's line (no time) is Twisted's C{eventAsText} too.
        """
        format_line = ClassicLogFormat()
        for event in [*_events(), {"log_time": 1.0}, {"log_format": "{e}", "e": ""}, {"log_format": "x\ny"}]:
            expected = eventAsText(event, includeTimestamp=False, includeSystem=True)
            self.assertEqual([format_line.untimed(event), format_line.untimed(event)], [expected] * 2, event)

    def test_format_cache_is_bounded(self) -> None:
        format_line = ClassicLogFormat()
        self.patch(ClassicLogFormat, "MAX_FORMATS", 3)
        for i in range(10):
            event = {"log_format": f"{i} {{x}}", "x": i, "log_time": 1.0}
            self.assertEqual(format_line(event), twisted_line(event))
            self.assertLessEqual(len(format_line._formats), 3)

    @given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=20))
    def test_times(self, times: list[float]) -> None:
        use_time_zone(self, "America/Sao_Paulo")
        format_line = ClassicLogFormat()
        for when in sorted(times) + times + [int(t) for t in times]:
            self.assertEqual(format_line.time(when), formatTime(when))

    def test_second_changes(self) -> None:
        use_time_zone(self, "Europe/Berlin")
        format_line = ClassicLogFormat()
        for when in (DST_START - 2.5, DST_START - 2.1, DST_START - 1.0, DST_START, DST_START - 2.0, -1.5, None):
            self.assertEqual(format_line.time(when), formatTime(when), when)


class ObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        use_time_zone(self, "UTC")

    def test_writes_and_flushes_lines(self) -> None:
        out = io.StringIO()
        observer = text_file_observer(out)
        self.assertIsInstance(observer, FileLogObserver)
        observer(
            {
                "log_format": "hello {who}",
                "who": "operator",
                "log_namespace": "ns",
                "log_level": LogLevel.info,
                "log_time": 0.0,
            }
        )
        observer({"log_time": 0.0})
        self.assertEqual(out.getvalue(), "1970-01-01T00:00:00+0000 [ns#info] hello operator\n")

    def test_stdout_target(self) -> None:
        self.assertEqual(log_target_of({"logfile": None, "nodaemon": True}), STDOUT)
        self.assertEqual(log_target_of({"logfile": "-", "nodaemon": True}), STDOUT)
        self.assertEqual(log_target_of({"logfile": "a.log", "nodaemon": True}), "a.log")
        self.assertEqual(log_target_of({"logfile": None, "nodaemon": False}), "twistd.log")
        self.assertIsNone(log_target_of({"logfile": None, "nodaemon": True, "syslog": True}))
        self.assertIsNone(log_target_of({"logfile": None, "nodaemon": True, "logger": "some.factory"}))
        self.assertIsNone(log_target_of(None))

    def test_stdout_observer(self) -> None:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        application = Application("acme-appliance")
        install_log_observer(application, STDOUT)
        observer = application.getComponent(ILogObserver)
        observer({"log_format": "ready", "log_namespace": "ns", "log_level": LogLevel.info, "log_time": 0.0})
        self.assertEqual(out.getvalue(), "1970-01-01T00:00:00+0000 [ns#info] ready\n")
