"""
Upstream renewal information mirrored: when the CA that issued a
certificate suggests renewing it earlier than the window the appliance
gives its clients (an incident, a mass revocation), the client's window
moves into the past.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..core import report_failure, rfc3339
from ..notify import EventBus, RenewEarly
from ._certid import BadCertId, cert_id_of_pem
from ._records import AcmeRepository, CertificateRecord
from ._renewal import RenewalReason, RenewalWindows

#: How often (seconds) the upstream CAs are asked.
MIRROR_INTERVAL = 6 * 3600.0


class RenewalInfoSource(Protocol):
    """
    An upstream CA that may answer RFC 9773 renewal information.
    """

    async def renewal_window(self, cert_id: str) -> tuple[float, float] | None:
        """
        The CA's suggested window for C{cert_id} (start, end in seconds
        since the epoch), or C{None} when its directory has no
        C{renewalInfo}.

        @raise Exception: the CA could not be asked.
        """


class UpstreamRenewalMirror(Service):
    """
    Asks every upstream CA with renewal information about the current
    certificates it issued, at start and every C{interval} seconds.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        repository: AcmeRepository,
        windows: RenewalWindows,
        sources: Mapping[str, RenewalInfoSource],
        clock: IReactorTime,
        events: EventBus,
        interval: float = MIRROR_INTERVAL,
    ) -> None:
        self._repo = repository
        self._windows = windows
        self._sources = sources
        self._clock = clock
        self._events = events
        self._interval = interval
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        if self._sources:
            self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self._guarded_poll()))
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    async def _guarded_poll(self) -> None:
        try:
            await self.poll()
        except Exception:
            report_failure(self._log, "asking the upstream CAs for renewal information failed")

    async def poll(self) -> int:
        """
        Ask once; returns how many certificates' windows were moved.
        """
        silent: set[str] = set()
        moved = 0
        for record in await self._repo.all_certificates():
            source = self._sources.get(record.ca_name)
            if source is None or record.ca_name in silent or record.window_moved is not None:
                continue
            if not self._windows.current(record):
                continue
            try:
                upstream = await source.renewal_window(cert_id_of_pem(record.chain_pem))
            except BadCertId:
                continue
            except Exception as e:
                self._log.warn("CA {ca}: no renewal information: {error}", ca=record.ca_name, error=str(e))
                silent.add(record.ca_name)
                continue
            if upstream is None:
                silent.add(record.ca_name)
            elif await self._follow(record, upstream[0]):
                moved += 1
        return moved

    async def _follow(self, record: CertificateRecord, upstream_start: float) -> bool:
        ours = await self._windows.window(record)
        if upstream_start >= ours.start or not await self._windows.move(record.id, RenewalReason.UPSTREAM):
            return False
        self._log.info(
            "CA {ca} suggests renewing {serial} from {start}: its clients renew now",
            ca=record.ca_name,
            serial=record.serial,
            start=rfc3339(upstream_start),
        )
        self._events.emit(
            RenewEarly,
            order_id=record.order_id,
            token_id=record.token_id,
            names=record.names,
            ca=record.ca_name,
            serial=record.serial,
            upstream_start=rfc3339(upstream_start, fraction=False),
        )
        return True
