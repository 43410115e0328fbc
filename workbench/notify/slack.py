"""Slack incoming webhooks: a Block Kit message (a header, then one section per item).

The target is a configured channel (``type: slack``) whose secret ``webhook_url`` is the
incoming-webhook URL Slack gave (it is the credential, so it is stored encrypted).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from workbench.notify._http import post
from workbench.notify.base import Channel, DeliveryContext, check_url
from workbench.notify.payload import Payload, one_line
from workbench.oltp.models import Notification

MAX_BLOCKS = 50  # Slack's limit per message
MAX_FIELDS = 10  # per section


def _mrkdwn(text: str) -> str:
    # Slack's mrkdwn needs only these three escaped
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks(payload: dict[str, Any]) -> dict[str, Any]:
    """The Slack message for a payload: ``{"text": fallback, "blocks": [...]}``."""
    p = Payload.model_validate(payload)
    out: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": one_line(p.title, 150),
                                                              "emoji": True}}]
    room = MAX_BLOCKS - 3  # header, context, and an "and N more" line
    for item in p.items[:room]:
        text = f"*{_mrkdwn(one_line(item.title, 200))}*" + (f"\n{_mrkdwn(item.text)}" if item.text else "")
        section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
        fields = [{"type": "mrkdwn", "text": f"*{_mrkdwn(k)}*\n{_mrkdwn(v)}"[:2000]}
                  for k, v in list(item.values.items())[:MAX_FIELDS]]
        if fields:
            section["fields"] = fields
        out.append(section)
    if len(p.items) > room:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": f"…and {len(p.items) - room} more"}})
    context = f"Organisation: {_mrkdwn(p.org)}" + (f" · rule: {_mrkdwn(p.rule)}" if p.rule else "")
    if p.link:
        context += f" · <{p.link}|open>"
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": one_line(p.title, 300), "blocks": out}


class SlackChannel(Channel):
    configurable = True
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url",)

    @classmethod
    def check_config(cls, settings: dict[str, Any], secrets: dict[str, str]) -> None:
        super().check_config(settings, secrets)
        check_url(secrets["webhook_url"], "the Slack webhook URL")

    def deliver(self, notification: Notification, context: DeliveryContext) -> None:
        target = context.target(notification, "slack")
        body = json.dumps(blocks(notification.payload)).encode()
        post(context.http, target.secret("webhook_url"), body,
             {"X-Workbench-Idempotency-Key": notification.idempotency_key},
             f"slack channel '{notification.target}'")
