"""
What an upstream CA answered, and how its problems become L{CAError}s.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

import josepy
from attrs import frozen
from twisted.web.http_headers import Headers

from ...core import ProblemType
from ...wire import messages
from .._interface import CAError

# Problem types that another try (later, or at another CA) may get past.
TRANSIENT_PROBLEMS = frozenset({ProblemType.SERVER_INTERNAL, ProblemType.RATE_LIMITED, ProblemType.BAD_NONCE})

_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')
_J = TypeVar("_J", bound=josepy.JSONObjectWithFields)


@frozen
class Reply:
    """
    One HTTP answer of a CA, body read.
    """

    code: int
    headers: Headers
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def links(self, rel: str) -> list[str]:
        found = []
        for value in self.headers.getRawHeaders("link", []):
            for url, relation in _LINK.findall(value):
                if relation == rel:
                    found.append(url)
        return found

    def _json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def decode(self, cls: type[_J]) -> _J:
        """
        The body as a C{cls}.

        @raise CAError: (transient) it is not one.
        """
        value = self._json()
        if not isinstance(value, dict):
            raise CAError(f"{self.url} answered {self.code} with something that is not a JSON object", transient=True)
        decoded = messages.answer(cls, value)
        if decoded is None:
            raise CAError(f"{self.url} answered {self.code} with an invalid {cls.__name__}", transient=True)
        return decoded

    def problem(self) -> messages.Problem | None:
        return messages.answer(messages.Problem, self._json())


def problem_error(ca: str, reply: Reply) -> CAError:
    """
    The L{CAError} for an error response: transient for 5xx and for
    C{serverInternal}/C{rateLimited}/C{badNonce}, with the CA's type and
    detail passed on.
    """
    problem = reply.problem()
    if problem is None:
        return CAError(f"CA {ca} answered {reply.code} for {reply.url}", transient=True)
    error = problem_to_error(ca, problem, server_error=reply.code >= 500)
    error.retry_after = _seconds(reply.header("retry-after"))
    return error


def _seconds(value: str | None) -> float | None:
    # An HTTP-date is not worth parsing: the caller has its own default.
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def problem_to_error(ca: str, problem: messages.Problem, *, server_error: bool = False) -> CAError:
    """
    The L{CAError} for an RFC 7807 problem document, from a response or
    from an order's or challenge's C{error}.
    """
    problem_type = ProblemType.from_urn(problem.type)
    detail = problem.detail or problem.type or "no detail"
    for sub in problem.subproblems:
        if sub.detail:
            detail += f"; {sub.identifier.value if sub.identifier else '?'}: {sub.detail}"
    transient = server_error or problem_type is None or problem_type in TRANSIENT_PROBLEMS
    return CAError(f"CA {ca}: {detail}", transient=transient, problem_type=problem_type or ProblemType.SERVER_INTERNAL)


def retry_after(reply: Reply, default: float, cap: float) -> float:
    """
    How long to wait before polling again: the CA's C{Retry-After} in
    seconds (at most C{cap}), else C{default}.
    """
    seconds = _seconds(reply.header("retry-after"))
    return default if seconds is None else min(seconds, cap)
