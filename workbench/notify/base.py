"""What a notification channel is, and what it gets to deliver with.

A channel is a class with ``deliver(notification, context)``: it sends one outbox row and
returns, or raises :class:`~workbench.errors.TransientDeliveryError` (the dispatcher retries
with back-off) or :class:`~workbench.errors.PermanentDeliveryError` (marked failed). Channels
must not put secrets in error messages; the dispatcher also masks every secret it knows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from workbench.errors import ValidationError
from workbench.notify.targets import ResolvedChannel, resolve_channel
from workbench.oltp.db import Oltp
from workbench.oltp.models import Notification
from workbench.settings import Settings


@dataclass
class DeliveryContext:
    """Everything a channel may use during one dispatcher run."""

    settings: Settings
    db: Oltp
    now: dt.datetime
    secrets: set[str] = field(default_factory=set, repr=False)  # every secret seen, masked in errors
    _targets: dict[tuple[str, str, str], ResolvedChannel] = field(default_factory=dict, repr=False)
    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def http(self) -> httpx.Client:
        """One HTTP client per run (made on first use: loading CA certificates takes a moment)."""
        if self._http is None:
            self._http = httpx.Client(timeout=self.settings.notify_http_timeout, follow_redirects=False)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def target(self, notification: Notification, type: str) -> ResolvedChannel:
        """The organisation's configured target ``notification.target`` (cached for this run)."""
        k = (notification.org_id, notification.target, type)
        if k not in self._targets:
            resolved = resolve_channel(self.db, self.settings.credentials_key, notification.org_id,
                                       notification.target, type)
            self.secrets.update(v for v in resolved.secrets.values() if v)
            self._targets[k] = resolved
        return self._targets[k]


class Channel:
    """Base class of notification channels (subclass it, register it in ``channels``)."""

    #: targets are named channel configurations (Slack, webhooks), not addresses or user names
    configurable: ClassVar[bool] = False
    #: what a target is, for messages ("email addresses", "user names")
    target_hint: ClassVar[str] = "configured channel names"
    #: names of required settings and secrets of a configured target
    setting_fields: ClassVar[tuple[str, ...]] = ()
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_config(cls, settings: dict[str, Any], secrets: dict[str, str]) -> None:
        """Refuse a target configuration that cannot work (missing or malformed fields)."""
        missing = [f for f in cls.setting_fields if not settings.get(f)]
        missing += [f for f in cls.secret_fields if not secrets.get(f)]
        if missing:
            raise ValidationError(f"a {cls.__name__.removesuffix('Channel').lower()} channel needs "
                                  f"{', '.join(missing)}")
        unknown = sorted(set(secrets) - set(cls.secret_fields))
        if unknown:
            raise ValidationError(f"unknown secret(s) {', '.join(unknown)}; expected {', '.join(cls.secret_fields)}")

    @classmethod
    def check_target(cls, target: str) -> None:
        """Refuse a target this channel can never deliver to (checked when a notification is queued)."""
        if not target.strip():
            raise ValidationError(f"a notification target must not be empty ({cls.target_hint})")

    def deliver(self, notification: Notification, context: DeliveryContext) -> None:
        raise NotImplementedError


def check_url(value: str, what: str) -> None:
    """An http(s) URL with a host; the message does not repeat the value (it may be a secret)."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ValidationError(f"{what} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError(f"{what} must be an http:// or https:// URL with a host")
