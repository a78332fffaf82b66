"""
The HTTP stack under an upstream CA client: a verified TLS agent, wrapped
to name the appliance (C{User-Agent}) and to count requests by result.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from treq.client import HTTPClient
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IProtocol, IReactorPluggableNameResolver, IReactorTCP, IReactorTime, ITransport
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.python.failure import Failure

# Not exported by twisted.web.client, which raises it.
from twisted.web._newclient import RequestNotSent
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

USER_AGENT = b"acme-appliance/0.1 (treq)"

_BODY_DONE = Failure(ResponseDone())

NETWORK_ERRORS = (
    net_error.ConnectError,
    net_error.DNSLookupError,
    net_error.TimeoutError,
    net_error.ConnectionLost,
    net_error.ConnectionClosed,
    # The connection went away while the request was being sent (a CA
    # stopping), or was known gone before it was.
    RequestTransmissionFailed,
    RequestNotSent,
    ResponseFailed,
    CancelledError,
)
"""
The failures that mean the CA could not be talked to (rather than a bug).
"""

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.DOTALL)


class IUpstreamReactor(IReactorTCP, IReactorTime, IReactorPluggableNameResolver):
    """
    What an L{Agent} connecting to a CA needs of the reactor.
    """


@implementer(IAgent)
class UserAgentAgent:
    """
    Sends C{User-Agent: user_agent} with every request of C{agent}.
    """

    def __init__(self, agent: IAgent, user_agent: bytes = USER_AGENT) -> None:
        self._agent = agent
        self._user_agent = user_agent

    def request(
        self, method: bytes, uri: bytes, headers: Headers | None = None, bodyProducer: IBodyProducer | None = None
    ) -> Deferred[IResponse]:
        headers = headers.copy() if headers is not None else Headers()
        headers.setRawHeaders(b"User-Agent", [self._user_agent])
        return self._agent.request(method, uri, headers, bodyProducer)


@implementer(IResponse)
class _CountedResponse:
    """
    A response that reports its request once its body is in (or lost);
    at once when it has none (treq never asks for an empty body).
    """

    def __init__(self, original: IResponse, report: Callable[[str], object]) -> None:
        self._original = original
        self._report: Callable[[str], object] | None = report
        self.version = original.version
        self.code = original.code
        self.phrase = original.phrase
        self.headers = original.headers
        self.length = original.length
        self.request = original.request
        self.previousResponse = original.previousResponse
        if original.length == 0:
            report(f"{self.code // 100}xx")
            self._report = None

    def deliverBody(self, protocol: IProtocol) -> None:
        if self._report is not None:
            protocol = _BodyWatcher(protocol, self.code, self._report)
            self._report = None
        self._original.deliverBody(protocol)

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response
        self._original.setPreviousResponse(response)


class _BodyWatcher(Protocol):
    def __init__(self, inner: IProtocol, code: int, report: Callable[[str], object]) -> None:
        self._inner = inner
        self._code = code
        self._report = report

    def makeConnection(self, transport: ITransport) -> None:
        self._inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self._inner.dataReceived(data)

    def connectionLost(self, reason: Failure = _BODY_DONE) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._report(f"{self._code // 100}xx")
        elif reason.check(*NETWORK_ERRORS):
            self._report("network-error")
        self._inner.connectionLost(reason)


@implementer(IAgent)
class CountingAgent:
    """
    Tells C{on_request(ca, result)} about each request of C{agent} once it
    is over: C{"2xx"}...C{"5xx"} when the whole answer came, or
    C{"network-error"} when the CA could not be talked to.
    """

    def __init__(self, agent: IAgent, ca: str, on_request: Callable[[str, str], object]) -> None:
        self._agent = agent
        self._ca = ca
        self._on_request = on_request

    def _report(self, result: str) -> None:
        self._on_request(self._ca, result)

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(*NETWORK_ERRORS):
            self._report("network-error")
        return failure

    def request(
        self, method: bytes, uri: bytes, headers: Headers | None = None, bodyProducer: IBodyProducer | None = None
    ) -> Deferred[IResponse]:
        d = self._agent.request(method, uri, headers, bodyProducer)
        return d.addCallbacks(lambda response: _CountedResponse(response, self._report), self._failed)


def upstream_agent(agent: IAgent, *, ca: str, on_request: Callable[[str, str], object]) -> IAgent:
    """
    C{agent} as an upstream CA client uses it: named, and counted.
    """
    return UserAgentAgent(CountingAgent(agent, ca, on_request))


def http_client_for(
    reactor: IUpstreamReactor,
    ca_bundle: str | None,
    *,
    ca: str = "",
    on_request: Callable[[str, str], object] = lambda ca, result: None,
) -> HTTPClient:
    """
    A treq client for the CA C{ca}: TLS verified against the system roots,
    or only against the certificates in C{ca_bundle}; service-identity
    checks the host name either way.

    @raise OSError: C{ca_bundle} cannot be read.
    @raise ValueError: C{ca_bundle} holds no certificate.
    """
    policy = BrowserLikePolicyForHTTPS()
    if ca_bundle is not None:
        with open(ca_bundle, "rb") as f:
            pems = _PEM_CERT.findall(f.read())
        if not pems:
            raise ValueError(f"{ca_bundle}: no PEM certificate in it")
        policy = BrowserLikePolicyForHTTPS(trustRootFromCertificates([Certificate.loadPEM(p) for p in pems]))
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    agent = Agent(reactor, contextFactory=policy, pool=pool, connectTimeout=10)
    return HTTPClient(upstream_agent(agent, ca=ca, on_request=on_request))
