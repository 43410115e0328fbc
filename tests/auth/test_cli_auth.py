"""Users, roles and tokens from the command line, as an admin and a scheduler use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"


def run(home, *args, ok=True, stdin=None, token=None):
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false"}
    env.pop("WORKBENCH_TOKEN", None)
    if token:
        env["WORKBENCH_TOKEN"] = token
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True, text=True,
                          timeout=300, input=stdin)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def test_an_admin_sets_up_users_and_tokens_and_each_acts_within_its_role(tmp_path):
    home = tmp_path / "home"
    run(home, "orgs", "add", "acme", "--name", "Acme")
    run(home, "orgs", "add", "globex", "--name", "Globex")
    run(home, "users", "add", "vi@acme.test", "--name", "Vi", "--password-stdin", stdin=PASSWORD + "\n")
    short = run(home, "users", "add", "x@acme.test", "--password-stdin", stdin="short\n", ok=False)
    assert "at least 12 characters" in short.stderr
    run(home, "orgs", "grant", "vi@acme.test", "--org", "acme", "--role", "viewer")
    members = json.loads(run(home, "orgs", "members", "--org", "acme", "--format", "json").stdout)
    assert members == [{"email": "vi@acme.test", "name": "Vi", "role": "viewer", "disabled": False}]

    token = run(home, "login", "vi@acme.test", "--org", "acme", "--password-stdin", stdin=PASSWORD + "\n").stdout.strip()
    assert token.count(".") == 2
    wrong = run(home, "login", "vi@acme.test", "--org", "acme", "--password-stdin", stdin="nope nope nope\n", ok=False)
    assert "wrong email or password" in wrong.stderr
    # the viewer's token: reading works, changing does not, another organisation is refused
    assert run(home, "metric", "list", "--org", "acme", token=token).stdout
    denied = run(home, "metric", "define", "fee", "spend * 1.1", "--org", "acme", token=token, ok=False)
    assert "config.write needs the editor role" in denied.stderr
    other = run(home, "metric", "list", "--org", "globex", token=token, ok=False)
    assert "another organisation" in other.stderr

    nightly = run(home, "tokens", "create", "nightly", "--org", "acme", "--role", "editor").stdout.strip()
    assert nightly.startswith("wbt_")
    run(home, "metric", "define", "fee", "spend * 1.1", "--org", "acme", token=nightly)
    listed = json.loads(run(home, "tokens", "list", "--org", "acme", "--format", "json").stdout)
    assert [(t["name"], t["role"], t["revoked"]) for t in listed] == [("nightly", "editor", False)]
    assert nightly.split("_")[-1] not in json.dumps(listed)
    run(home, "tokens", "revoke", listed[0]["id"], "--org", "acme")
    revoked = run(home, "metric", "list", "--org", "acme", token=nightly, ok=False)
    assert "not valid" in revoked.stderr

    events = json.loads(run(home, "audit", "--org", "acme", "--format", "json", "--limit", "100").stdout)
    actions = {e["action"] for e in events}
    assert {"role.grant", "login", "login.failed", "token.create", "token.revoke"} <= actions
    audit_denied = run(home, "audit", "--org", "acme", token=token, ok=False)
    assert "audit.read needs the admin role" in audit_denied.stderr

    first = run(home, "auth", "keys").stdout.split()[0]
    run(home, "auth", "rotate-key")
    assert run(home, "metric", "list", "--org", "acme", token=token).stdout  # still valid after a rotation
    run(home, "auth", "rotate-key", "--retire", first)
    assert "not valid" in run(home, "metric", "list", "--org", "acme", token=token, ok=False).stderr
    run(home, "users", "disable", "vi@acme.test")
    fresh = run(home, "login", "vi@acme.test", "--org", "acme", "--password-stdin", stdin=PASSWORD + "\n", ok=False)
    assert "wrong email or password" in fresh.stderr


def test_whole_workbench_commands_refuse_a_token(tmp_path):
    home = tmp_path / "home"
    run(home, "orgs", "add", "acme", "--name", "Acme")
    token = run(home, "tokens", "create", "admin-script", "--org", "acme", "--role", "admin").stdout.strip()
    for args in (("users", "list"), ("auth", "keys"), ("notify", "status", "--org", "acme"), ("orgs", "list"),
                 ("orgs", "add", "globex", "--name", "Globex")):
        refused = run(home, *args, token=token, ok=False)
        assert "acts on the whole workbench: run it as its operator" in refused.stderr, args
    assert run(home, "orgs", "members", "--org", "acme", token=token).returncode == 0  # org-scoped: allowed
