"""`workbench rules ...` and `workbench notify ...` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _cli(home, *args, ok=True):
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false", "WORKBENCH_USER": "ana"}
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


RULE = """\
name: expensive
title: Expensive campaigns
condition: "cpa[last_7d] > 1.3 * target_cpa"
params: {target_cpa: 30}
show: ["cpa[last_7d]", "spend[last_7d]"]
actions:
  - {type: notify, channels: ["inapp:ana"], message: "CPA {cpa[last_7d]} on {campaign_name}"}
"""


def test_rules_from_definition_to_inbox(rule_stores, tmp_path):
    home = rule_stores.settings.home
    path = tmp_path / "expensive.yaml"
    path.write_text(RULE)
    assert "cpa_guardrail" in _cli(home, "rules", "list", "--org", "acme").stdout
    assert "expensive: valid" in _cli(home, "rules", "validate", str(path), "--org", "acme").stdout
    assert "saved expensive v1" in _cli(home, "rules", "define", str(path), "--org", "acme").stdout
    preview = _cli(home, "rules", "preview", "expensive", "--org", "acme", "--as-of", "2026-10-20").stdout
    assert "2 matching" in preview and "cpa[last_7d]" in preview and "Alpha" in preview
    backtest = json.loads(_cli(home, "rules", "backtest", "expensive", "--org", "acme", "--from", "2026-10-08",
                               "--to", "2026-10-10", "--format", "json").stdout.splitlines()[0])
    assert [d["matched"] for d in backtest] == [2, 2, 2]
    evaluated = _cli(home, "rules", "evaluate", "expensive", "--org", "acme", "--as-of", "2026-10-20").stdout
    assert "2 matched, 2 fired" in evaluated
    assert "expensive" in _cli(home, "rules", "history", "--org", "acme").stdout
    _cli(home, "notify", "dispatch", "--org", "acme")
    inbox = _cli(home, "notify", "inbox", "--org", "acme", "--user", "ana").stdout
    assert "Alpha" in inbox
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULE.replace("cpa[last_7d] > 1.3", "cpa[last_week] > 1.3"))
    refused = _cli(home, "rules", "validate", str(bad), "--org", "acme", ok=False)
    assert refused.returncode == 1 and "unknown window 'last_week'" in refused.stderr
