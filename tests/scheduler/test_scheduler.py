"""The scheduler: due jobs, the chain from ingest to the inbox, once per event, locks, retries,
failure alerts and backfills, driven the way cron drives it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from workbench import config_service
from workbench.notify import inapp
from workbench.oltp import repo
from workbench.scheduler import core
from workbench.workspace import Workspace

pytestmark = pytest.mark.slow
NOW = dt.datetime(2026, 11, 26, 6, 20, tzinfo=dt.UTC)
ALWAYS = {"name": "always_spending", "level": "campaign", "condition": "spend[last_7d] > 0", "trigger": "every",
          "actions": [{"type": "notify", "channels": ["inapp:ana"], "message": "{campaign_name} spends"}]}


def only(stores, org, *enabled):
    """Leave only ``enabled`` jobs on the clock (the chain still starts the others)."""
    for job in core.JOBS:
        if job not in enabled:
            config_service.save(stores.db, org, "schedule", job,
                                {"job": job, "cron": "0 0 1 1 *", "parameters": {}, "enabled": False}, author="test")


@pytest.fixture
def acme(stores):
    repo.create_org(stores.db, "acme", "Acme")
    ws = Workspace(stores, "acme")
    ws.add_connection("synthetic", settings={"platforms": ["meta"], "crms": []})
    ws.rules.define(ALWAYS)
    return ws


def test_one_tick_runs_the_chain_from_ingest_to_an_alert_in_the_inbox(stores, acme):
    only(stores, "acme", "ingest")
    outcomes = core.tick(stores, NOW)
    assert [(o.job, o.status, o.error) for o in outcomes] == [
        ("ingest", "succeeded", None), ("transform", "succeeded", None),
        ("evaluate_rules", "succeeded", None), ("dispatch_notifications", "succeeded", None)]
    assert inapp.inbox(stores.db, "acme", "ana"), "the rule's alert reached the inbox"
    for run in core.history(stores, "acme"):
        assert run.notebook and os.path.exists(run.notebook), run.job
    assert core.tick(stores, NOW) == []  # nothing due, no event left: a replay does nothing


def test_transient_failures_retry_with_back_off_and_final_ones_do_not(stores, acme):
    only(stores, "acme", "ingest", "transform")
    acme.add_connection("meta", credentials={"access_token": "EAA-test-token"},  # a platform that is down
                        settings={"base_url": "http://127.0.0.1:9", "account_ids": ["act_1"], "max_attempts": 1,
                                  "timeout_seconds": 0.5})
    config_service.save(stores.db, "acme", "schedule", "ingest",
                        {"job": "ingest", "cron": "0 * * * *", "parameters": {"source": "meta"}}, author="test")
    config_service.save(stores.db, "acme", "schedule", "transform",  # a window ending before it starts
                        {"job": "transform", "cron": "0 * * * *", "parameters": {"start": "2026-11-01",
                                                                                   "end": "2026-10-01"}},
                        author="test")
    first = core.tick(stores, NOW)
    assert [(o.job, o.status) for o in first] == [("ingest", "failed"), ("transform", "failed")]
    assert (first[0].error or "").startswith("TransientApiError") and "before" in (first[1].error or "")
    assert core.tick(stores, NOW + dt.timedelta(minutes=1)) == []  # back-off: 5 minutes
    again = core.tick(stores, NOW + dt.timedelta(minutes=6))
    assert [(o.job, o.status) for o in again] == [("ingest", "failed")]  # the bad window is final
    runs = sorted((r.job, r.attempt, r.status) for r in core.history(stores, "acme"))
    assert runs == [("ingest", 1, "failed"), ("ingest", 2, "failed"), ("transform", 1, "failed")]
    alerts = inapp.inbox(stores.db, "acme", "admins")
    assert len(alerts) == 3 and {a.title for a in alerts} == {"scheduled job ingest failed",
                                                              "scheduled job transform failed"}
    assert "EAA-test-token" not in " ".join(a.body for a in alerts)


def test_two_schedulers_at_once_run_a_due_job_exactly_once(stores, acme, tmp_path):
    only(stores, "acme", "transform")
    code = ("import datetime as dt, sys\n"
            "from workbench.settings import load_settings\nfrom workbench.stores import init\n"
            "from workbench.scheduler import core\n"
            "out = core.tick(init(load_settings(home=sys.argv[1], progress=False)), "
            "dt.datetime(2026, 11, 26, 6, 20, tzinfo=dt.UTC))\n"
            "print(';'.join(f'{o.job}:{o.status}' for o in out))\n")
    env = {**os.environ, "WORKBENCH_PROGRESS": "false"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(stores.settings.home)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    statuses = sorted(r[0].strip() for r in results)
    runs = [r for r in core.history(stores, "acme") if r.job == "transform"]
    assert len(runs) == 1, (statuses, [r[1][-500:] for r in results])


def test_a_backfill_runs_its_windows_in_order(stores, acme):
    row = core.backfill(stores, "acme", "ingest", dt.date(2026, 11, 1), dt.date(2026, 11, 10), window_days=4)
    assert row.status == "done"
    windows = [(r.parameters["start"], r.parameters["end"]) for r in reversed(core.history(stores, "acme"))]
    assert windows == [("2026-11-01", "2026-11-04"), ("2026-11-05", "2026-11-08"), ("2026-11-09", "2026-11-10")]
    with pytest.raises(Exception, match="backfilled|window"):
        core.backfill(stores, "acme", "evaluate_rules", dt.date(2026, 11, 1), dt.date(2026, 11, 2))


def test_a_run_killed_mid_way_loses_its_lock_and_the_next_tick_reruns_it_once(stores, acme):
    import signal
    import time

    only(stores, "acme", "ingest")
    code = ("import datetime as dt, sys\n"
            "from workbench.settings import load_settings\nfrom workbench.stores import init\n"
            "from workbench.scheduler import core\n"
            "core.tick(init(load_settings(home=sys.argv[1], progress=False)), "
            "dt.datetime(2026, 11, 26, 6, 20, tzinfo=dt.UTC))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(stores.settings.home)], start_new_session=True,
                            env={**os.environ, "WORKBENCH_PROGRESS": "false"})
    deadline = time.monotonic() + 120
    while not [r for r in core.history(stores, "acme") if r.status == "running"]:
        assert time.monotonic() < deadline and proc.poll() is None, "the run never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the scheduler and its notebook's kernel
    proc.wait()
    assert core.tick(stores, NOW + dt.timedelta(seconds=30)) == []  # its lease has not run out yet
    rerun = core.tick(stores, NOW + dt.timedelta(minutes=5))
    assert [(o.job, o.status) for o in rerun][:1] == [("ingest", "succeeded")]
    runs = {(r.job, r.attempt): r for r in core.history(stores, "acme")}
    assert runs[("ingest", 1)].status == "failed" and "process died" in (runs[("ingest", 1)].error or "")
    batches = repo.list_batches(stores.db, "acme")
    assert len(batches) == 1, "the killed run landed nothing; the rerun landed once"


def test_a_failed_backfill_window_stops_it_and_the_same_call_resumes_there(stores, acme, monkeypatch):
    calls: list[tuple[str, str]] = []
    fail_once = {"2026-11-05"}

    def fake_run(stores_, org, job, params, **kwargs):
        calls.append((params["start"], params["end"]))
        if params["start"] in fail_once:
            fail_once.clear()
            return core.RunOutcome(job, org, "failed", error="TransientApiError: meta is down")
        return core.RunOutcome(job, org, "succeeded")

    monkeypatch.setattr(core, "run_job", fake_run)
    first = core.backfill(stores, "acme", "ingest", dt.date(2026, 11, 1), dt.date(2026, 11, 12), window_days=4)
    assert first.status == "failed" and "window 2026-11-05..2026-11-08" in (first.error or "")
    resumed = core.backfill(stores, "acme", "ingest", dt.date(2026, 11, 1), dt.date(2026, 11, 12), window_days=4)
    assert resumed.status == "done" and resumed.id == first.id
    assert calls == [("2026-11-01", "2026-11-04"), ("2026-11-05", "2026-11-08"),  # then it resumes there
                     ("2026-11-05", "2026-11-08"), ("2026-11-09", "2026-11-12")]
