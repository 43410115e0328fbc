import sqlite3

import pytest
from notify_helpers import add_slack, add_webhook

from workbench import notify
from workbench.errors import NotFoundError, ValidationError
from workbench.oltp import configs

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"


def test_targets_are_versioned_and_secrets_encrypted_at_rest(nstores):
    add_slack(nstores, HOOK)
    t = add_webhook(nstores, "https://ops.example.com/hook", secret="s3cr3t-signing")
    assert (t.name, t.type, t.version, t.settings, t.secret_names) == (
        "ops-hook", "webhook", 1, {"url": "https://ops.example.com/hook"}, ("secret",))
    raw = sqlite3.connect(nstores.settings.home / "workbench.db").execute(
        "SELECT group_concat(CAST(body AS TEXT)) FROM config_versions").fetchone()[0]
    assert "XXXXsecretXXXX" not in raw and "s3cr3t-signing" not in raw and "ops.example.com" in raw
    resolved = notify.resolve_channel(nstores.db, nstores.settings.credentials_key, "acme", "team-slack", "slack")
    assert resolved.secret("webhook_url") == HOOK
    assert "XXXX" not in repr(resolved) and "XXXX" not in str(notify.list_channels(nstores.db, "acme"))


def test_settings_change_keeps_the_secrets_and_the_history(nstores):
    add_webhook(nstores, "https://ops.example.com/hook", secret="s3cr3t-signing")
    v2 = notify.save_channel(nstores.db, nstores.settings.credentials_key, "acme", "ops-hook", "webhook",
                             {"url": "https://ops.example.com/v2"}, None, "tester", "moved")
    assert v2.version == 2 and v2.secret_names == ("secret",)
    resolved = notify.resolve_channel(nstores.db, nstores.settings.credentials_key, "acme", "ops-hook", "webhook")
    assert resolved.settings["url"].endswith("/v2") and resolved.secret("secret") == "s3cr3t-signing"
    assert [v.comment for v in configs.history(nstores.db, "acme", "channel", "ops-hook")] == ["", "moved"]
    notify.remove_channel(nstores.db, "acme", "ops-hook", "tester")
    assert notify.list_channels(nstores.db, "acme") == []
    with pytest.raises(NotFoundError, match="has no channel 'ops-hook'"):
        notify.remove_channel(nstores.db, "acme", "ops-hook", "tester")


def test_targets_belong_to_one_organisation(nstores):
    add_slack(nstores, HOOK)
    assert notify.list_channels(nstores.db, "globex") == []
    with pytest.raises(NotFoundError, match="'globex' has no slack channel 'team-slack'"):
        notify.resolve_channel(nstores.db, nstores.settings.credentials_key, "globex", "team-slack", "slack")
    with pytest.raises(ValidationError, match="is a slack channel, not webhook"):
        notify.resolve_channel(nstores.db, nstores.settings.credentials_key, "acme", "team-slack", "webhook")


@pytest.mark.parametrize("name, type, settings, secrets, fragment", [
    ("Team Slack", "slack", {}, {"webhook_url": HOOK}, "must be 1-100 lowercase"),
    ("x", "pager", {}, {}, "unknown notification channel 'pager'"),
    ("x", "email", {}, {}, "email targets are email addresses given when a notification is sent"),
    ("x", "slack", {}, {}, "a slack channel needs webhook_url"),
    ("x", "slack", {}, {"webhook_url": "ftp://files.example.com/XXXXsecretXXXX"}, "must be an http:// or https:// URL"),
    ("x", "webhook", {"url": "https://a.example.com"}, {}, "a webhook channel needs secret"),
    ("x", "webhook", {}, {"secret": "s"}, "a webhook channel needs url"),
    ("x", "webhook", {"url": "https://a.example.com"}, {"secret": "s", "token": "t"}, "unknown secret(s) token"),
    ("x", "webhook", {"url": "https://a.example.com"}, None, "channel 'x' needs its secrets (secret)"),
])
def test_bad_targets_are_refused_without_echoing_secrets(nstores, name, type, settings, secrets, fragment):
    with pytest.raises(ValidationError) as info:
        notify.save_channel(nstores.db, nstores.settings.credentials_key, "acme", name, type, settings, secrets, "t")
    assert fragment in str(info.value) and "XXXXsecretXXXX" not in str(info.value)


def test_unknown_organisation(nstores):
    with pytest.raises(NotFoundError, match="organisation 'nope' does not exist"):
        add_slack(nstores, HOOK, org="nope")
