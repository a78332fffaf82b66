"""
Notification: events for every state change, sent to syslog and webhooks.
"""

from ._events import Event, EventBus, EventName, Subscriber
from ._journal import EventJournal
from ._queue import BoundedQueue
from ._webhook import Webhook, WebhookNotifier, sign
from ._syslog import SyslogNotifier, SyslogTarget, SyslogTransport, format_rfc5424, parse_syslog_target

__all__ = [
    "BoundedQueue",
    "Event",
    "EventBus",
    "EventJournal",
    "EventName",
    "Subscriber",
    "SyslogNotifier",
    "Webhook",
    "WebhookNotifier",
    "SyslogTarget",
    "SyslogTransport",
    "format_rfc5424",
    "parse_syslog_target",
    "sign",
]
