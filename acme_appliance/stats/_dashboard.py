"""
What the dashboard shows, computed from the event journal and CA health.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from typing import Any

from ..core import rfc3339
from ..notify import CertificateIssued, Event, EventJournal, EventName, ValidationEvent

HOURS = 24
RECENT_FAILURES = 20


def dashboard_page() -> bytes:
    """
    The dashboard's HTML (assets ship inside the package).
    """
    return importlib.resources.files(__package__).joinpath("dashboard.html").read_bytes()


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return round(ordered[index], 3)


def ca_state(state: Mapping[str, object]) -> dict[str, object]:
    """
    One CA's health (from C{CAHealth.snapshot}) as JSON: C{up}, consecutive
    C{failures} and C{down_since} as an RFC 3339 time or C{None}.
    """
    down_since = state.get("down_since")
    return {
        "up": bool(state.get("up", True)),
        "failures": state.get("failures", 0),
        "down_since": rfc3339(float(down_since)) if isinstance(down_since, (int, float)) else None,
    }


def _failure(event: Event) -> dict[str, Any]:
    return {
        "time": rfc3339(event.time),
        "order_id": event.order_id,
        "names": list(event.names),
        "ca": event.ca,
        "error": event.error,
    }


async def dashboard_data(
    journal: EventJournal,
    health: Mapping[str, Mapping[str, object]],
    now: float,
    budgets: Sequence[Mapping[str, object]] = (),
) -> dict[str, Any]:
    """
    The dashboard's JSON: the last 24 hours of issuance by hour and by CA,
    validations done and avoided, latencies, CA health, CA rate budgets
    (C{Metrics.budget_rows}) and recent failures.
    """
    first_hour = (int(now) // 3600 - (HOURS - 1)) * 3600
    events = await journal.between(first_hour, now)
    counts: list[dict[str, int]] = [{"new": 0, "reissue": 0, "failed": 0} for _ in range(HOURS)]
    by_ca: dict[str, dict[str, int]] = {}
    performed = avoided = 0
    issuance: list[float] = []
    validation: list[float] = []
    failures: list[dict[str, Any]] = []
    for event in events:
        slot = counts[min(HOURS - 1, max(0, int(event.time - first_hour) // 3600))]
        if isinstance(event, CertificateIssued):
            mode = "reissue" if event.mode == "reissue" else "new"
            slot[mode] += 1
            avoided += mode == "reissue"
            by_ca.setdefault(event.ca or "unknown", {"issued": 0, "failed": 0})["issued"] += 1
            if event.seconds is not None:
                issuance.append(event.seconds)
        elif event.name is EventName.ORDER_FAILED:
            slot["failed"] += 1
            by_ca.setdefault(event.ca or "unknown", {"issued": 0, "failed": 0})["failed"] += 1
            failures.append(_failure(event))
        elif isinstance(event, ValidationEvent) and event.name is not EventName.VALIDATION_STARTED:
            performed += 1
            if event.seconds is not None and event.name is EventName.VALIDATION_SUCCEEDED:
                validation.append(event.seconds)
    cas = [{"ca": name, **ca_state(health[name])} for name in sorted(health)]
    return {
        "generated": rfc3339(now),
        "issued_per_hour": [
            {"hour": rfc3339(first_hour + 3600 * i, fraction=False), **slot} for i, slot in enumerate(counts)
        ],
        "by_ca": [{"ca": ca, **counts} for ca, counts in sorted(by_ca.items())],
        "validations": {"performed": performed, "avoided": avoided},
        "latency": {
            "issuance_p50": _percentile(issuance, 0.5),
            "issuance_p95": _percentile(issuance, 0.95),
            "validation_p50": _percentile(validation, 0.5),
            "validation_p95": _percentile(validation, 0.95),
        },
        "cas": cas,
        "budgets": [dict(row) for row in budgets],
        "recent_failures": list(reversed(failures))[:RECENT_FAILURES],
    }
