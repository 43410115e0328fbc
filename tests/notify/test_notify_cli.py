"""`workbench notify ...`: the commands in-process (typer's runner), and one real process for errors.

The dispatcher as a real process is exercised by test_dispatch_processes.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from notify_helpers import queue
from typer.testing import CliRunner

from workbench.cli import app

SLACK_URL_SECRET = "XXXXsecretXXXX"


@pytest.fixture
def cli(nstores):
    runner = CliRunner()
    env = {"WORKBENCH_HOME": str(nstores.settings.home), "WORKBENCH_PROGRESS": "false", "WORKBENCH_USER": "ana"}

    def invoke(*args, input=None):
        result = runner.invoke(app, ["notify", *args], input=input, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_channels_dispatch_status_and_inbox(nstores, receiver, cli):
    slack_url = receiver.url(f"/services/T1/B1/{SLACK_URL_SECRET}")
    added = cli("channel", "add", "team-slack", "--org", "acme", "--type", "slack", input=slack_url + "\n")
    assert "saved slack channel team-slack v1 for acme" in added and SLACK_URL_SECRET not in added
    added = cli("channel", "add", "ops-hook", "--org", "acme", "--type", "webhook", "--url", receiver.url("/ops"),
                input="hook-secret-1234\nhook-secret-1234\n")
    assert "hook-secret-1234" not in added
    listed = cli("channel", "list", "--org", "acme", "--format", "json")
    assert SLACK_URL_SECRET not in listed and "hook-secret-1234" not in listed
    assert [(r["name"], r["secrets"], r["author"]) for r in json.loads(listed)] == [
        ("ops-hook", "secret=***", "ana"), ("team-slack", "webhook_url=***", "ana")]

    queue(nstores, "slack", "team-slack", "s")
    queue(nstores, "webhook", "ops-hook", "w")
    queue(nstores, "inapp", "ana", "i")
    queue(nstores, "email", "ana@acme.example", "e")  # no SMTP server configured
    assert cli("dispatch", "--org", "acme").strip() == "sent 3, retried 0, failed 1, dead 0, skipped 0"
    assert receiver.keys() == {"s": 1, "w": 1}

    status = cli("status", "--org", "acme")
    assert "last failures" in status and "WORKBENCH_SMTP_HOST" in status
    rows = json.loads(cli("status", "--org", "acme", "--format", "json"))
    assert {(r["channel"], r["status"], r["count"]) for r in rows} == {
        ("email", "failed", 1), ("inapp", "sent", 1), ("slack", "sent", 1), ("webhook", "sent", 1)}
    assert "requeued 1 notification(s)" in cli("requeue", "--org", "acme")

    inbox = cli("inbox", "--org", "acme", "--user", "ana", "--unread", "--mark-read")
    assert "inbox of ana (1 unread)" in inbox and "2 campaigns above target CPA" in inbox and "marked 1" in inbox
    assert "(0 unread)" in cli("inbox", "--org", "acme", "--user", "ana", "--unread")
    assert "removed channel ops-hook" in cli("channel", "remove", "ops-hook", "--org", "acme")


def test_every_command_has_an_example(cli):
    for command in (["dispatch"], ["status"], ["requeue"], ["inbox"], ["channel", "add"], ["channel", "list"],
                    ["channel", "remove"]):
        assert "Example" in cli(*command, "--help"), command


def test_errors_are_one_line(nstores):
    env = {**os.environ, "WORKBENCH_HOME": str(nstores.settings.home), "WORKBENCH_PROGRESS": "false"}
    done = subprocess.run([sys.executable, "-m", "workbench", "notify", "channel", "add", "hook", "--org", "nope",
                           "--type", "webhook", "--url", "https://ops.example.com", "--secret", "s3cr3t-value"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == (
        "error: organisation 'nope' does not exist (known: acme, globex); create it with `workbench orgs add` "
        "or run `workbench demo`")
    assert "s3cr3t-value" not in done.stdout + done.stderr
