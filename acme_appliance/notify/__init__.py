"""
Notification: events for every state change, sent to syslog and webhooks.
"""

from ._events import (
    EVENT_TYPES,
    CaBudgetExhausted,
    CaFailover,
    CertificateIssued,
    Event,
    EventBus,
    EventName,
    PolicyEvent,
    RenewEarly,
    Subscriber,
    UpstreamOrdered,
    ValidationEvent,
)
from ._journal import JOURNAL_WINDOW, EventJournal
from ._queue import BoundedQueue
from ._syslog import SyslogNotifier, SyslogTarget, SyslogTransport, format_rfc5424, parse_syslog_target
from ._webhook import Webhook, WebhookNotifier, sign

__all__ = [
    "EVENT_TYPES",
    "JOURNAL_WINDOW",
    "BoundedQueue",
    "CaBudgetExhausted",
    "CaFailover",
    "CertificateIssued",
    "Event",
    "EventBus",
    "EventJournal",
    "EventName",
    "PolicyEvent",
    "RenewEarly",
    "Subscriber",
    "SyslogNotifier",
    "SyslogTarget",
    "SyslogTransport",
    "UpstreamOrdered",
    "ValidationEvent",
    "Webhook",
    "WebhookNotifier",
    "format_rfc5424",
    "parse_syslog_target",
    "sign",
]
