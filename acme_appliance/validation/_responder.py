"""
Answering upstream challenges: publish the values where the CA looks (the
dcv DNS zone, the HTTP file proxy), after checking the customer's set-up
the way the CA will see it.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from treq.client import HTTPClient
from twisted.internet.defer import TimeoutError as DNSTimeoutError
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IResolver
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.error import DomainError, ResolverError
from twisted.web.http_headers import Headers

from ..ca import CAError, ChallengeType, PendingChallenge
from ..core import ProblemType
from ._names import ACME_CHALLENGE_PREFIX
from ._values import ValidationValues

PROBE_TTL = 60.0


def challenge_path(token: str) -> str:
    return ACME_CHALLENGE_PREFIX + token


class Preflight:
    """
    Checks, before the CA is asked to validate, that it will find the
    appliance: the C{_acme-challenge} CNAME into the dcv zone (dns-01), or
    the web server's forwarding to the file proxy (http-01).  A missing
    piece fails the order at once with the record or rule to add.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        resolver: IResolver,
        http: HTTPClient,
        values: ValidationValues,
        dns_zone: str | None,
        http_port: int = 80,
        timeout: float = 10.0,
    ) -> None:
        self._resolver = resolver
        self._http = http
        self._values = values
        self._zone = dns_zone
        self._http_port = http_port
        self._timeout = timeout

    async def check(self, challenge: PendingChallenge) -> None:
        if challenge.type is ChallengeType.DNS_01:
            await self._check_cname(challenge.name)
        else:
            await self._check_forwarding(challenge.name)

    async def _check_cname(self, name: str) -> None:
        owner = f"_acme-challenge.{name}"
        target = f"{name}.{self._zone}"
        fix = f"add this record to the zone of {name}: {owner}. CNAME {target}."
        try:
            result: Any = await self._resolver.lookupCanonicalName(owner, timeout=(2, 4))
            answers: list[dns.RRHeader] = result[0]
        except DomainError:
            raise CAError(f"{owner} does not exist: {fix}", transient=False, problem_type=ProblemType.DNS) from None
        except (DNSTimeoutError, ResolverError, TimeoutError) as e:
            raise CAError(
                f"cannot look up {owner} ({e.__class__.__name__}); {fix}", transient=True, problem_type=ProblemType.DNS
            ) from None
        cnames = [
            str(cast(dns.Record_CNAME, r.payload).name).lower().rstrip(".") for r in answers if r.type == dns.CNAME
        ]
        if not cnames:
            raise CAError(f"{owner} has no CNAME record: {fix}", transient=False, problem_type=ProblemType.DNS)
        if target not in cnames:
            raise CAError(
                f"{owner} is a CNAME to {cnames[0]}, not {target}: {fix}", transient=False, problem_type=ProblemType.DNS
            )

    async def _check_forwarding(self, name: str) -> None:
        token = secrets.token_urlsafe(24)
        body = secrets.token_urlsafe(24).encode()
        path = challenge_path(token)
        rule = (
            f"forward http://{name}/.well-known/acme-challenge/ to the appliance's file proxy, keeping the Host "
            "header (see etc/nginx-fileproxy.conf)"
        )
        await self._values.add_http(name, path, body, ttl=PROBE_TTL)
        try:
            try:
                address = await self._resolver.getHostByName(name, timeout=(2, 4))
            except (DomainError, DNSLookupError, ResolverError, DNSTimeoutError, TimeoutError):
                raise CAError(
                    f"{name} does not resolve to an address, so the CA cannot fetch from it",
                    transient=False,
                    problem_type=ProblemType.DNS,
                ) from None
            url = f"http://{address}:{self._http_port}{path}"
            try:
                response = await self._http.get(
                    url, headers=Headers({b"Host": [name.encode("ascii")]}), timeout=self._timeout
                )
                got = await response.content()
            except (ConnectError, TimeoutError) as e:
                raise CAError(
                    f"cannot connect to {name} ({address}) on port {self._http_port}: {e}; {rule}",
                    transient=False,
                    problem_type=ProblemType.CONNECTION,
                ) from None
            if response.code != 200 or got != body:
                raise CAError(
                    f"http://{name}{path} answered {response.code} without the appliance's probe: {rule}",
                    transient=False,
                    problem_type=ProblemType.UNAUTHORIZED,
                )
            self._log.debug("preflight: {name} forwards to the file proxy", name=name)
        finally:
            await self._values.remove_http(name, path)


class ValidationResponder:
    """
    The L{ChallengeResponder} of the appliance: dns-01 values become TXT
    records at C{<name>.<dns_zone>}, http-01 key authorizations become files
    on the file proxy.  Each lives at most C{ttl} seconds, so a process that
    dies before withdrawing leaves nothing behind for long.
    """

    _log = Logger()

    def __init__(self, values: ValidationValues, *, ttl: float, preflight: Preflight | None = None) -> None:
        self._values = values
        self._ttl = ttl
        self._preflight = preflight

    async def publish(self, challenge: PendingChallenge) -> None:
        if self._preflight is not None:
            await self._preflight.check(challenge)
        if challenge.type is ChallengeType.DNS_01:
            await self._values.add_txt(challenge.name, challenge.dns_txt_value, ttl=self._ttl)
        else:
            await self._values.add_http(
                challenge.name, challenge_path(challenge.token), challenge.key_authorization.encode(), ttl=self._ttl
            )

    async def withdraw(self, challenge: PendingChallenge) -> None:
        if challenge.type is ChallengeType.DNS_01:
            await self._values.remove_txt(challenge.name, challenge.dns_txt_value)
        else:
            await self._values.remove_http(challenge.name, challenge_path(challenge.token))
