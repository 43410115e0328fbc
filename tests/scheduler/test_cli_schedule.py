"""The whole chain driven only by `workbench schedule tick`, as cron would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run(home, *args, ok=True):
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false"}
    env.pop("WORKBENCH_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def test_schedule_tick_takes_the_demo_organisation_from_ingest_to_an_alert_in_the_inbox(tmp_path):
    home = tmp_path / "home"
    run(home, "orgs", "add", "acme", "--name", "Acme")
    run(home, "connections", "add", "synthetic", "--org", "acme", "-s", 'platforms=["meta"]', "-s", "crms=[]",
        "--no-test")
    rule = tmp_path / "rule.yaml"
    rule.write_text("name: always_spending\nlevel: campaign\ncondition: \"spend[last_7d] > 0\"\ntrigger: every\n"
                    "actions:\n  - {type: notify, channels: [\"inapp:ana\"], message: \"{campaign_name} spends\"}\n")
    run(home, "rules", "define", str(rule), "--org", "acme")
    for job in ("transform", "evaluate_rules", "dispatch_notifications"):  # only ingest on the clock
        doc = tmp_path / f"{job}.yaml"
        doc.write_text(f"job: {job}\ncron: '0 0 1 1 *'\nenabled: false\n")
        run(home, "config", "set", "schedule", job, str(doc), "--org", "acme")
    listed = run(home, "schedule", "list", "--org", "acme").stdout
    assert "ingest" in listed and "config v1" in listed

    ticked = run(home, "schedule", "tick", "--now", "2026-11-26T06:20").stdout
    for job in ("ingest", "transform", "evaluate_rules", "dispatch_notifications"):
        assert job in ticked
    assert "nothing due" in run(home, "schedule", "tick", "--now", "2026-11-26T06:21").stdout
    inbox = run(home, "notify", "inbox", "--org", "acme", "--user", "ana").stdout
    assert "spends" in inbox or "always_spending" in inbox
    history = json.loads(run(home, "schedule", "history", "--org", "acme", "--format", "json").stdout)
    assert sorted(h["job"] for h in history) == ["dispatch_notifications", "evaluate_rules", "ingest", "transform"]
    assert all(h["status"] == "succeeded" and os.path.exists(h["notebook"]) for h in history)
    assert {h["trigger"].split(":")[0] for h in history} == {"schedule", "event"}
