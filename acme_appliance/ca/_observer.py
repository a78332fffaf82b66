"""
How a CA client reports the progress of an upstream order to whoever asked
for it, without knowing what the caller does with it (events, metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._interface import ChallengeType


class ValidationObserver(Protocol):
    """
    Told about an upstream order and its validation, as it happens.  C{ca}
    is the configured CA name, C{names} the order's names.
    """

    def ordered(self, ca: str, names: tuple[str, ...], url: str) -> None:
        """
        The CA created the order C{url}.
        """

    def started(self, ca: str, names: tuple[str, ...], challenge: ChallengeType) -> None:
        """
        Every challenge was published and the CA is about to check them.
        """

    def succeeded(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, seconds: float) -> None:
        """
        The CA validated everything, C{seconds} after L{started}.
        """

    def failed(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, error: str) -> None:
        """
        A validation that had published challenges failed with C{error}.
        """


class SilentObserver:
    """
    A L{ValidationObserver} that ignores everything (the default).
    """

    def ordered(self, ca: str, names: tuple[str, ...], url: str) -> None:
        pass

    def started(self, ca: str, names: tuple[str, ...], challenge: ChallengeType) -> None:
        pass

    def succeeded(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, seconds: float) -> None:
        pass

    def failed(self, ca: str, names: tuple[str, ...], challenge: ChallengeType, error: str) -> None:
        pass
