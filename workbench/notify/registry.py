"""The notification-channel registry: one explicit mapping of names to channel classes.

The built-in channels are registered below in plain sight; third-party ones come from the
``workbench.notification_channels`` entry-point group (loaded on first lookup)::

    [project.entry-points."workbench.notification_channels"]
    teams = "acme_teams:TeamsChannel"
"""

from __future__ import annotations

from importlib.metadata import entry_points

from workbench.errors import NotFoundError
from workbench.notify.base import Channel
from workbench.notify.email import EmailChannel
from workbench.notify.inapp import InAppChannel
from workbench.notify.slack import SlackChannel
from workbench.notify.webhook import WebhookChannel

GROUP = "workbench.notification_channels"


class ChannelRegistry:
    """Names to channel classes."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Channel]] = {}
        self._entry_points_loaded = False

    def register(self, name: str, cls: type[Channel]) -> None:
        self._classes[name] = cls

    def register_entry_points(self) -> None:
        self._entry_points_loaded = True
        for ep in entry_points(group=GROUP):
            self.register(ep.name, ep.load())

    def _ensure_loaded(self) -> None:
        if not self._entry_points_loaded:
            self.register_entry_points()

    def get(self, name: str) -> type[Channel]:
        self._ensure_loaded()
        try:
            return self._classes[name]
        except KeyError:
            raise NotFoundError(f"unknown notification channel '{name}'; installed channels: "
                                f"{', '.join(self.names())}") from None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._classes)


channels = ChannelRegistry()
channels.register("email", EmailChannel)
channels.register("inapp", InAppChannel)
channels.register("slack", SlackChannel)
channels.register("webhook", WebhookChannel)
