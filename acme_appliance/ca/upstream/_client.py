"""
The RFC 8555 protocol an upstream CA is driven with (section 7.4 on): orders,
authorizations answered through the appliance's L{ChallengeResponder},
finalization, polling, downloads and revocation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import josepy
from attrs import frozen
from cryptography import x509
from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ...core import ProblemType
from ...storage import Store
from ...wire import messages
from .._interface import (
    CAError,
    ChallengeResponder,
    IssuedCertificate,
    IssueRequest,
    PendingChallenge,
    ValidationRequired,
)
from ._replies import Reply, problem_error, problem_to_error, retry_after
from ._transport import AcmeTransport, Registration

PEM_CHAIN = b"application/pem-certificate-chain"

_Polled = TypeVar("_Polled", messages.OrderAnswer, messages.AuthorizationAnswer)


@frozen
class _Pending:
    """
    A challenge to answer: where its authorization and itself live.
    """

    authorization_url: str
    challenge: PendingChallenge
    url: str


#: Waits between polls of an authorization or order when the CA sends no
#: C{Retry-After}: a CA that validates in milliseconds (as Pebble does) is
#: seen at once, and one that takes seconds is asked only a few times more.
POLL_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)

#: Waits before validating again (a new upstream order) when the CA got no
#: answer from the appliance's validation servers: its lookup timed out or
#: a server failed, as when a node of a cluster has just died or a packet
#: was lost.  A CA that found no value, or a wrong one, is not asked again.
UNANSWERED_RETRY_DELAYS = (1.0, 3.0)

# What CAs say when a lookup got no answer: "i/o timeout", "query timed
# out", "SERVFAIL looking up TXT".
_UNANSWERED = re.compile(r"time(?:d)?[ -]?out|servfail", re.IGNORECASE)


class _Unanswered(CAError):
    """
    The CA could not get the validation value's answer at all.
    """


class UpstreamAcmeCA:
    """
    An upstream ACME CA behind the L{CertificateAuthority} interface.

    @param http: a treq client for the CA (see L{http_client_for}).
    @param poll_delays: waits between polls of an authorization or order,
        the last repeated; a C{Retry-After} from the CA replaces them (up to
        C{max_retry_after}).
    @param validation_timeout: how long the CA may take to validate and to
        issue, each.
    @param unanswered_retry_delays: the waits before each new validation
        after one in which the CA got no answer (see
        L{UNANSWERED_RETRY_DELAYS}).
    """

    _log = Logger()

    def __init__(
        self,
        *,
        name: str,
        directory_url: str,
        http: HTTPClient,
        clock: IReactorTime,
        store: Store,
        responder: ChallengeResponder,
        contact: Sequence[str] = (),
        eab_kid: str | None = None,
        eab_hmac_key: str | None = None,
        request_timeout: float = 30.0,
        poll_delays: Sequence[float] = POLL_DELAYS,
        max_retry_after: float = 30.0,
        validation_timeout: float = 300.0,
        unanswered_retry_delays: Sequence[float] = UNANSWERED_RETRY_DELAYS,
    ) -> None:
        self._name = name
        self.transport = AcmeTransport(
            ca=name,
            directory_url=directory_url,
            http=http,
            clock=clock,
            store=store,
            registration=Registration.of(contact, eab_kid, eab_hmac_key),
            request_timeout=request_timeout,
        )
        self._clock = clock
        self._responder = responder
        self._poll_delays = tuple(poll_delays)
        self._max_retry_after = max_retry_after
        self._validation_timeout = validation_timeout
        self._unanswered_retry_delays = tuple(unanswered_retry_delays)

    @property
    def name(self) -> str:
        return self._name

    async def _get(self, url: str) -> Reply:
        return await self.transport.post(url, None)

    async def _poll(self, url: str, kind: type[_Polled], *, until: Iterable[str], what: str) -> _Polled:
        """
        POST-as-GET C{url} until its C{status} is one of C{until} (or
        C{invalid}), honouring C{Retry-After}, for at most the validation
        timeout.
        """
        wanted = frozenset(until) | {"invalid"}
        deadline = self._clock.seconds() + self._validation_timeout
        attempt = 0
        while True:
            reply = await self._get(url)
            resource = reply.decode(kind)
            if resource.status in wanted:
                return resource
            delay = retry_after(
                reply, self._poll_delays[min(attempt, len(self._poll_delays) - 1)], self._max_retry_after
            )
            attempt += 1
            if self._clock.seconds() + delay > deadline:
                raise CAError(
                    f"CA {self._name}: {what} still {resource.status!r} after {self._validation_timeout:g}s",
                    transient=True,
                )
            await deferLater(self._clock, delay)

    async def renewal_window(self, cert_id: str) -> tuple[float, float] | None:
        """
        The CA's suggested renewal window (RFC 9773) for the certificate
        C{cert_id} names, or C{None} when its directory has no
        C{renewalInfo}.

        @raise CAError: it could not be asked, or answered nonsense.
        """
        base = (await self.transport.directory()).renewal_info
        if base is None:
            return None
        reply = await self.transport.send("GET", base.rstrip("/") + "/" + cert_id)
        if reply.code != 200:
            raise problem_error(self._name, reply)
        window = reply.decode(messages.RenewalInfo).suggested_window
        try:
            start, end = (datetime.fromisoformat(t) for t in (window.start, window.end))
        except ValueError:
            start = end = datetime.fromtimestamp(0)  # naive: refused below
        if start.tzinfo is None or end.tzinfo is None:
            raise CAError(f"CA {self._name}: renewal info with a window that is not RFC 3339", transient=True)
        return start.timestamp(), end.timestamp()

    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        for delay in self._unanswered_retry_delays:
            try:
                return await self._issue_once(request)
            except _Unanswered as e:
                self._log.warn(
                    "order {order_id}: CA {ca} got no answer when it validated ({error}); "
                    "validating again in {delay:g} s",
                    order_id=request.order_id,
                    ca=self._name,
                    error=e.detail,
                    delay=delay,
                )
                await deferLater(self._clock, delay)
        return await self._issue_once(request)

    async def _issue_once(self, request: IssueRequest) -> IssuedCertificate:
        order_url, order = await self._new_order(request)
        if order.status == "pending":
            await self._authorize(request, order.authorizations)
            order = await self._poll(order_url, messages.OrderAnswer, until=("ready", "valid"), what="the order")
        if order.status == "ready":
            if order.finalize is None:
                raise CAError(f"CA {self._name}: the order has no finalize URL", transient=True)
            await self.transport.post(order.finalize, {"csr": josepy.encode_b64jose(request.csr_der)})
            order = await self._poll(order_url, messages.OrderAnswer, until=("valid",), what="the order")
        if order.status != "valid" or not order.certificate:
            raise self._order_error(order)
        return await self._download(order.certificate)

    async def supports_profile(self, name: str) -> bool:
        """
        Whether the CA's directory lists profile C{name} in C{meta.profiles}.
        """
        return name in (await self.transport.directory()).profiles

    async def _new_order(self, request: IssueRequest) -> tuple[str, messages.OrderAnswer]:
        directory = await self.transport.directory()
        payload: dict[str, Any] = {"identifiers": [{"type": "dns", "value": n} for n in request.names]}
        if request.profile is not None:
            if request.profile not in directory.profiles:
                raise CAError(
                    f"CA {self._name} does not offer profile {request.profile!r} "
                    f"(its directory lists: {', '.join(sorted(directory.profiles)) or 'none'})",
                    transient=False,
                    problem_type=ProblemType.INVALID_PROFILE,
                )
            payload["profile"] = request.profile
        reply = await self.transport.post(directory.new_order, payload)
        order_url = reply.header("location")
        order = reply.decode(messages.OrderAnswer)
        if not order_url:
            raise CAError(f"CA {self._name}: newOrder gave no order URL", transient=True)
        request.observer.ordered(self._name, request.names, order_url)
        self._log.info(
            "order {order_id}: upstream order {url} at CA {ca}", order_id=request.order_id, url=order_url, ca=self._name
        )
        return order_url, order

    def _order_error(self, order: messages.OrderAnswer) -> CAError:
        if order.error is not None:
            return problem_to_error(self._name, order.error)
        return CAError(f"CA {self._name}: the order became {order.status!r}", transient=True)

    # -- validation -------------------------------------------------------------

    async def _authorize(self, request: IssueRequest, urls: Sequence[str]) -> None:
        pending = [p for p in [await self._pending(request, url) for url in urls] if p is not None]
        if not pending:
            return
        challenge_type = pending[0].challenge.type
        published: list[PendingChallenge] = []
        started = self._clock.seconds()
        try:
            # By name: a responder that takes turns at names across processes
            # never waits in a cycle.
            for p in sorted(pending, key=lambda p: p.challenge.name):
                await self._responder.publish(p.challenge)
                published.append(p.challenge)
            request.observer.started(self._name, request.names, challenge_type)
            await self._answer(pending)
        except CAError as e:
            if published:
                request.observer.failed(self._name, request.names, challenge_type, e.detail)
            raise
        finally:
            for challenge in published:
                await self._responder.withdraw(challenge)
        request.observer.succeeded(self._name, request.names, challenge_type, self._clock.seconds() - started)

    async def _answer(self, pending: Sequence[_Pending]) -> None:
        """
        Tell the CA the challenges are ready, and wait for its verdicts.
        """
        for p in pending:
            await self.transport.post(p.url, {})
        for p in pending:
            name = p.challenge.name
            authz = await self._poll(
                p.authorization_url,
                messages.AuthorizationAnswer,
                until=("valid",),
                what=f"the authorization for {name}",
            )
            if authz.status != "valid":
                raise self._validation_error(name, authz)

    async def _pending(self, request: IssueRequest, url: str) -> _Pending | None:
        """
        The challenge to answer for the authorization at C{url}; C{None}
        when it is valid already.
        """
        authz = (await self._get(url)).decode(messages.AuthorizationAnswer)
        if authz.status == "valid":
            return None
        name = authz.name
        if authz.status != "pending":
            raise CAError(
                f"CA {self._name}: the authorization for {name} is {authz.status!r}",
                transient=False,
                problem_type=ProblemType.UNAUTHORIZED,
            )
        if not request.allow_validation:
            raise ValidationRequired(f"CA {self._name} wants {name} validated again")
        if request.challenge_type is None:
            raise CAError(
                f"CA {self._name} wants {name} validated, but the policy validates nothing",
                transient=False,
                problem_type=ProblemType.UNAUTHORIZED,
            )
        wanted = request.challenge_type.value
        offered = [c for c in authz.challenges if c.type == wanted]
        if not offered:
            kinds = ", ".join(c.type for c in authz.challenges)
            raise CAError(
                f"CA {self._name} offers no {wanted} challenge for {name} (only {kinds or 'none'})",
                transient=False,
                problem_type=ProblemType.UNAUTHORIZED,
            )
        token = offered[0].token
        challenge = PendingChallenge(
            type=request.challenge_type,
            name=name,
            token=token,
            key_authorization=await self.transport.key_authorization(token),
        )
        return _Pending(authorization_url=url, challenge=challenge, url=offered[0].url)

    def _validation_error(self, name: str, authz: messages.AuthorizationAnswer) -> CAError:
        for challenge in authz.challenges:
            if challenge.error is not None:
                error = problem_to_error(self._name, challenge.error)
                # The CA looked and did not find the value: another CA would
                # not either, so this is the customer's to fix; unless it got
                # no answer at all, which validating again may mend.
                kind = _Unanswered if _UNANSWERED.search(error.detail) else CAError
                return kind(f"{name}: {error.detail}", transient=False, problem_type=error.problem_type)
        return CAError(
            f"CA {self._name} could not validate {name}", transient=False, problem_type=ProblemType.UNAUTHORIZED
        )

    # -- certificates -------------------------------------------------------------

    async def _download(self, url: str) -> IssuedCertificate:
        reply = await self.transport.post(url, None, accept=PEM_CHAIN)
        chain = self._check_chain(reply)
        alternates = []
        for alternate in reply.links("alternate"):
            try:
                alternates.append(self._check_chain(await self.transport.post(alternate, None, accept=PEM_CHAIN)))
            except CAError as e:
                self._log.warn(
                    "CA {ca}: alternate chain {url} unusable: {error}", ca=self._name, url=alternate, error=e.detail
                )
        return IssuedCertificate(chain_pem=chain, ca_name=self._name, alternates=tuple(alternates))

    def _check_chain(self, reply: Reply) -> bytes:
        try:
            certificates = x509.load_pem_x509_certificates(reply.body)
        except ValueError:
            certificates = []
        if not certificates:
            raise CAError(f"CA {self._name}: {reply.url} gave no PEM certificate chain", transient=True)
        return reply.body

    async def revoke(self, certificate_der: bytes, reason: int | None) -> None:
        directory = await self.transport.directory()
        if directory.revoke_cert is None:
            raise CAError(
                f"CA {self._name} does not offer revocation", transient=False, problem_type=ProblemType.SERVER_INTERNAL
            )
        payload: dict[str, Any] = {"certificate": josepy.encode_b64jose(certificate_der)}
        if reason is not None:
            payload["reason"] = reason
        await self.transport.post(directory.revoke_cert, payload)
        self._log.info("CA {ca}: certificate revoked", ca=self._name)
