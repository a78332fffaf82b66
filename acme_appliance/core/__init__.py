"""
The neutral core every package may import: ACME problems, DNS names, times,
retry delays, private file writes, store calls started together, locks per
key and Klein error handling.  It imports
nothing else of the appliance.
"""

from ._backoff import Backoff
from ._files import fsync_directory, write_private_file, write_private_files
from ._keyed_locks import KeyedLocks
from ._names import (
    InvalidName,
    NameProblem,
    comparable_name,
    is_label,
    name_allowed,
    name_matches,
    normalise_name,
    prepare_name,
)
from ._problems import ACME_ERROR_NS, AcmeProblem, ProblemType, malformed
from ._retry import UNAVAILABLE_RETRY, report_failure, while_unavailable
from ._times import rfc3339
from ._together import both, together
from ._web import UNAVAILABLE_RETRY_AFTER, RouteError, Unavailable, route_errors

__all__ = [
    "ACME_ERROR_NS",
    "UNAVAILABLE_RETRY",
    "UNAVAILABLE_RETRY_AFTER",
    "AcmeProblem",
    "Backoff",
    "InvalidName",
    "KeyedLocks",
    "NameProblem",
    "ProblemType",
    "RouteError",
    "Unavailable",
    "both",
    "comparable_name",
    "fsync_directory",
    "is_label",
    "malformed",
    "name_allowed",
    "name_matches",
    "normalise_name",
    "prepare_name",
    "report_failure",
    "rfc3339",
    "route_errors",
    "together",
    "while_unavailable",
    "write_private_file",
    "write_private_files",
]
