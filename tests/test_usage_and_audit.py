"""Usage metering where the work happens (ingest, jobs, notifications) and the audit trail of
platform actions; daily totals, concurrent writers, and the `usage` / `audit` commands."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from connectors.base import EntityState
from connectors.writers import platform_writers
from workbench import audit, notify, usage
from workbench.errors import AuthError, NotFoundError, TransientError
from workbench.oltp import repo
from workbench.oltp.db import Oltp
from workbench.rules import actions as A
from workbench.workspace import Workspace

# the local platform fakes of the connector tests (a real HTTP server speaking Meta's API)
sys.path.insert(0, str(Path(__file__).parent / "connectors"))
from connector_helpers import connect
from fake_meta import TOKEN, USD_ACT, FakeMeta, error

def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()  # usage days are UTC days


TODAY = utc_today()
NOW = dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
CUT = {"type": "change_budget", "by_percent": -20, "floor": 50}
BUDGET_100 = EntityState("active", Decimal(100), "daily", "USD")


def totals(db: Oltp, org: str, metric: str) -> dict[str, float]:
    """The organisation's totals of one metric per source, over all days."""
    frame = usage.daily(db, org, metric=metric)
    return {s: q for s, q in frame.group_by("source").agg(pl.col("quantity").sum()).rows()}


@pytest.fixture
def ws(stores) -> Workspace:
    repo.create_org(stores.db, "acme", "Acme", "USD", "UTC")
    repo.create_org(stores.db, "globex", "Globex", "EUR", "UTC")
    return Workspace(stores, "acme")


# -- ingest and jobs -----------------------------------------------------------------------------

def test_an_ingest_meters_the_rows_landed_per_source_and_every_job_its_seconds(ws, stores, tmp_path):
    started_on = utc_today()
    first = ws.ingest("synthetic", TODAY - dt.timedelta(days=2), TODAY, progress=False)
    second = ws.ingest("synthetic", TODAY - dt.timedelta(days=1), TODAY, progress=False)
    export = tmp_path / "export.csv"
    export.write_text("Day,Campaign Name,Cost,Impr.,Clicks,Currency\n2026-11-01,Brand,12.50,1000,10,EUR\n"
                      "2026-11-02,Brand,7,500,4,EUR\n2026-11-02,Search,3,90,2,EUR\n")
    csv = ws.ingest("csv", file=export, progress=False)
    ws.transform(progress=False)

    assert first.rows > 0 and second.rows > 0 and csv.rows == 3
    assert totals(stores.db, "acme", "rows_ingested") == {"synthetic": first.rows + second.rows, "csv": 3}
    assert set(usage.daily(stores.db, "acme")["day"]) <= {started_on, utc_today()}  # metered on the UTC day
    seconds = totals(stores.db, "acme", "job_seconds")
    assert set(seconds) == {"ingest", "transform"} and all(s > 0 for s in seconds.values())
    assert totals(stores.db, "acme", "api_calls") == {}, "the synthetic source and a file call no platform"
    assert usage.daily(stores.db, "globex").is_empty()


def test_a_failed_job_is_metered_and_lands_no_rows(ws, stores):
    with pytest.raises(ZeroDivisionError), repo.job_run(stores.db, "acme", "report", {}):
        1 / 0  # noqa: B018
    assert [r.status for r in repo.last_runs(stores.db, "acme")] == ["failed"]
    assert set(totals(stores.db, "acme", "job_seconds")) == {"report"}
    assert totals(stores.db, "acme", "rows_ingested") == {}


