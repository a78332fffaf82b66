"""
The admin API: bearer-key protected JSON for operators.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..stats import CONTENT_TYPE, Metrics
from ..storage import Store


class AdminError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def ensure_api_key(path: str) -> str:
    """
    Read the admin key from C{path}, creating it (mode 0600) when missing.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as f:
            key = f.read().strip()
        if len(key) < 16:
            raise ValueError(f"{path}: the admin key must be at least 16 characters") from None
        return key
    key = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


class AdminAPI:
    """
    Routes for operators; every route needs C{Authorization: Bearer <key>}.
    """

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        *,
        api_key: str,
        store: Store,
        metrics: Metrics | None = None,
        ca_health: Callable[[], Mapping[str, Mapping[str, object]]] = dict,
    ) -> None:
        self._key = api_key.encode()
        self._store = store
        self._metrics = metrics if metrics is not None else Metrics()
        self._ca_health = ca_health

    def resource(self) -> IResource:
        return self.app.resource()

    def _authorise(self, request: IRequest) -> None:
        header = request.getHeader("authorization") or ""
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._key):
            request.setHeader("WWW-Authenticate", 'Bearer realm="acme-appliance"')
            raise AdminError(401, "a valid bearer key is required")

    def _json(self, request: IRequest, body: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(body, indent=2).encode()

    @app.handle_errors(AdminError)
    def _admin_error(self, request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, AdminError)
        return self._json(request, {"error": failure.value.detail}, failure.value.status)

    @app.handle_errors(NotFound)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        return self._json(request, {"error": "no such resource"}, 404)

    @app.handle_errors(MethodNotAllowed)
    def _bad_method(self, request: IRequest, failure: Failure) -> bytes:
        return self._json(request, {"error": "method not allowed"}, 405)

    @app.route("/health", methods=["GET"])
    async def health(self, request: IRequest) -> bytes:
        self._authorise(request)
        try:
            await self._store.get("health/probe")
            storage = "ok"
        except Exception as e:
            storage = f"error: {e}"
        healthy = storage == "ok"
        body = {"status": "ok" if healthy else "degraded", "storage": storage, "cas": dict(self._ca_health())}
        return self._json(request, body, 200 if healthy else 503)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        """
        The counters in the Prometheus text format.
        """
        self._authorise(request)
        request.setHeader("Content-Type", CONTENT_TYPE)
        return self._metrics.exposition()
