"""
Renewal windows paced by the CA budgets: the pace (C{spacing}) that the
windows of one set of names keep (L{acme_appliance.orders.budget_window}
does the window math).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..orders import CertificateRecord
from ..policy import Policy
from ._budget import BudgetKind, CALimit

#: The limits that count the certificates of one set of names.
PACING_KINDS = (BudgetKind.CERTIFICATES_PER_NAME_SET, BudgetKind.CERTIFICATES_PER_REGISTERED_DOMAIN)


def certificate_rate(limits: Sequence[CALimit]) -> float | None:
    """
    How many certificates per second for one set of names C{limits} allow
    at most (the tightest of C{certificates_per_name_set} and
    C{certificates_per_registered_domain}); C{None} when neither is set.
    """
    rates = [limit.max / limit.window for limit in limits if limit.what in PACING_KINDS]
    return min(rates) if rates else None


class BudgetPacer:
    """
    The L{acme_appliance.orders.WindowPacer} of the CA budgets (C{[[ca]]
    limits}): renewals of a certificate's set of names may arrive at the
    pace of its CA's certificate limits plus those of the other CAs of the
    policies that CA serves in (the backup takes the spill-over, the primary
    takes renewals of what the backup issued).

    The budget of a registered domain is shared by every set of names under
    it; it is counted here as if this set had it alone (an upper bound on
    its pace).  An C{orders} limit (the whole account's) sets no pace.  A
    CA of the group without certificate limits has room for any pace: no
    pacing then.
    """

    def __init__(self, limits: Mapping[str, Sequence[CALimit]], policies: Iterable[Policy]) -> None:
        self._rates = {ca: certificate_rate(found) for ca, found in limits.items()}
        self._partners: dict[str, set[str]] = {}
        for policy in policies:
            group = set(policy.cas)
            for ca in group:
                self._partners.setdefault(ca, set()).update(group)

    def spacing(self, record: CertificateRecord) -> float | None:
        """
        The fewest seconds between two renewals of C{record}'s names that
        the budgets of its CA (and that CA's partners) allow; C{None} for no
        pace.
        """
        total = 0.0
        for ca in self._partners.get(record.ca_name, set()) | {record.ca_name}:
            rate = self._rates.get(ca)
            if rate is None:
                return None
            total += rate
        return 1 / total
