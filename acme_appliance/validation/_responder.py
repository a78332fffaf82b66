"""
Answering upstream challenges: publish the values where the CA looks (the
dcv DNS zone, the HTTP file proxy), after checking the customer's set-up
the way the CA will see it.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DNSTimeoutError
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IReactorTime, IResolver
from twisted.logger import Logger
from twisted.names import dns
from twisted.names.error import DNSNameError, DomainError, ResolverError
from twisted.python.failure import Failure
from twisted.web._newclient import RequestNotSent, RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from ..ca import CAError, ChallengeType, PendingChallenge
from ..core import ProblemType
from ._fetch import MAX_BODY, BodyCutShort, BodyTooLarge, non_global, read_body
from ._names import ACME_CHALLENGE_PREFIX, normalise_domain
from ._turns import NameTurns
from ._values import ValidationValues

PROBE_TTL = 60.0


def challenge_path(token: str) -> str:
    return ACME_CHALLENGE_PREFIX + token


def _printable(raw: bytes) -> str:
    """
    C{raw} (a name off the wire) with every byte that is not printable
    ASCII shown as C{\\xNN}: safe in a problem detail and a log line.
    """
    return "".join(chr(b) if 0x21 <= b < 0x7F else f"\\x{b:02x}" for b in raw)


def _cname_target(record: dns.RRHeader) -> str:
    """
    The target of a CNAME record as it came off the wire, printable.
    """
    name = cast(dns.Record_CNAME, record.payload).name
    return _printable(name.name if name is not None else b"").lower().rstrip(".")


class Preflight:
    """
    Checks, before the CA is asked to validate, that it will find the
    appliance: the C{_acme-challenge} CNAME into the dcv zone (dns-01), or
    the web server's forwarding to the file proxy (http-01).  A missing
    piece fails the order at once with the record or rule to add.

    The fetch is bounded: it connects to the address the name resolved to
    (once, and only if it is a global one unless C{allow_private}), follows
    no redirect, asks for and decodes no content encoding, reads at most
    C{max_body} bytes and gives up after C{timeout} seconds in all.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        resolver: IResolver,
        agent: IAgent,
        clock: IReactorTime,
        values: ValidationValues,
        dns_zone: str | None,
        http_port: int = 80,
        timeout: float = 10.0,
        allow_private: bool = False,
        max_body: int = MAX_BODY,
    ) -> None:
        self._resolver = resolver
        self._agent = agent
        self._clock = clock
        self._values = values
        self._zone = dns_zone
        self._http_port = http_port
        self._timeout = timeout
        self._allow_private = allow_private
        self._max_body = max_body

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
        except DNSNameError:
            raise CAError(f"{owner} does not exist: {fix}", transient=False, problem_type=ProblemType.DNS) from None
        except (DomainError, DNSTimeoutError, ResolverError, TimeoutError) as e:
            raise CAError(
                f"cannot look up {owner} ({e.__class__.__name__}); {fix}", transient=True, problem_type=ProblemType.DNS
            ) from None
        cnames = [_cname_target(r) for r in answers if r.type == dns.CNAME]
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
            address = await self._address(name)
            timeout = self._timeout

            def timed_out(result: object, seconds: float) -> Failure:
                return Failure(
                    CAError(
                        f"http://{name}{path} ({address}) did not answer in full within {timeout:g} seconds; {rule}",
                        transient=False,
                        problem_type=ProblemType.CONNECTION,
                    )
                )

            fetch = Deferred.fromCoroutine(self._fetch(name, address, path, rule))
            code, got = await fetch.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
            if code != 200 or got != body:
                raise CAError(
                    f"http://{name}{path} answered {code} without the appliance's probe: {rule}",
                    transient=False,
                    problem_type=ProblemType.UNAUTHORIZED,
                )
            self._log.debug("preflight: {name} forwards to the file proxy", name=name)
        finally:
            await self._values.remove_http(name, path)

    async def _address(self, name: str) -> str:
        """
        The one address C{name} resolves to, which the fetch connects to
        (so no second lookup can answer differently).
        """
        try:
            address = str(await self._resolver.getHostByName(name, timeout=(2, 4)))
        except (DomainError, DNSLookupError, ResolverError, DNSTimeoutError, TimeoutError):
            raise CAError(
                f"{name} does not resolve to an address, so the CA cannot fetch from it",
                transient=False,
                problem_type=ProblemType.DNS,
            ) from None
        kind = None if self._allow_private else non_global(address)
        if kind is not None:
            raise CAError(
                f"{name} resolves to {_printable(address.encode())}, {kind}; preflight does not fetch non-global "
                "addresses (set [validation] preflight_allow_private = true to allow)",
                transient=False,
                problem_type=ProblemType.DNS,
            )
        return address

    async def _fetch(self, name: str, address: str, path: str, rule: str) -> tuple[int, bytes]:
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{self._http_port}{path}"
        try:
            response = await self._agent.request(
                b"GET", url.encode("ascii"), Headers({b"Host": [name.encode("ascii")]})
            )
        except (ConnectError, RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived, ResponseFailed) as e:
            raise CAError(
                f"cannot connect to {name} ({address}) on port {self._http_port}: {e}; {rule}",
                transient=False,
                problem_type=ProblemType.CONNECTION,
            ) from None
        if response.code != 200:
            ignored = read_body(response, 0)
            ignored.addErrback(lambda _: b"")
            ignored.cancel()  # the body does not matter: close the connection
            return response.code, b""
        try:
            return response.code, await read_body(response, self._max_body)
        except BodyTooLarge:
            raise CAError(
                f"http://{name}{path} answered with more than {self._max_body} bytes, not the appliance's probe: "
                f"{rule}",
                transient=False,
                problem_type=ProblemType.UNAUTHORIZED,
            ) from None
        except BodyCutShort as e:
            raise CAError(
                f"the answer of http://{name}{path} ({address}) was cut short {e}; {rule}",
                transient=False,
                problem_type=ProblemType.CONNECTION,
            ) from None


