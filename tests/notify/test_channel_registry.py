from importlib.metadata import EntryPoint

import pytest

from workbench import notify
from workbench.errors import NotFoundError
from workbench.notify import registry


class TeamsChannel(notify.Channel):
    configurable = True
    setting_fields = ("url",)


def test_builtins_are_registered_in_plain_sight():
    assert notify.channels.names() == ["email", "inapp", "slack", "webhook"]
    with pytest.raises(NotFoundError, match="unknown notification channel 'teams'; installed channels: email, inapp"):
        notify.channels.get("teams")


def test_plugins_come_from_the_entry_point_group(monkeypatch):
    ep = EntryPoint(name="teams", value="test_channel_registry:TeamsChannel", group=registry.GROUP)
    seen = []

    def fake_entry_points(group):
        seen.append(group)
        return [ep] if group == "workbench.notification_channels" else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    fresh = registry.ChannelRegistry()
    fresh.register("email", notify.channels.get("email"))
    assert fresh.names() == ["email", "teams"] and seen == ["workbench.notification_channels"]
    assert fresh.get("teams").__name__ == "TeamsChannel"
