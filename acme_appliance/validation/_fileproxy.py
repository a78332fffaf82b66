"""
The HTTP file proxy: customer web servers forward C{/.well-known/acme-challenge/}
and C{/.well-known/pki-validation/} here, keeping the C{Host} header, and the
appliance answers from L{ValidationValues}.
"""

from __future__ import annotations

from http import HTTPStatus

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from ..core import InvalidName, RouteError, route_errors
from ._names import ACME_CHALLENGE_PREFIX, PKI_VALIDATION_PREFIX, InvalidValue, check_http_path, host_from_header
from ._values import ValidationValues


class FileProxy:
    """
    Serves validation files by C{Host} and path, as C{text/plain}.

    Only C{GET} and C{HEAD} of the two well-known directories are served;
    every other path is 404 and other methods 405.  Nothing is ever fetched
    from elsewhere: an absolute request URI or an unknown host is simply not
    found.
    """

    app = Klein()
    # Werkzeug would answer C{//} in a path with a redirect built from the
    # Host header; here anything but the exact paths is simply not found.
    app.url_map.merge_slashes = False
    _log = Logger()

    def __init__(self, values: ValidationValues) -> None:
        """
        @param values: Where the files come from.
        """
        self._values = values

    def resource(self) -> IResource:
        """
        The Twisted Web resource to serve (at the root of a site).
        """
        resource: IResource = self.app.resource()
        return resource

    @app.route(ACME_CHALLENGE_PREFIX + "<token>", methods=["GET", "HEAD"])
    async def acme_challenge(self, request: IRequest, token: str) -> bytes:
        return await self._serve(request, ACME_CHALLENGE_PREFIX + token)

    @app.route(PKI_VALIDATION_PREFIX + "<name>", methods=["GET", "HEAD"])
    async def pki_validation(self, request: IRequest, name: str) -> bytes:
        return await self._serve(request, PKI_VALIDATION_PREFIX + name)

    async def _serve(self, request: IRequest, path: str) -> bytes:
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) != 1:
            return _plain(request, 400, "exactly one Host header is required\n")
        try:
            host = host_from_header(hosts[0])
        except InvalidName as e:
            self._log.info("file proxy: bad Host header: {error}", error=e)
            return _plain(request, 400, "bad Host header\n")
        try:
            check_http_path(path)
        except InvalidValue:
            return _plain(request, 404, "not found\n")
        # The router sees the path decoded and with empty segments folded;
        # only the exact spelling is served.
        if request.path != path.encode("ascii"):
            return _plain(request, 404, "not found\n")
        body = await self._values.http_body(host, path)
        if body is None:
            self._log.info("file proxy: nothing at {path} for {host}", host=host, path=path)
            return _plain(request, 404, "not found\n")
        self._log.info("file proxy: served {path} for {host}", host=host, path=path)
        return _plain(request, 200, body)

    # Anything else that goes wrong is left to Twisted Web's bare 500.
    @route_errors(app, internal=False)
    def route_error(self, request: IRequest, error: RouteError) -> bytes:
        if error.status is HTTPStatus.METHOD_NOT_ALLOWED:
            request.setHeader(b"allow", b"GET, HEAD")
            return _plain(request, 405, "method not allowed\n")
        if error.status is HTTPStatus.SERVICE_UNAVAILABLE:
            return _plain(request, 503, "storage unavailable; retry later\n")
        return _plain(request, 404, "not found\n")


def _plain(request: IRequest, code: int, body: str | bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    # Sent with its length, not in chunks, as every response of the
    # appliance's listeners (see acme_appliance.tap.site).
    return body.encode("ascii") if isinstance(body, str) else body
