"""
Notification: events for every state change, sent to syslog and webhooks.
"""

from ._events import EVENT_TYPES, CaFailover, CertificateIssued, Event, EventBus, EventName, PolicyEvent
from ._events import Subscriber, UpstreamOrdered, ValidationEvent
from ._journal import EventJournal
from ._queue import BoundedQueue
from ._webhook import Webhook, WebhookNotifier, sign
from ._syslog import SyslogNotifier, SyslogTarget, SyslogTransport, format_rfc5424, parse_syslog_target

__all__ = [
    "BoundedQueue",
    "CaFailover",
    "CertificateIssued",
    "EVENT_TYPES",
    "Event",
    "EventBus",
    "EventJournal",
    "EventName",
    "PolicyEvent",
    "Subscriber",
    "SyslogNotifier",
    "Webhook",
    "WebhookNotifier",
    "SyslogTarget",
    "SyslogTransport",
    "UpstreamOrdered",
    "ValidationEvent",
    "format_rfc5424",
    "parse_syslog_target",
    "sign",
]
