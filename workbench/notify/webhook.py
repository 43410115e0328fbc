"""Generic webhooks: POST the notification as JSON, signed with HMAC-SHA256.

Headers: ``X-Workbench-Signature: sha256=<hex of HMAC-SHA256(secret, raw body)>`` and
``X-Workbench-Idempotency-Key`` (the same on every redelivery of one notification: receivers
dedupe on it). The body is the same bytes on every attempt::

    {"id": ..., "idempotency_key": ..., "org": ..., "target": ..., "created_at": ISO-8601,
     "payload": {title, items, org, rule, link}}

A receiver verifies with ``hmac.compare_digest(header, "sha256=" + hmac.new(secret, body,
"sha256").hexdigest())``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any, ClassVar

from workbench.notify._http import post
from workbench.notify.base import Channel, DeliveryContext, check_url
from workbench.oltp.models import Notification

SIGNATURE_HEADER = "X-Workbench-Signature"
IDEMPOTENCY_HEADER = "X-Workbench-Idempotency-Key"


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body(notification: Notification) -> bytes:
    created = notification.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    doc = {"id": notification.id, "idempotency_key": notification.idempotency_key, "org": notification.org_id,
           "target": notification.target, "created_at": created.isoformat(), "payload": notification.payload}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class WebhookChannel(Channel):
    configurable = True
    setting_fields: ClassVar[tuple[str, ...]] = ("url",)
    secret_fields: ClassVar[tuple[str, ...]] = ("secret",)

    @classmethod
    def check_config(cls, settings: dict[str, Any], secrets: dict[str, str]) -> None:
        super().check_config(settings, secrets)
        check_url(str(settings["url"]), "the webhook URL")

    def deliver(self, notification: Notification, context: DeliveryContext) -> None:
        target = context.target(notification, "webhook")
        content = body(notification)
        post(context.http, str(target.settings["url"]), content,
             {SIGNATURE_HEADER: sign(target.secret("secret"), content),
              IDEMPOTENCY_HEADER: notification.idempotency_key},
             f"webhook '{notification.target}'")