class ValidationResponder:
    """
    The L{ChallengeResponder} of the appliance: dns-01 values become TXT
    records at C{<name>.<dns_zone>}, http-01 key authorizations become files
    on the file proxy.  Each lives at most C{ttl} seconds, so a process that
    dies before withdrawing leaves nothing behind for long.  With C{turns},
    a dns-01 value is published only in this process's turn at its name
    (L{NameTurns}), held until it is withdrawn.
    """

    _log = Logger()

    def __init__(
        self,
        values: ValidationValues,
        *,
        ttl: float,
        preflight: Preflight | None = None,
        turns: NameTurns | None = None,
    ) -> None:
        self._values = values
        self._ttl = ttl
        self._preflight = preflight
        self._turns = turns
        # The dns-01 values published in a turn, each giving it back once.
        self._in_turn: set[tuple[str, str]] = set()

    async def publish(self, challenge: PendingChallenge) -> None:
        if self._preflight is not None:
            await self._preflight.check(challenge)
        if challenge.type is ChallengeType.DNS_01:
            name, value = normalise_domain(challenge.name), challenge.dns_txt_value
            if self._turns is None or (name, value) in self._in_turn:
                await self._values.add_txt(name, value, ttl=self._ttl)
                return
            await self._turns.take(name)
            try:
                await self._values.add_txt(name, value, ttl=self._ttl)
            except BaseException:
                await self._turns.give_back(name)
                raise
            self._in_turn.add((name, value))
        else:
            await self._values.add_http(
                challenge.name, challenge_path(challenge.token), challenge.key_authorization.encode(), ttl=self._ttl
            )

    async def withdraw(self, challenge: PendingChallenge) -> None:
        if challenge.type is ChallengeType.DNS_01:
            name, value = normalise_domain(challenge.name), challenge.dns_txt_value
            try:
                await self._values.remove_txt(name, value)
            finally:
                if self._turns is not None and (name, value) in self._in_turn:
                    self._in_turn.discard((name, value))
                    await self._turns.give_back(name)
        else:
            await self._values.remove_http(challenge.name, challenge_path(challenge.token))
