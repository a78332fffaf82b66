"""
The neutral core every package may import: ACME problems, DNS names,
times and Klein error handling.  It imports nothing else of the appliance.
"""

from ._names import InvalidName, name_allowed, name_matches, normalise_name
from ._problems import ACME_ERROR_NS, AcmeProblem, ProblemType, malformed
from ._times import rfc3339
from ._web import RouteError, route_errors

__all__ = [
    "ACME_ERROR_NS",
    "AcmeProblem",
    "InvalidName",
    "ProblemType",
    "RouteError",
    "malformed",
    "name_allowed",
    "name_matches",
    "normalise_name",
    "rfc3339",
    "route_errors",
]
