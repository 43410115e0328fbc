"""`workbench connections ...` as a user runs it: a real process against a local Meta."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fake_meta import TOKEN, FakeMeta

pytestmark = pytest.mark.slow


def run(home, *args, ok=True, stdin=None):
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false"}
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True,
                          text=True, timeout=300, input=stdin)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        assert done.returncode == 1, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr  # never printed, whatever happened
    return done


def test_add_test_sync_list_and_remove_a_meta_connection(tmp_path):
    home = tmp_path / "home"
    creds = tmp_path / "meta.json"
    creds.write_text(json.dumps({"access_token": TOKEN}))
    with FakeMeta(days=4) as fake:
        run(home, "orgs", "add", "acme", "--name", "Acme")
        fast = ["-s", f"base_url={fake.url}", "-s", "poll_seconds=0.01", "-s", "backoff_seconds=0.01"]
        # no credentials in a non-interactive shell: a clear error, nothing saved
        missing = run(home, "connections", "add", "meta", "--org", "acme", *fast, ok=False)
        assert "needs the credential(s) access_token" in missing.stderr
        added = run(home, "connections", "add", "meta", "--org", "acme", "--credentials-file", str(creds),
                    "-s", "account_ids=act_1001,act_2002", *fast)
        assert "added connection meta (meta, look-back 28 days)" in added.stdout
        assert "Acme US" in added.stdout and "Acme DE" in added.stdout
        listed = run(home, "connections", "list", "--org", "acme", "--format", "json").stdout
        row = json.loads(listed)[0]
        assert row["credentials"] == "access_token" and '"account_ids": ["act_1001", "act_2002"]' in row["settings"]
        synced = run(home, "connections", "sync", "--org", "acme")
        assert "ingested" in synced.stdout and "transformed 1 batch(es)" in synced.stdout
        status = run(home, "connections", "list", "--org", "acme", "--format", "json").stdout
        assert json.loads(status)[0]["data_through"]
        # the token is revoked on Meta's side: test says so and what to do
        fake.access_tokens.clear()
        refused = run(home, "connections", "test", "meta", "--org", "acme", ok=False)
        assert "Create a new token" in refused.stderr and "--update" in refused.stderr
        run(home, "connections", "remove", "meta", "--org", "acme", "--yes")
        assert json.loads(run(home, "connections", "list", "--org", "acme", "--format", "json").stdout) == []