def test_a_metering_failure_is_logged_and_never_fails_the_work(ws, stores, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise TransientError("the usage table is locked")

    monkeypatch.setattr(usage, "add", broken)
    notify_row_for(stores, "acme", "inapp", "ana", "k1")
    with caplog.at_level(logging.WARNING):
        landed = ws.ingest("synthetic", TODAY, TODAY, progress=False)
        assert notify.dispatch(stores).sent == 1
    assert landed.rows > 0 and repo.last_runs(stores.db, "acme")[0].status == "succeeded"
    assert repo.list_batches(stores.db, "acme")[0].rows_in == landed.rows
    logged = [r.getMessage() for r in caplog.records]
    assert any("rows_ingested of 'acme' (synthetic) not metered: the usage table is locked" in m for m in logged)
    assert any("job_seconds of 'acme' (ingest) not metered" in m for m in logged)
    assert any("1 notifications_sent of 'acme' (inapp) not metered" in m for m in logged)


@pytest.fixture
def fake():
    with FakeMeta() as f:
        yield f


META = {"poll_seconds": 0.01, "stall_polls": 3, "page_size": 5, "chunk_days": 4,
        "throttle_wait_seconds": 0.01, "usage_pause_seconds": 0.01}


def test_a_platform_run_meters_its_api_calls_even_when_it_fails(ws, stores, fake):
    connect(ws, "meta", fake, {"access_token": TOKEN}, **META, account_ids=[USD_ACT])
    landed = ws.ingest("meta", fake.days[0], fake.days[-1], progress=False)
    assert landed.api_calls == len(fake.log) > 1
    assert totals(stores.db, "acme", "api_calls") == {"meta": landed.api_calls}
    assert totals(stores.db, "acme", "rows_ingested") == {"meta": landed.rows}

    calls_before = len(fake.log)
    fake.fail_next(error(190, "Error validating access token: Session has expired.", subcode=463))
    with pytest.raises(AuthError):
        ws.ingest("meta", fake.days[0], fake.days[1], progress=False)
    failed_calls = len(fake.log) - calls_before
    assert failed_calls >= 1
    assert totals(stores.db, "acme", "api_calls") == {"meta": landed.api_calls + failed_calls}
    assert totals(stores.db, "acme", "rows_ingested") == {"meta": landed.rows}, "nothing landed"
    assert set(totals(stores.db, "acme", "job_seconds")) == {"ingest"}


# -- notifications -------------------------------------------------------------------------------

def notify_row_for(stores, org: str, channel: str, target: str, key: str) -> None:
    payload = {"title": "CPA above target", "items": [{"title": "Campaign 1", "text": "CPA rose."}], "org": org}
    with stores.db.session() as s:
        notify.enqueue(s, org, channel, target, payload, key)


def test_sent_notifications_are_metered_per_channel_and_organisation_once(ws, stores):
    for i in range(3):
        notify_row_for(stores, "acme", "inapp", f"user{i}", f"a{i}")
    notify_row_for(stores, "globex", "inapp", "ana", "g1")
    notify_row_for(stores, "acme", "email", "ana@acme.example", "e1")  # no SMTP server configured: fails
    result = notify.dispatch(stores)
    assert (result.sent, result.failed) == (4, 1)
    assert totals(stores.db, "acme", "notifications_sent") == {"inapp": 3}
    assert totals(stores.db, "globex", "notifications_sent") == {"inapp": 1}
    assert notify.dispatch(stores).sent == 0
    assert totals(stores.db, "acme", "notifications_sent") == {"inapp": 3}, "nothing sent twice, nothing metered twice"


# -- audit of platform actions --------------------------------------------------------------------

@pytest.fixture
def meta(ws, stores, monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "ops-bot")
    writer = platform_writers.get("meta", stores, "acme")
    writer.seed_entity("campaign", "c1", BUDGET_100)
    writer.seed_entity("campaign", "c2", EntityState("active", Decimal(60), "daily", "USD"))
    return writer


def ask(stores, meta, spec, mode, *, entity="c1", evaluation="ev1", actor=None):
    return A.request_action(stores.db, "acme", rule="cpa_guardrail", evaluation_id=evaluation, platform="meta",
                            level="campaign", entity_id=entity, spec=spec, mode=mode, writer=meta, now=NOW,
                            approval_ttl=2 * HOUR, actor=actor)


def writer_for(stores):
    return lambda platform: platform_writers.get(platform, stores, "acme")


def trail(stores, org="acme", action="action.") -> list[dict]:
    """The organisation's action events, oldest first, before/after parsed."""
    rows = audit.events(stores.db, org, action=action).reverse().to_dicts()
    for r in rows:
        r["before"], r["after"] = (None if r[k] is None else json.loads(r[k]) for k in ("before", "after"))
    return rows


def budgets(event: dict) -> tuple:
    return (event["before"]["budget"], event["after"]["budget"])


def test_executing_a_rule_action_is_audited_with_the_platform_before_and_after(stores, meta):
    assert ask(stores, meta, CUT, "dry_run", evaluation="dry").status == "dry_run"
    assert ask(stores, meta, CUT, "approval", evaluation="wait").status == "pending_approval"
    assert trail(stores) == [], "nothing changed on the platform yet"

    done = ask(stores, meta, CUT, "execute")
    assert ask(stores, meta, CUT, "execute").id == done.id  # a retried evaluation: no second event
    [event] = trail(stores)
    assert (event["action"], event["actor"], event["target_kind"], event["target_id"]) == (
        "action.execute", "local:ops-bot", "action_request", done.id)
    assert budgets(event) == (100.0, 80.0) and event["after"]["status"] == "active"
    assert event["detail"] == "change_budget on meta campaign c1, rule cpa_guardrail"
    assert trail(stores, "globex") == []

    ask(stores, meta, {"type": "pause"}, "execute", entity="c2", actor="token:sched-7")
    assert [(e["actor"], e["before"]["status"], e["after"]["status"]) for e in trail(stores)][-1] == (
        "token:sched-7", "active", "paused")


def test_approve_reject_and_undo_are_audited_with_who_decided(stores, meta):
    waiting = ask(stores, meta, CUT, "approval")
    A.approve(stores.db, "acme", waiting.id, "ana", writer_for(stores), now=NOW + HOUR)
    A.approve(stores.db, "acme", waiting.id, "bob", writer_for(stores), now=NOW + HOUR)  # already done: no event
    pause = ask(stores, meta, {"type": "pause"}, "approval", entity="c2")
    A.reject(stores.db, "acme", pause.id, "bob", now=NOW, reason="launch week")
    back = A.undo(stores.db, "acme", waiting.id, "carol", writer_for(stores), now=NOW + 2 * HOUR)
    A.undo(stores.db, "acme", waiting.id, "carol", writer_for(stores))  # undone once: no event

    events = trail(stores)
    assert [(e["action"], e["actor"], e["target_id"]) for e in events] == [
        ("action.approve", "user:ana", waiting.id),
        ("action.execute", "user:ana", waiting.id),
        ("action.reject", "user:bob", pause.id),
        ("action.undo", "user:carol", waiting.id)]
    approve, execute, reject, undo = events
    assert budgets(approve) == budgets(execute) == (100.0, 80.0)
    assert (reject["before"]["status"], reject["after"]["status"]) == ("active", "paused")
    assert reject["detail"] == "pause on meta campaign c2, rule cpa_guardrail; reason: launch week"
    assert budgets(undo) == (80.0, 100.0) and undo["detail"].endswith(f"reverted by request {back.id}")
    assert meta.read("campaign", "c1").budget == Decimal(100) and meta.read("campaign", "c2").status == "active"
    assert [e["action"] for e in trail(stores, action="action.undo")] == ["action.undo"]


def test_a_failed_platform_call_is_audited_as_such(stores, meta):
    meta.fail_next("permanent", message="ad account disabled")
    failed = ask(stores, meta, {"type": "pause"}, "execute")
    assert failed.status == "failed"
    [event] = trail(stores)
    assert (event["action"], event["actor"], event["target_id"]) == ("action.fail", "local:ops-bot", failed.id)
    assert event["detail"].endswith("execution failed (final): ad account disabled")
    assert (event["before"]["status"], event["after"]["status"]) == ("active", "paused")  # what was asked
    with pytest.raises(NotFoundError):
        A.approve(stores.db, "globex", failed.id, "eve", writer_for(stores))
    assert len(trail(stores)) == 1


# -- daily totals and concurrent writers ---------------------------------------------------------

def test_daily_totals_per_day_metric_and_source(ws, stores):
    d1, d2 = dt.date(2026, 11, 23), dt.date(2026, 11, 24)
    for day, metric, qty, source in [(d1, "rows_ingested", 100, "meta"), (d1, "rows_ingested", 50, "meta"),
                                     (d1, "rows_ingested", 7, "ttd"), (d2, "rows_ingested", 30, "meta"),
                                     (d1, "api_calls", 12, "meta"), (d2, "api_calls", 3, "meta"),
                                     (d2, "job_seconds", 1.25, "ingest"), (d2, "job_seconds", 0.5, "ingest"),
                                     (d2, "notifications_sent", 0, "inapp")]:
        usage.add(stores.db, "acme", metric, qty, source, day)
    usage.add(stores.db, "globex", "rows_ingested", 999, "meta", d1)
    assert usage.daily(stores.db, "acme").rows() == [
        (d1, "api_calls", "meta", 12.0), (d1, "rows_ingested", "meta", 150.0), (d1, "rows_ingested", "ttd", 7.0),
        (d2, "api_calls", "meta", 3.0), (d2, "job_seconds", "ingest", 1.75), (d2, "rows_ingested", "meta", 30.0)]
    assert usage.daily(stores.db, "acme", start=d2, metric="rows_ingested").rows() == [
        (d2, "rows_ingested", "meta", 30.0)]
    assert usage.daily(stores.db, "acme", end=d1, metric="api_calls")["quantity"].to_list() == [12.0]


ADDER = textwrap.dedent("""
    import datetime as dt, sys
    from workbench import usage
    from workbench.oltp.db import Oltp
    db = Oltp(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start adding at once
    for _ in range(int(sys.argv[2])):
        usage.add(db, "acme", "api_calls", 1, "meta", dt.date(2026, 11, 24))
    db.dispose()
""")


def add_concurrently(url: str, per_process: int) -> float:
    """Two processes each add 1 ``per_process`` times to one day's total (created by the race)."""
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, url, str(per_process)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate()[1]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    db = Oltp(url)
    try:
        return usage.daily(db, "acme")["quantity"].sum()
    finally:
        db.dispose()


def test_two_processes_adding_to_one_day_sum_exactly_on_sqlite(ws, stores):
    assert add_concurrently(stores.settings.oltp_url_resolved, 150) == 300


@pytest.mark.postgres
def test_two_processes_adding_to_one_day_sum_exactly_on_postgres(pg_url):
    db = Oltp(pg_url)
    try:
        db.migrate()
        repo.create_org(db, "acme", "Acme")
    finally:
        db.dispose()
    assert add_concurrently(pg_url, 150) == 300


# -- the commands --------------------------------------------------------------------------------

@pytest.fixture
def cli(stores):
    from workbench.cli_usage import audit as audit_command
    from workbench.cli_usage import usage as usage_command

    app = typer.Typer()
    app.command("usage")(usage_command)
    app.command("audit")(audit_command)
    env = {"WORKBENCH_HOME": str(stores.settings.home), "WORKBENCH_PROGRESS": "false"}

    def invoke(*args: str, exit_code: int = 0) -> str:
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == exit_code, result.output
        return " ".join(result.output.replace("│", " ").split()) if exit_code else result.output

    return invoke


def test_usage_command_prints_days_and_a_summary_or_the_raw_totals(ws, stores, cli):
    d1, d2 = dt.date(2026, 11, 23), dt.date(2026, 11, 24)
    usage.add(stores.db, "acme", "rows_ingested", 1200, "meta", d1)
    usage.add(stores.db, "acme", "rows_ingested", 300, "ttd", d2)
    usage.add(stores.db, "acme", "api_calls", 42, "meta", d1)
    usage.add(stores.db, "acme", "job_seconds", 12.5, "ingest", d2)
    usage.add(stores.db, "globex", "api_calls", 5, "meta", d1)

    table = cli("usage", "--org", "acme")
    lines = [" ".join(line.replace("│", " ").split()) for line in table.splitlines()]
    assert "2026-11-23 meta 1,200 42" in lines and "2026-11-24 ingest 12.50" in lines
    assert "2026-11-24 ttd 300" in lines
    assert "rows_ingested 1,500 2 meta 1,200, ttd 300" in lines
    assert "job_seconds 12.5 1 ingest 12.5" in lines and "api_calls 42 1 meta 42" in lines

    rows = json.loads(cli("usage", "--org", "acme", "--metric", "api_calls", "--format", "json"))
    assert rows == [{"day": "2026-11-23", "metric": "api_calls", "source": "meta", "quantity": 42.0}]
    csv = cli("usage", "--org", "acme", "--from", "2026-11-24", "--to", "2026-11-24", "--format", "csv")
    assert csv.splitlines() == ["day,metric,source,quantity", "2026-11-24,job_seconds,ingest,12.5",
                                "2026-11-24,rows_ingested,ttd,300.0"]
    assert "no notifications_sent usage recorded for 'acme' in first..last" in cli(
        "usage", "--org", "acme", "--metric", "notifications_sent")


def test_usage_and_audit_commands_refuse_unknown_organisations_and_reversed_ranges(ws, stores, cli):
    with pytest.raises(NotFoundError, match="organisation 'initech' does not exist"):
        cli("usage", "--org", "initech")
    with pytest.raises(NotFoundError, match="organisation 'initech' does not exist"):
        cli("audit", "--org", "initech")
    bad = cli("usage", "--org", "acme", "--from", "2026-11-24", "--to", "2026-11-01", exit_code=2)
    assert "--from 2026-11-24 is after --to 2026-11-01; swap them" in bad
    assert "'rows'" in cli("usage", "--org", "acme", "--metric", "rows", exit_code=2)


def test_audit_command_prints_the_newest_events_first(stores, meta, cli):
    waiting = ask(stores, meta, CUT, "approval")
    A.approve(stores.db, "acme", waiting.id, "ana", writer_for(stores), now=NOW + HOUR)
    audit.record(stores.db, org_id="acme", actor="user:ana", action="config.save", target_kind="rule",
                 target_id="cpa_guardrail", after={"version": 2})
    audit.record(stores.db, org_id="globex", actor="user:eve", action="config.save", target_kind="rule",
                 target_id="secret_rule")

    table = cli("audit", "--org", "acme")
    order = [table.index(a) for a in ("config.save", "action.execute", "action.approve")]
    assert order == sorted(order) and "user:ana" in table and "secret_rule" not in table
    events = json.loads(cli("audit", "--org", "acme", "--action", "action.", "--limit", "1", "--format", "json"))
    assert [(e["action"], e["actor"], e["target_id"]) for e in events] == [
        ("action.execute", "user:ana", waiting.id)]
    assert json.loads(events[0]["before"])["budget"] == 100.0 and json.loads(events[0]["after"])["budget"] == 80.0
    assert "no audit events for 'acme' with actions starting 'token.'" in cli("audit", "--org", "acme",
                                                                              "--action", "token.")
