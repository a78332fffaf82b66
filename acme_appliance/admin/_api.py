"""
The admin API: bearer-key protected JSON for operators.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import Enum
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlencode

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from ..acme import directory_url
from ..core import InvalidName, RouteError, normalise_name, rfc3339, route_errors, write_private_file
from ..notify import CaFailover, EventBus, EventJournal, EventName, PolicyEvent
from ..orders import AcmeRepository, Order, OrderStatus, RenewalWindows
from ..policy import BadTokenRequest, Policy, Token, TokenRegistry, UnknownToken, token_domains
from ..stats import CONTENT_TYPE, Metrics, ca_state, dashboard_data, dashboard_page
from ..storage import Store, keys
from ._session import Sessions

COOKIE = b"acme_appliance_admin"
MAX_BODY = 65536
#: At most this many orders are looked at for one filtered page of /orders.
MAX_EXAMINED = 5000


def _arg(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode()) if request.args else None
    return values[0].decode("utf-8", "replace") if values else None


def _next_query(request: IRequest, before: str) -> str:
    """
    The query of the next page of C{/orders}: the same filters, C{before}
    the last order shown.
    """
    query = {name: value for name in ("status", "token", "name", "limit") if (value := _arg(request, name))}
    return urlencode({**query, "before": before})


def _time(seconds: float | None) -> str | None:
    return None if seconds is None else rfc3339(seconds)


def _token_json(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "policy": token.policy,
        "domains": list(token.domains),
        "created": _time(token.created),
        "revoked": _time(token.revoked_at),
        "active": token.active,
    }


def _order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "token_id": order.token_id,
        "account_id": order.account_id,
        "policy": order.policy,
        "names": list(order.names),
        "status": order.status.value,
        "ca": order.ca_name,
        "created": _time(order.created),
        "processing_since": _time(order.processing_since),
        "completed": _time(order.completed),
        "error": order.error,
    }


class Caller(Enum):
    """
    How a request proved it may use the admin API.
    """

    BEARER = "bearer"
    BROWSER = "session cookie"


class AdminError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def ensure_api_key(path: str) -> str:
    """
    Read the admin key from C{path}, creating it (mode 0600) when missing.
    """
    key = secrets.token_urlsafe(32)
    try:
        write_private_file(path, (key + "\n").encode(), exclusive=True)
    except FileExistsError:
        with open(path) as f:
            key = f.read().strip()
        if len(key) < 16:
            raise ValueError(f"{path}: the admin key must be at least 16 characters") from None
    return key


class AdminAPI:
    """
    Routes for operators; every route needs the admin key, as
    C{Authorization: Bearer <key>} or, for the dashboard in a browser, the
    cookie that C{GET /?key=<key>} sets.
    """

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        *,
        api_key: str,
        store: Store,
        clock: IReactorTime,
        metrics: Metrics | None = None,
        ca_health: Callable[[], Mapping[str, Mapping[str, object]]] = dict,
        tokens: TokenRegistry | None = None,
        repository: AcmeRepository | None = None,
        journal: EventJournal | None = None,
        policies: Sequence[Policy] = (),
        cas: Mapping[str, str] | None = None,
        base_url: str = "",
        events: EventBus | None = None,
        node: str | None = None,
        jobs: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        self._node = node
        self._jobs = jobs
        self._key = api_key.encode()
        self._sessions = Sessions(self._key)
        self._store = store
        self._metrics = metrics if metrics is not None else Metrics()
        self._ca_health = ca_health
        self._tokens = tokens
        self._repo = repository if repository is not None else AcmeRepository(store)
        self._journal = journal if journal is not None else EventJournal(store)
        self._policies = tuple(policies)
        self._cas = dict(cas or {})
        self._base_url = base_url
        self._clock = clock
        self._events = events if events is not None else EventBus(self._clock)
        self._renewals = RenewalWindows(self._repo, clock)

    def resource(self) -> IResource:
        return self.app.resource()

    def _authorise(self, request: IRequest) -> Caller:
        header = request.getHeader("authorization") or ""
        scheme, _, given = header.partition(" ")
        cookie = request.getCookie(COOKIE) or b""
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._key):
            return Caller.BEARER
        if cookie and self._sessions.valid(cookie, self._clock.seconds()):
            return Caller.BROWSER
        request.setHeader("WWW-Authenticate", 'Bearer realm="acme-appliance"')
        raise AdminError(401, "a valid bearer key is required")

    def _authorise_change(self, request: IRequest, *, body: bool) -> None:
        """
        Authorise a request that changes something: a JSON body must say
        so, and a browser session must come from the admin's own origin.
        """
        caller = self._authorise(request)
        content_type = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if body and content_type != "application/json":
            raise AdminError(415, "Content-Type must be application/json")
        if caller is Caller.BROWSER:
            scheme = "https" if request.isSecure() else "http"
            own = f"{scheme}://{request.getHeader('host') or ''}".lower()
            if (request.getHeader("origin") or "").lower() != own:
                raise AdminError(403, "a browser session may only change things from the admin's own origin")

    def _json(self, request: IRequest, body: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        return json.dumps(body, indent=2).encode()

    def _body(self, request: IRequest) -> dict[str, Any]:
        content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(content) > MAX_BODY:
            raise AdminError(413, f"the request body is over {MAX_BODY} bytes")
        try:
            body = json.loads(content or b"{}")
        except ValueError as e:
            raise AdminError(400, f"the request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise AdminError(400, "the request body must be a JSON object")
        return body

    @app.handle_errors(AdminError)
    def _admin_error(self, request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, AdminError)
        return self._json(request, {"error": failure.value.detail}, failure.value.status)

    @route_errors(app)
    def _route_error(self, request: IRequest, error: RouteError) -> bytes:
        if error.status is HTTPStatus.NOT_FOUND:
            return self._json(request, {"error": "no such resource"}, 404)
        if error.status is HTTPStatus.METHOD_NOT_ALLOWED:
            return self._json(request, {"error": "method not allowed"}, 405)
        if error.status is HTTPStatus.SERVICE_UNAVAILABLE:
            return self._json(request, {"error": "storage unavailable; retry later"}, 503)
        self._log.failure("admin request {path} failed", error.failure, path=request.path)
        return self._json(request, {"error": "internal error; the operator log has the details"}, 500)

    # health and metrics

    @app.route("/livez", methods=["GET", "HEAD"])
    def livez(self, request: IRequest) -> bytes:
        """
        Liveness for container health checks: needs no key, says nothing
        but that the process answers.
        """
        request.setHeader("Content-Type", "text/plain; charset=utf-8")
        request.setHeader("Cache-Control", "no-store")
        return b"ok\n"

    @app.route("/health", methods=["GET"])
    async def health(self, request: IRequest) -> bytes:
        self._authorise(request)
        try:
            await self._store.get(keys.HEALTH_PROBE)
            storage = "ok"
        except Exception as e:
            storage = f"error: {e}"
        healthy = storage == "ok"
        body: dict[str, object] = {
            "status": "ok" if healthy else "degraded",
            "storage": storage,
            "cas": self._ca_rows(),
        }
        body["store_connected"] = healthy
        if self._node is not None:
            body["node"] = self._node
        if self._jobs is not None and healthy:
            body["jobs"] = await self._job_holders()
        return self._json(request, body, 200 if healthy else 503)

    async def _job_holders(self) -> dict[str, str] | str:
        """
        Which node runs which issuance job (the holders of the job leases).
        """
        assert self._jobs is not None
        try:
            return dict(await self._jobs())
        except Exception as e:
            return f"error: {e}"

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        """
        The counters in the Prometheus text format.
        """
        self._authorise(request)
        request.setHeader("Content-Type", CONTENT_TYPE)
        return self._metrics.exposition()

    def _ca_rows(self) -> dict[str, dict[str, object]]:
        health = self._ca_health()
        rows: dict[str, dict[str, object]] = {}
        for name in sorted(set(self._cas) | set(health)):
            rows[name] = {"kind": self._cas.get(name, "unknown"), **ca_state(health.get(name, {}))}
        return rows

    @app.route("/cas", methods=["GET"])
    def cas(self, request: IRequest) -> bytes:
        self._authorise(request)
        return self._json(request, self._ca_rows())

    # tokens

    def _need_tokens(self) -> TokenRegistry:
        if self._tokens is None:
            raise AdminError(404, "tokens are not managed here")
        return self._tokens

    @app.route("/tokens", methods=["GET"])
    async def list_tokens(self, request: IRequest) -> bytes:
        self._authorise(request)
        return self._json(request, [_token_json(t) for t in await self._need_tokens().list()])

    @app.route("/tokens", methods=["POST"])
    async def create_token(self, request: IRequest) -> bytes:
        self._authorise_change(request, body=True)
        body = self._body(request)
        policy = body.get("policy")
        domains = body.get("domains", [])
        if not isinstance(policy, str) or not policy:
            raise AdminError(400, "'policy' must be the name of a configured policy")
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise AdminError(400, "'domains' must be an array of DNS names")
        try:
            names = token_domains(self._policies, policy, domains)
        except BadTokenRequest as e:
            raise AdminError(400, str(e)) from None
        token, secret = await self._need_tokens().create(policy, names)
        self._events.emit(PolicyEvent, name=EventName.TOKEN_CREATED, token_id=token.id, names=names, policy=policy)
        result = _token_json(token)
        result["directory_url"] = directory_url(self._base_url, secret)
        return self._json(request, result, 201)

    @app.route("/tokens/<token_id>", methods=["DELETE"])
    async def revoke_token(self, request: IRequest, token_id: str) -> bytes:
        self._authorise_change(request, body=False)
        try:
            token = await self._need_tokens().revoke(token_id)
        except UnknownToken:
            raise AdminError(404, f"no active token {token_id!r}") from None
        self._events.emit(PolicyEvent, name=EventName.TOKEN_REVOKED, token_id=token.id, names=token.domains)
        await self._renewals.token_revoked(token.id)
        return self._json(request, _token_json(token))

    # renewal

    @app.route("/renew-now", methods=["POST"])
    async def renew_now(self, request: IRequest) -> bytes:
        """
        Move the renewal windows of every current certificate for the
        given names into the past (RFC 9773): C{{"names": [...]}}.
        """
        self._authorise_change(request, body=True)
        names = self._body(request).get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise AdminError(400, "'names' must be a non-empty array of DNS names")
        try:
            normalised = [normalise_name(name) for name in names]
        except InvalidName as e:
            raise AdminError(400, f"'names': {e}") from None
        return self._json(request, {"moved": await self._renewals.renew_now(normalised)})

    # orders

    @app.route("/orders", methods=["GET"])
    async def list_orders(self, request: IRequest) -> bytes:
        self._authorise(request)
        status = _arg(request, "status")
        token = _arg(request, "token")
        name = _arg(request, "name")
        limit_text = _arg(request, "limit") or "100"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise AdminError(400, "'limit' must be a number from 1 to 1000")
        if status is not None and status not in {s.value for s in OrderStatus}:
            raise AdminError(400, f"'status' must be one of {', '.join(s.value for s in OrderStatus)}")
        before = _arg(request, "before")
        limit = int(limit_text)
        selected: list[Order] = []
        # Pages of the time index, newest first, until enough orders match
        # or MAX_EXAMINED were looked at; the next cursor goes in a Link.
        examined = 0
        while len(selected) < limit and examined < MAX_EXAMINED:
            want = limit - len(selected)
            examined += want
            try:
                page, before = await self._repo.orders_page(want, before)
            except ValueError:
                raise AdminError(400, "'before' must be a cursor from an earlier page's Link header") from None
            selected.extend(
                o
                for o in page
                if (status is None or o.status.value == status)
                and (token is None or o.token_id == token)
                and (name is None or name.lower().rstrip(".") in o.names)
            )
            if before is None:
                break
        if before is not None:
            request.setHeader("Link", f'</orders?{_next_query(request, before)}>; rel="next"')
        return self._json(request, [_order_json(o) for o in selected[:limit]])

    @app.route("/orders/<order_id>", methods=["GET"])
    async def order(self, request: IRequest, order_id: str) -> bytes:
        self._authorise(request)
        order = await self._repo.order(order_id)
        if order is None:
            raise AdminError(404, f"no order {order_id!r}")
        body = _order_json(order)
        history = await self._journal.order_history(order_id)
        body["history"] = [e.to_json() for e in history]
        body["failovers"] = [e.to_json() for e in history if isinstance(e, CaFailover)]
        timings: dict[str, float] = {}
        if order.processing_since is not None:
            timings["ready_to_finalize"] = round(order.processing_since - order.created, 3)
            if order.completed is not None:
                timings["finalize_to_done"] = round(order.completed - order.processing_since, 3)
        body["timings"] = timings
        return self._json(request, body)

    # the dashboard

    @app.route("/", methods=["GET"])
    def dashboard(self, request: IRequest) -> bytes:
        """
        The dashboard page.  C{/?key=<admin key>} logs a browser in: a
        signed session that expires (not the key) goes into an HttpOnly,
        SameSite=Strict cookie, C{Secure} over TLS, and the URL loses it.
        """
        given = _arg(request, "key")
        if given is not None:
            if not hmac.compare_digest(given.encode(), self._key):
                raise AdminError(401, "wrong admin key")
            # IRequest.addCookie's declaration lags twisted.web.server.Request's.
            cast(Any, request).addCookie(
                COOKIE,
                self._sessions.issue(self._clock.seconds()),
                path="/",
                max_age=str(self._sessions.lifetime),
                httpOnly=True,
                secure=request.isSecure(),
                sameSite="strict",
            )
            request.redirect(b"/")
            return b""
        self._authorise(request)
        request.setHeader("Content-Type", "text/html; charset=utf-8")
        request.setHeader(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        )
        return dashboard_page()

    @app.route("/dashboard.json", methods=["GET"])
    async def dashboard_json(self, request: IRequest) -> bytes:
        self._authorise(request)
        return self._json(
            request,
            await dashboard_data(self._journal, self._ca_health(), self._clock.seconds(), self._metrics.budget_rows()),
        )
