"""
Validation: the store of validation values and the two servers that show them
to upstream CAs, the HTTP file proxy and the authoritative dcv DNS server.
"""

from ._dns import DcvAuthority, DcvDNSServerFactory, DnsAnswer, IDNSReactor, Rcode, SOAParameters, make_dns_services
from ._dnswire import FastAnswers
from ._fileproxy import FileProxy
from ._names import (
    ACME_CHALLENGE_PREFIX,
    PKI_VALIDATION_PREFIX,
    InvalidValue,
    check_http_path,
    host_from_header,
    normalise_domain,
    normalise_host,
)
from ._responder import Preflight, ValidationResponder, challenge_path
from ._turns import TURN_LEASE, NameTurns
from ._values import TxtView, ValidationValues

__all__ = [
    "ACME_CHALLENGE_PREFIX",
    "PKI_VALIDATION_PREFIX",
    "TURN_LEASE",
    "DcvAuthority",
    "DcvDNSServerFactory",
    "DnsAnswer",
    "FastAnswers",
    "FileProxy",
    "IDNSReactor",
    "InvalidValue",
    "NameTurns",
    "Preflight",
    "Rcode",
    "SOAParameters",
    "TxtView",
    "ValidationResponder",
    "ValidationValues",
    "challenge_path",
    "check_http_path",
    "host_from_header",
    "make_dns_services",
    "normalise_domain",
    "normalise_host",
]
