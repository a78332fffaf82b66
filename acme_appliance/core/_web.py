"""
The one way a Klein app turns routing failures (no such path, wrong method)
and unexpected exceptions into responses; each app only says how its
responses look.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from attrs import frozen
from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

#: Seconds a client is told to wait (C{Retry-After}) when a backend is away.
UNAVAILABLE_RETRY_AFTER = 5

_log = Logger()


class Unavailable(Exception):
    """
    A backend the request needs (the store) is away for now: the request
    is answered 503 with C{Retry-After}, not as an internal error.
    """


@frozen
class RouteError:
    """
    What went wrong answering a request, for an app's error renderer.

    @ivar status: C{NOT_FOUND}, C{METHOD_NOT_ALLOWED},
        C{SERVICE_UNAVAILABLE} (an L{Unavailable}; the C{Retry-After}
        header is set) or C{INTERNAL_SERVER_ERROR}.
    @ivar failure: the failure Klein caught.
    @ivar allowed: for C{METHOD_NOT_ALLOWED}, the methods the path takes.
    """

    status: HTTPStatus
    failure: Failure
    allowed: tuple[str, ...] = ()


Render = TypeVar("Render", bound=Callable[[Any, IRequest, RouteError], bytes])


def route_errors(app: Klein, *, internal: bool = True) -> Callable[[Render], Render]:
    """
    Decorate an app's C{render(self, request, error)} method to answer
    Klein's C{NotFound} and C{MethodNotAllowed}, an L{Unavailable} backend
    and, with C{internal}, every other exception (as L{RouteError}s).

    Klein tries handlers in the order they are registered: apply this after
    the app's own, more specific, handlers.
    """

    def register(render: Render) -> Render:
        @app.handle_errors(NotFound)
        def not_found(self: Any, request: IRequest, failure: Failure) -> bytes:
            return render(self, request, RouteError(HTTPStatus.NOT_FOUND, failure))

        @app.handle_errors(MethodNotAllowed)
        def bad_method(self: Any, request: IRequest, failure: Failure) -> bytes:
            assert isinstance(failure.value, MethodNotAllowed)
            allowed = tuple(failure.value.valid_methods or ())
            return render(self, request, RouteError(HTTPStatus.METHOD_NOT_ALLOWED, failure, allowed))

        @app.handle_errors(Unavailable)
        def unavailable(self: Any, request: IRequest, failure: Failure) -> bytes:
            _log.warn(
                "answered 503, retry after {retry_after} s: {error}",
                retry_after=UNAVAILABLE_RETRY_AFTER,
                error=failure.value,
            )
            request.setHeader("Retry-After", str(UNAVAILABLE_RETRY_AFTER))
            return render(self, request, RouteError(HTTPStatus.SERVICE_UNAVAILABLE, failure))

        if internal:

            @app.handle_errors(Exception)
            def unexpected(self: Any, request: IRequest, failure: Failure) -> bytes:
                return render(self, request, RouteError(HTTPStatus.INTERNAL_SERVER_ERROR, failure))

        return render

    return register
