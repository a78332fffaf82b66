"""
Per-CA health: a circuit breaker that skips a CA known to be down and
probes it again later.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..core import report_failure
from ..storage import Store, keys

#: How long a CA stays down for the cluster without a node confirming it:
#: a marker left by a node that died, or for a CA no longer configured,
#: goes away on its own (a CA still down is found down again).
SHARED_DOWN_TTL = 3600.0


@define
class _State:
    failures: int = 0
    down_since: float | None = None
    last_probe: float | None = None
    #: Whether the store has this node's finding that the CA is down.
    shared: bool = True


class CAHealth:
    """
    Counts consecutive transient failures per CA.  After C{threshold} of
    them the CA is I{down}: it is skipped while another CA can be tried,
    except for one probe every C{probe_interval} seconds.  One success makes
    it I{up} again.

    @param on_change: called with C{(ca, up)} when a CA goes down or up.
    @param store: Shared by the nodes of a cluster: a CA one node finds
        down is down for all once they L{refresh}, and only the node whose
        finding changed the shared state calls C{on_change}.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        threshold: int = 3,
        probe_interval: float = 30.0,
        on_change: Callable[[str, bool], None] = lambda ca, up: None,
        store: Store | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._threshold = threshold
        self._probe_interval = probe_interval
        self._on_change = on_change
        self._states: dict[str, _State] = {}

    def _state(self, ca: str) -> _State:
        return self._states.setdefault(ca, _State())

    def is_up(self, ca: str) -> bool:
        return self._state(ca).down_since is None

    def should_try(self, ca: str) -> bool:
        """
        Whether to send a request to C{ca} now: it is up, or it is down and
        due for a probe (which this call books).
        """
        state = self._state(ca)
        if state.down_since is None:
            return True
        now = self._clock.seconds()
        last = state.last_probe if state.last_probe is not None else state.down_since
        if now - last >= self._probe_interval:
            state.last_probe = now
            return True
        return False

    def succeeded(self, ca: str) -> None:
        state = self._state(ca)
        was_down = state.down_since is not None
        self._states[ca] = _State()
        if was_down:
            self._log.info("CA {ca} is up again", ca=ca)
            self._share(ca, True, self._store.delete(keys.ca_down(ca)) if self._store else None)

    def failed(self, ca: str) -> None:
        state = self._state(ca)
        state.failures += 1
        if state.down_since is None and state.failures >= self._threshold:
            state.down_since = self._clock.seconds()
            self._log.warn("CA {ca} is down after {failures} failures", ca=ca, failures=state.failures)
            self._share(ca, False, self._mark_down(ca, state) if self._store else None)

    async def _mark_down(self, ca: str, state: _State) -> bool:
        assert self._store is not None and state.down_since is not None
        state.shared = False
        added = await self._store.add(keys.ca_down(ca), repr(state.down_since).encode(), ttl=SHARED_DOWN_TTL)
        state.shared = True
        return added

    def _share(self, ca: str, up: bool, write: Coroutine[Any, Any, bool] | None) -> None:
        """
        Tell C{on_change}, alone or once C{write} to the shared state
        changed it.
        """
        if write is None:
            self._on_change(ca, up)
            return

        def changed(done: bool) -> None:
            if done:
                self._on_change(ca, up)

        d = Deferred.fromCoroutine(write)
        d.addCallback(changed)
        d.addErrback(lambda f: report_failure(self._log, "cannot share the health of CA {ca}", f, ca=ca))

    async def refresh(self) -> None:
        """
        Take over what the other nodes found: a CA down in the store is down
        here (probed from now on), one no longer there is up.
        """
        if self._store is None:
            return
        shared = {key[len(keys.CA_DOWN_PREFIX) :]: value for key, value in await self._store.scan(keys.CA_DOWN_PREFIX)}
        for ca in set(shared) | set(self._states):
            state = self._state(ca)
            if ca in shared and state.down_since is None:
                state.down_since = state.last_probe = self._clock.seconds()
            elif ca not in shared and state.down_since is not None:
                if state.shared:
                    # Another node found it up again.
                    self._states[ca] = _State()
                else:
                    # This node's finding never reached the store: share it now.
                    self._share(ca, False, self._mark_down(ca, state))

    def snapshot(self) -> dict[str, dict[str, object]]:
        """
        Every CA seen so far: C{up}, consecutive C{failures}, C{down_since}.
        """
        return {
            ca: {"up": s.down_since is None, "failures": s.failures, "down_since": s.down_since}
            for ca, s in sorted(self._states.items())
        }
