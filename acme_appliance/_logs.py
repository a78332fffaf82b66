"""
The twistd log file, bounded: twistd's own C{--logfile} rotates at 1 MB
and keeps every rotated file, so a busy or attacked appliance fills its
disk.  The appliance gives twistd a log observer (the documented
L{ILogObserver} application component) writing the same file, rotated
at L{ROTATE_BYTES}, keeping the newest L{KEEP_ROTATED} rotated files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any, cast

from twisted.logger import ILogObserver, textFileLogObserver
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
    Make twistd log to a bounded L{bounded_log_file} at C{path}, unless
    the application already names its observer or twistd logs elsewhere.
    """
    if path is None or not isinstance(application, Componentized):
        return
    if application.getComponent(ILogObserver, None) is None:
        application.setComponent(ILogObserver, textFileLogObserver(cast(IO[Any], bounded_log_file(path))))
