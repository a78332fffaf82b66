"""
The twistd log file is bounded: rotated by size, with a fixed number of
rotated files kept, through the application's log observer component.
"""

from __future__ import annotations

import os

from twisted.application.service import Application
from twisted.internet import reactor as global_reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, Logger
from twisted.trial.unittest import SynchronousTestCase

from acme_appliance import tap
from acme_appliance._logs import KEEP_ROTATED, ROTATE_BYTES, bounded_log_file, install_log_observer, log_file_of
from acme_appliance.config import load_config
from acme_appliance.storage import MemoryStore
from acme_appliance.tap import ApplianceService, Options

from .test_tap_wiring import config_file


class _Service:
    log_file: str | None = None
    bound = False

    def privilegedStartService(self) -> None:
        # makeService binds a daemon's ports before twistd forks.
        self.bound = True


class LogFileOfTests(SynchronousTestCase):
    def test_twistd_options(self) -> None:
        self.assertEqual(log_file_of({"logfile": "/var/log/a.log", "nodaemon": False}), "/var/log/a.log")
        self.assertEqual(log_file_of({"logfile": "a.log", "nodaemon": True}), "a.log")
        self.assertEqual(log_file_of({"logfile": None, "nodaemon": False}), "twistd.log")
        self.assertIsNone(log_file_of({"logfile": None, "nodaemon": True}))
        self.assertIsNone(log_file_of({"logfile": "-", "nodaemon": True}))
        self.assertIsNone(log_file_of({"logfile": "a.log", "syslog": True}))
        self.assertIsNone(log_file_of({"logfile": "a.log", "logger": "some.factory"}))
        self.assertIsNone(log_file_of(None))


class BoundedLogTests(SynchronousTestCase):
    def test_rotated_files_are_bounded(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        log = bounded_log_file(os.path.join(directory, "twistd.log"))
        self.addCleanup(log.close)
        self.assertEqual((log.rotateLength, log.maxRotatedFiles), (ROTATE_BYTES, KEEP_ROTATED))
        for i in range(KEEP_ROTATED + 5):
            log.write(f"line {i}\n")
            log.rotate()
        self.assertEqual(len(os.listdir(directory)), KEEP_ROTATED + 1)

    def _config(self) -> str:
        return config_file(self)

    def test_service_installs_the_observer(self) -> None:
        config = self._config()
        reactor = MemoryReactorClock()
        # The DNS resolver the service builds reads resolv.conf on the
        # global reactor: leave no timer behind for later tests.
        before = set(global_reactor.getDelayedCalls())

        def cancel_new_timers() -> None:
            for call in set(global_reactor.getDelayedCalls()) - before:
                call.cancel()

        self.addCleanup(cancel_new_timers)
        service = ApplianceService(load_config(config), MemoryStore(reactor), reactor)  # type: ignore[arg-type]
        service.log_file = os.path.join(os.path.dirname(config), "twistd.log")
        application = Application("acme-appliance")
        service.setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        self.assertIsNotNone(observer)
        Logger(observer=observer).info("hello {who}", who="operator")
        with open(service.log_file) as f:
            self.assertIn("hello operator", f.read())

    def test_make_service_passes_twistd_log_file(self) -> None:
        made: list[_Service] = []

        def fake(config: object, store: object, reactor: object) -> _Service:
            made.append(_Service())
            return made[-1]

        self.patch(tap, "ApplianceService", fake)
        options = Options()
        options.parseOptions(["--config", self._config()])
        options.parent = {"logfile": "/var/log/a.log", "nodaemon": False}  # type: ignore[assignment]
        tap.makeService(options)
        self.assertEqual([(s.log_file, s.bound) for s in made], [("/var/log/a.log", True)])

    def test_existing_observer_is_kept(self) -> None:
        application = Application("x")
        seen: list[object] = []

        def mine(event: object) -> None:
            seen.append(event)

        application.setComponent(ILogObserver, mine)
        install_log_observer(application, "ignored.log")
        self.assertIs(application.getComponent(ILogObserver), mine)
        self.assertFalse(os.path.exists("ignored.log"))
