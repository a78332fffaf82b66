"""
Upstream ACME CAs (C{kind = "acme"}): an RFC 8555 client on treq and josepy.

One account per configured CA, its key kept in the store; orders are
validated through the appliance's own L{ChallengeResponder} (the dcv zone or
the file proxy), so the edge clients never see a challenge.  The client is
L{UpstreamAcmeCA} (the protocol) over an L{AcmeTransport} (requests, nonces,
JWS, the account) over a treq client from L{http_client_for}.
"""

from ._client import POLL_DELAYS, UNANSWERED_RETRY_DELAYS, UpstreamAcmeCA
from ._http import CountingAgent, IUpstreamReactor, UserAgentAgent, http_client_for, upstream_agent
from ._replies import TRANSIENT_PROBLEMS
from ._transport import AccountRecord, AcmeTransport, Registration

__all__ = [
    "POLL_DELAYS",
    "TRANSIENT_PROBLEMS",
    "UNANSWERED_RETRY_DELAYS",
    "AccountRecord",
    "AcmeTransport",
    "CountingAgent",
    "IUpstreamReactor",
    "Registration",
    "UpstreamAcmeCA",
    "UserAgentAgent",
    "http_client_for",
    "upstream_agent",
]
