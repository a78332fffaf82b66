"""
The neutral core every package may import: ACME problems, DNS names and
times.  It imports nothing else of the appliance.
"""

from ._names import InvalidName, name_allowed, name_matches, normalise_name
from ._problems import ACME_ERROR_NS, AcmeProblem, ProblemType, malformed
from ._times import rfc3339

__all__ = [
    "ACME_ERROR_NS",
    "AcmeProblem",
    "InvalidName",
    "ProblemType",
    "malformed",
    "name_allowed",
    "name_matches",
    "normalise_name",
    "rfc3339",
]
