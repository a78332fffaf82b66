"""
The twistd log file, bounded: twistd's own C{--logfile} rotates at 1 MB
and keeps every rotated file, so a busy or attacked appliance fills its
disk.  The appliance gives twistd a log observer (the documented
L{ILogObserver} application component) writing the same file, rotated
at L{ROTATE_BYTES}, keeping the newest L{KEEP_ROTATED} rotated files.

The observer (also the one for stdout under C{twistd -n}) writes the lines
twistd's C{textFileLogObserver} writes, byte for byte, for less work a
line: the time prefix is formatted once a second and a log format string
is parsed once (L{ClassicLogFormat}).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from string import Formatter
from typing import IO, Any, cast

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, eventAsText, formatEventAsClassicLogText, formatTime
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

#: Size at which the log file is rotated.
ROTATE_BYTES = 10_000_000
#: Rotated files kept (C{twistd.log.1} ... C{twistd.log.10}); older ones are deleted.
KEEP_ROTATED = 10


def log_file_of(twistd_options: Mapping[str, Any] | None) -> str | None:
    """
    The file twistd would log to, given its options (C{None} when not
    run by twistd, or when it logs to stdout or syslog).
    """
    if twistd_options is None or twistd_options.get("syslog") or twistd_options.get("logger"):
        return None
    path = twistd_options.get("logfile")
    if path == "-" or (not path and twistd_options.get("nodaemon")):
        return None
    return str(path or "twistd.log")


def bounded_log_file(path: str) -> LogFile:
    """
    The log file at C{path}, rotated at L{ROTATE_BYTES}, keeping
    L{KEEP_ROTATED} old files, readable by its owner and group only.
    """
    log: LogFile = LogFile.fromFullPath(
        path, rotateLength=ROTATE_BYTES, maxRotatedFiles=KEEP_ROTATED, defaultMode=0o640
    )
    return log


def install_log_observer(application: object, path: str | None) -> None:
    """
    Make twistd log to a bounded L{bounded_log_file} at C{path} (to stdout
    for L{STDOUT}) through L{text_file_observer}, unless the application
    already names its observer or twistd logs elsewhere (C{None}).
    """
    if path is None or not isinstance(application, Componentized):
        return
    if application.getComponent(ILogObserver, None) is None:
        out = sys.stdout if path == STDOUT else cast(IO[Any], bounded_log_file(path))
        application.setComponent(ILogObserver, text_file_observer(out))


#: What L{log_target_of} answers when twistd logs to its standard output.
STDOUT = "-"


def log_target_of(twistd_options: Mapping[str, Any] | None) -> str | None:
    """
    Where twistd would log, given its options: a file (as L{log_file_of}),
    L{STDOUT}, or C{None} (not run by twistd, syslog, a custom logger).
    """
    path = log_file_of(twistd_options)
    if path is not None or twistd_options is None:
        return path
    if twistd_options.get("syslog") or twistd_options.get("logger"):
        return None
    return STDOUT


# A field the fast path formats: the literal text before it, the event key,
# the conversion (None, "r" or "s") and the format spec.
_Field = tuple[str, str | None, str | None, str]

_parser = Formatter()


def _compile(log_format: str) -> list[_Field] | None:
    """
    C{log_format} parsed once, when each of its fields is a plain event
    key (no attribute, index or call; no nested spec): what
    L{formatWithCall<twisted.logger.formatWithCall>} then does comes down
    to C{format(event[key], spec)}.  C{None} otherwise.
    """
    try:
        fields = list(_parser.parse(log_format))
    except ValueError:
        return None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if not name.isidentifier() or conversion not in (None, "r", "s") or "{" in (spec or ""):
            return None
    return [(literal, name, conversion, spec or "") for literal, name, spec, conversion in fields]


class ClassicLogFormat:
    """
    L{formatEventAsClassicLogText} with twistd's RFC 3339 time format, the
    same text for every event, cheaper: the time prefix is formatted once a
    second, a format string is parsed once; an event it does not cover
    (a traceback, a flattened event, a field with attributes or calls, an
    error while formatting) is formatted by Twisted's own code.
    """

    #: Format strings kept parsed; beyond, the cache starts again.
    MAX_FORMATS = 1000

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""
        self._formats: dict[str, list[_Field] | None] = {}

    def time(self, when: object) -> str:
        """
        C{formatTime(when)}: once a second.  Within a microsecond of the
        next second, C{datetime} rounds up: computed then, as it is for
        anything but a positive float or int.
        """
        if type(when) is float or type(when) is int:
            second = int(when)
            if second >= 0 and when - second < 0.999999:
                if second != self._second:
                    self._stamp = formatTime(second)
                    self._second = second
                return self._stamp
        return formatTime(cast(float, when))

    def _fields(self, log_format: str) -> list[_Field] | None:
        try:
            return self._formats[log_format]
        except KeyError:
            if len(self._formats) >= self.MAX_FORMATS:
                self._formats.clear()
            fields = self._formats[log_format] = _compile(log_format)
            return fields

    def _text(self, event: LogEvent, fields: list[_Field]) -> str:
        parts = []
        for literal, name, conversion, spec in fields:
            parts.append(literal)
            if name is not None:
                value = event[name]
                if conversion == "r":
                    value = repr(value)
                elif conversion == "s":
                    value = str(value)
                parts.append(format(value, spec))
        return "".join(parts)

    def _own_text(self, event: LogEvent) -> str | None:
        """
        The event's text, or C{None} when Twisted's code must format it.
        """
        log_format = event.get("log_format", None)
        fields = self._fields(log_format) if type(log_format) is str else None
        if fields is None or "log_failure" in event or "log_flattened" in event:
            return None
        try:
            return self._text(event, fields)
        except Exception:
            return None

    @staticmethod
    def _system(event: LogEvent) -> str:
        system = event.get("log_system", None)
        if system is None:
            level = event.get("log_level", None)
            return f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        try:
            return str(system)
        except Exception:
            return "UNFORMATTABLE"

    def __call__(self, event: LogEvent) -> str | None:
        text = self._own_text(event)
        if text is None:
            return self._generic(event)
        if not text:
            return None
        line = f"{self.time(event.get('log_time', None))} [{self._system(event)}] {text}"
        return line.replace("\n", "\n\t") + "\n"

    def untimed(self, event: LogEvent) -> str:
        """
        C{eventAsText(event, includeTimestamp=False)}: the system and the
        text (a worker's line, which the main worker's log times).
        """
        text = self._own_text(event)
        if text is None:
            return eventAsText(event, includeTimestamp=False, includeSystem=True)
        return f"[{self._system(event)}] {text}" if text else ""

    def _generic(self, event: LogEvent) -> str | None:
        return formatEventAsClassicLogText(event, formatTime=self.time)


def text_file_observer(out: IO[Any]) -> FileLogObserver:
    """
    What twistd's C{textFileLogObserver(out)} writes, with
    L{ClassicLogFormat}.
    """
    return FileLogObserver(out, ClassicLogFormat())
