"""Notifications: email (SMTP), Slack, webhooks and the in-app inbox, delivered from an outbox.

    from workbench import notify

    with db.session() as s:                         # in the rule engine's transaction
        s.add(alert)
        notify.enqueue(s, "acme", "slack", "team-slack", payload, notify.notification_key(...))
    notify.dispatch(stores)                         # a scheduled job: send what is due

See ``docs/notifications.md``. Payload schema: :mod:`workbench.notify.payload`; delivery and
its guarantees: :mod:`workbench.notify.dispatcher`.
"""

from workbench.notify.base import Channel, DeliveryContext
from workbench.notify.dispatcher import DispatchResult, dispatch
from workbench.notify.inapp import inbox, mark_read, unread_count
from workbench.notify.outbox import enqueue, notification_key, notifications, requeue, status
from workbench.notify.payload import render_text, validate_payload
from workbench.notify.registry import ChannelRegistry, channels
from workbench.notify.targets import (
    ChannelTarget, ResolvedChannel, list_channels, remove_channel, resolve_channel, save_channel,
)

__all__ = [
    "Channel",
    "ChannelRegistry",
    "ChannelTarget",
    "DeliveryContext",
    "DispatchResult",
    "ResolvedChannel",
    "channels",
    "dispatch",
    "enqueue",
    "inbox",
    "list_channels",
    "mark_read",
    "notification_key",
    "notifications",
    "remove_channel",
    "render_text",
    "requeue",
    "resolve_channel",
    "save_channel",
    "status",
    "unread_count",
    "validate_payload",
]
