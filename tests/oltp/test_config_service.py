"""The configuration service: kinds and their validation, save / history / diff / rollback, no-change
refusal, isolation between organisations, audit events, engines reading rolled-back versions, the
hooks in connections and notification channels, permissions, and `workbench config`."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass

import polars as pl
import pytest
from typer.testing import CliRunner

from workbench import audit, config_service
from workbench.auth.context import RequestContext
from workbench.errors import ConfigError, FormulaError, IsolationError, NotFoundError, PermissionDenied, ValidationError
from workbench.oltp import configs, repo
from workbench.oltp.db import Oltp
from workbench.oltp.models import RuleEvaluation
from workbench.settings import Settings, load_settings
from workbench.workspace import Workspace

FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 10, 10)
AS_OF = dt.date(2026, 10, 11)
HOOK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"

BUDGET = {"amount": 1000, "currency": "usd", "period": "monthly", "scope": "platform = 'meta'",
          "start": "2026-10-01", "alert_at_pct": [100, 50, 80, 80]}
SCHEDULE = {"job": "evaluate_rules", "cron": "0 7 * * *", "parameters": {"rules": ["cpa_guardrail"]}}
RULE = {"name": "big_spender", "condition": "spend[last_7d] > 500", "level": "campaign"}


def _gold(stores) -> None:
    """Two acme campaigns (C1 meta 100/day, C2 ttd 10/day) and one globex campaign (10000/day), 10 days."""
    from workbench.lake.schemas import TABLES

    rows = []
    for i in range((LAST - FIRST).days + 1):
        day = FIRST + dt.timedelta(days=i)
        for org, cid, platform, spend in (("acme", "C1", "meta", 100.0), ("acme", "C2", "ttd", 10.0),
                                          ("globex", "C1", "meta", 10000.0)):
            rows.append({"org_id": org, "date": day, "platform": platform, "account_id": f"A-{platform}",
                         "account_name": f"{platform} account", "campaign_id": cid, "campaign_name": f"{org} {cid}",
                         "currency": "USD", "org_currency": "USD", "spend": spend, "spend_org": spend,
                         "impressions": 1000, "clicks": 20, "conversions": 2.0, "conversion_value": 80.0,
                         "conversion_value_org": 80.0, "video_views": None, "campaign_status": "active",
                         "objective": "conversions", "budget_type": "daily", "budget_amount": 200.0,
                         "budget_amount_org": 200.0, "start_date": dt.date(2026, 9, 1),
                         "end_date": dt.date(2026, 12, 31), "settled": True})
    camp = pl.DataFrame(rows, infer_schema_length=None)
    stores.lake.append("gold.campaign_daily", camp.select(TABLES["gold.campaign_daily"].column_names))
    perf = camp.with_columns(ad_group_id=pl.col("campaign_id") + "-G", ad_group_name=pl.col("campaign_name") + " g",
                             ad_id=pl.col("campaign_id") + "-AD", ad_name=pl.col("campaign_name") + " ad",
                             reach=pl.lit(None, pl.Int64), campaign_labels=pl.lit(None, pl.List(pl.String)))
    stores.lake.append("gold.performance_daily", perf.select(TABLES["gold.performance_daily"].column_names))


@dataclass
class OltpOnly:
    settings: Settings
    db: Oltp


def _orgs(db) -> None:
    repo.create_org(db, "acme", "Acme", "USD", "UTC")
    repo.create_org(db, "globex", "Globex", "EUR", "UTC")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """An OLTP file migrated once, with acme and globex; each test gets a copy."""
    path = tmp_path_factory.mktemp("config_oltp") / "workbench.db"
    db = Oltp(f"sqlite:///{path}")
    db.migrate()
    _orgs(db)
    db.dispose()
    return path


@pytest.fixture
def cs(tmp_path, migrated):
    """The OLTP store only (all the service uses; no lake, so quick) with acme and globex."""
    settings = load_settings(home=tmp_path / "home", progress=False)
    settings.ensure_home()
    shutil.copy(migrated, settings.home / "workbench.db")
    db = Oltp(settings.oltp_url_resolved)
    yield OltpOnly(settings, db)
    db.dispose()


@pytest.fixture
def lake_cs(stores):
    """Every store, for the engines (ws.metrics, rule evaluations), with acme and globex and gold rows."""
    _orgs(stores.db)
    _gold(stores)
    return stores


def save(cs, kind, name, body, org="acme", **kw):
    return config_service.save(cs.db, org, kind, name, body, author=kw.pop("author", "ana"),
                               key=cs.settings.credentials_key, **kw)


def events(cs, org="acme", action="config."):
    return audit.events(cs.db, org, action=action).sort("at")


# -- kinds and validation -------------------------------------------------------------------

def test_every_kind_of_the_issue_is_registered_with_a_description():
    assert set(config_service.KINDS) == {"connection", "metric", "rule", "budget", "schedule", "channel"}
    assert all(len(k.description) > 20 for k in config_service.KINDS.values())
    with pytest.raises(ValidationError, match="unknown configuration kind 'budgets'; kinds: connection, metric"):
        config_service.kind_of("budgets")


@pytest.mark.parametrize("kind, name, body, expected", [
    ("budget", "q4-meta", BUDGET,
     {"name": "q4-meta", "amount": 1000.0, "currency": "USD", "period": "monthly", "scope": "platform = 'meta'",
      "start": "2026-10-01", "end": None, "alert_at_pct": [50.0, 80.0, 100.0], "description": ""}),
    ("budget", "flight-1", {**BUDGET, "period": "flight", "end": dt.date(2026, 12, 31),
                            "scope": "campaign_status = 'active' AND platform IN ('meta', 'ttd')"},
     {"period": "flight", "end": "2026-12-31"}),
    ("schedule", "nightly", SCHEDULE,
     {"job": "evaluate_rules", "cron": "0 7 * * *", "parameters": {"rules": ["cpa_guardrail"]}, "enabled": True,
      "description": ""}),
    ("connection", "meta", {"platform": "meta", "settings": {"account_ids": ["act_1"]}},
     {"platform": "meta", "settings": {"account_ids": ["act_1"]}, "lookback_days": 28}),
    ("metric", "blended_cpm", {"formula": "spend / impressions * 1000"},
     {"formula": "spend / impressions * 1000", "description": "", "unit": None, "format": None}),
    ("rule", "big_spender", {"condition": "spend[last_7d] > 500"},
     {"name": "big_spender", "condition": "spend[last_7d] > 500", "level": "campaign", "enabled": True,
      "trigger": "transition", "mode": "dry_run"}),
])
def test_good_documents_are_normalised(cs, kind, name, body, expected):
    normalised = config_service.validate(cs.db, "acme", kind, name, body, key=cs.settings.credentials_key)
    assert {k: normalised[k] for k in expected} == expected
    json.dumps(normalised)  # what the JSON column stores


@pytest.mark.parametrize("kind, name, body, fragment", [
    ("budget", "b", {**BUDGET, "amount": 0}, "amount: Input should be greater than 0"),
    ("budget", "b", {**BUDGET, "currency": "EURO"}, "'EURO' is not a 3-letter ISO currency code"),
    ("budget", "b", {**BUDGET, "period": "weekly"}, "period: Input should be 'monthly', 'quarterly' or 'flight'"),
    ("budget", "b", {**BUDGET, "scope": "  "}, "give the campaigns the budget covers"),
    ("budget", "b", {**BUDGET, "scope": "platfrom = 'meta'"}, "unknown dimension or base metric 'platfrom'"),
    ("budget", "b", {**BUDGET, "scope": "platform = "}, "the formula ends too early"),
    ("budget", "b", {**BUDGET, "scope": "ad_name = 'x'"}, "can only use campaign attributes"),
    ("budget", "b", {**BUDGET, "period": "flight"}, "a flight budget needs an end date"),
    ("budget", "b", {**BUDGET, "end": "2026-09-01"}, "the end date 2026-09-01 is before the start date"),
    ("budget", "b", {**BUDGET, "alert_at_pct": [-5]}, "alert thresholds are percentages"),
    ("budget", "b", {**BUDGET, "amonut": 5}, "amonut: Extra inputs are not permitted"),
    ("budget", "b", {**BUDGET, "name": "other"}, "names budget 'other' but is saved as 'b'"),
    ("budget", "Q4 Budget", BUDGET, "name 'Q4 Budget' must be 1-100 lowercase"),
    ("budget", "b", ["not", "a", "mapping"], "a budget document is a mapping"),
    ("schedule", "s", {**SCHEDULE, "job": "backup"}, "job: Input should be 'ingest', 'transform'"),
    ("schedule", "s", {**SCHEDULE, "cron": "every day"}, "'every day' is not a cron expression"),
    ("schedule", "s", {**SCHEDULE, "enabled": "yes"}, "enabled: Input should be a valid boolean"),
    ("schedule", "s", {**SCHEDULE, "parameters": ["x"]}, "parameters: Input should be a valid dictionary"),
    ("connection", "c", {"platform": "tiktok"}, "platform 'tiktok' is not an installed connector"),
    ("connection", "c", {"platform": "meta", "settings": ["x"]}, "settings must be a mapping"),
    ("connection", "c", {"platform": "meta", "lookback_days": -1}, "lookback_days must be a whole number"),
    ("connection", "c", {"platform": "meta", "lookback_days": "3"}, "lookback_days must be a whole number"),
    ("connection", "c", {"platform": "meta", "settings": {"access_token": "EAAB"}}, "settings access_token look like credentials"),
    ("connection", "c", {"platform": "ttd", "settings": {"advertiser_ids": ["a"], "report_template_id": "1",
                                                         "login": "me"}}, "settings login look like credentials"),
    ("connection", "c", {"platform": "meta", "settings": {"proxy": {"Api-Key": "k"}}}, "settings proxy.Api-Key look like"),
    ("connection", "c", {"platform": "meta", "credentials": {"access_token": "EAAB"}}, "credentials are never part"),
    ("connection", "c", {"platform": "ttd", "settings": {"advertiser_ids": ["a"]}}, "needs the setting(s) report_template_id"),
    ("connection", "c", {"platform": "meta", "lookback": 3}, "unknown field(s) lookback"),
    ("metric", "m", {"formula": ""}, "metric 'm' needs a formula"),
    ("metric", "m", {"formula": "spend / nope"}, "unknown"),
    ("metric", "spend", {"formula": "clicks * 2"}, "'spend' is a base metric"),
    ("metric", "m", {"formula": "spend", "unit": "furlongs"}, "unknown unit 'furlongs'"),
    ("metric", "m", {"formula": "spend", "colour": "red"}, "unknown field(s) colour"),
    ("rule", "r", {"condition": "spend > 5"}, "say over which days to look at spend"),
    ("rule", "r", {"name": "other", "condition": "spend[last_7d] > 5"}, "names rule 'other' but is saved as 'r'"),
    ("rule", "r", {"condition": "spend[last_7d] > 5", "level": "country"}, "level: Input should be 'account'"),
    ("rule", "r", {"level": "campaign"}, "condition: Field required"),
    ("channel", "c", {"type": "pager", "secrets": {"x": "y"}}, "unknown notification channel 'pager'"),
    ("channel", "c", {"type": "email"}, "email targets are email addresses"),
    ("channel", "c", {"type": "slack", "secrets": {"webhook_url": "ftp://x.example.com/XXXXsecretXXXX"}},
     "must be an http:// or https:// URL"),
    ("channel", "c", {"type": "webhook", "settings": {"url": "https://a.example.com"}}, "channel 'c' needs its secrets"),
    ("channel", "Team Slack", {"type": "slack", "secrets": {"webhook_url": HOOK}}, "must be 1-100 lowercase"),
])
def test_bad_documents_are_refused_saying_what_to_fix(cs, kind, name, body, fragment):
    with pytest.raises(ValidationError) as info:
        save(cs, kind, name, body)
    assert fragment in str(info.value)
    assert "XXXXsecretXXXX" not in str(info.value)
    assert configs.history(cs.db, "acme", kind, name) == []
    assert events(cs).is_empty()


def test_channel_documents_need_the_credentials_key(cs):
    with pytest.raises(ConfigError, match="pass the credentials key"):
        config_service.save(cs.db, "acme", "channel", "team-slack", {"type": "slack", "secrets": {"webhook_url": HOOK}},
                            author="ana")


def test_unknown_organisation_is_named(cs):
    with pytest.raises(NotFoundError, match="organisation 'nope' does not exist"):
        save(cs, "budget", "b", BUDGET, org="nope")


# -- save, history, diff, rollback, audit ---------------------------------------------------

def test_save_history_diff_rollback_and_audit(cs):
    v1 = save(cs, "budget", "q4-meta", BUDGET, comment="plan")
    v2 = save(cs, "budget", "q4-meta", {**BUDGET, "amount": 1500, "scope": "platform IN ('meta', 'ttd')"},
              author="bo", comment="more")
    assert (v1.version, v1.author, v1.comment, v2.version, v2.author) == (1, "ana", "plan", 2, "bo")
    assert config_service.current(cs.db, "acme", "budget", "q4-meta")["amount"] == 1500.0

    text = config_service.diff(cs.db, "acme", "budget", "q4-meta", 1, 2)
    assert text.startswith("--- budget/q4-meta v1\n+++ budget/q4-meta v2\n")
    assert "-amount: 1000.0\n+amount: 1500.0\n" in text and "-scope: platform = 'meta'\n" in text
    assert " currency: USD\n" in text  # context lines are the canonical YAML
    changes = config_service.compare(cs.db, "acme", "budget", "q4-meta", 1, 2).changes
    assert [(c.path, c.before, c.after, c.change) for c in changes] == [
        ("amount", 1000.0, 1500.0, "changed"), ("scope", "platform = 'meta'", "platform IN ('meta', 'ttd')", "changed")]
    assert config_service.diff(cs.db, "acme", "budget", "q4-meta", 2, 2) == ""

    v3 = config_service.rollback(cs.db, "acme", "budget", "q4-meta", 1, author="cy", comment="too much")
    assert v3.version == 3 and v3.body == v1.body and v3.comment == "rollback to v1: too much"
    assert config_service.current(cs.db, "acme", "budget", "q4-meta") == v1.body
    assert [r.version for r in config_service.history(cs.db, "acme", "budget", "q4-meta")] == [1, 2, 3]

    ev = events(cs)
    assert ev["action"].to_list() == ["config.save", "config.save", "config.rollback"]
    assert ev["actor"].to_list() == ["ana", "bo", "cy"]
    assert set(ev["target_kind"]) == {"budget"} and set(ev["target_id"]) == {"q4-meta"}
    assert ev["before"][0] is None and json.loads(ev["after"][0]) == v1.body
    assert json.loads(ev["before"][1]) == v1.body and json.loads(ev["after"][1]) == v2.body
    assert json.loads(ev["before"][2]) == v2.body and json.loads(ev["after"][2]) == v1.body
    assert ev["detail"].to_list() == ["v1: plan", "v2: more", "v3: rollback to v1: too much"]


def test_unchanged_saves_and_rollbacks_are_refused(cs):
    save(cs, "schedule", "nightly", SCHEDULE)
    with pytest.raises(ValidationError, match="no change: schedule 'nightly' v1 is already this document"):
        save(cs, "schedule", "nightly", {**SCHEDULE, "enabled": True})  # the default, written out
    save(cs, "schedule", "nightly", {**SCHEDULE, "enabled": False})
    save(cs, "schedule", "nightly", SCHEDULE)
    with pytest.raises(ValidationError, match="no change"):
        config_service.rollback(cs.db, "acme", "schedule", "nightly", 1, author="ana")  # v3 equals v1
    same = save(cs, "schedule", "nightly", SCHEDULE, refuse_unchanged=False)
    assert same.version == 3 and len(configs.history(cs.db, "acme", "schedule", "nightly")) == 3
    assert events(cs).height == 3


def test_remove_keeps_the_history_and_rollback_restores(cs):
    save(cs, "budget", "b", BUDGET)
    removed = config_service.remove(cs.db, "acme", "budget", "b", author="ana", comment="over")
    assert removed.version == 2 and removed.body is None
    with pytest.raises(NotFoundError, match="budget 'b' of 'acme' was removed in v2"):
        config_service.current(cs.db, "acme", "budget", "b")
    assert config_service.documents(cs.db, "acme", "budget") == []
    assert "-amount: 1000.0" in config_service.diff(cs.db, "acme", "budget", "b", 1, 2)
    with pytest.raises(ValidationError, match="v2 of budget 'b' is a removal"):
        config_service.rollback(cs.db, "acme", "budget", "b", 2, author="ana")
    assert config_service.rollback(cs.db, "acme", "budget", "b", 1, author="ana").version == 3
    assert [d.name for d in config_service.documents(cs.db, "acme", "budget")] == ["b"]
    ev = events(cs)
    assert ev["action"].to_list() == ["config.save", "config.remove", "config.rollback"]
    assert ev["after"][1] is None and json.loads(ev["before"][1])["amount"] == 1000.0
    with pytest.raises(NotFoundError, match="has no version 7 of budget 'b'; versions: 1..3"):
        config_service.diff(cs.db, "acme", "budget", "b", 1, 7)


def test_rollback_validates_the_old_version_again(cs):
    ws = Workspace(cs, "acme")
    ws.define_metric("base_cpm", "spend / impressions * 1000")
    save(cs, "metric", "my_cpm", {"formula": "base_cpm * 2"})
    ws.define_metric("base_cpm", "spend / impressions * 2000")
    ws.remove_metric("my_cpm")
    ws.remove_metric("base_cpm")
    with pytest.raises(FormulaError, match="base_cpm"):  # v1 names a metric that no longer exists
        config_service.rollback(cs.db, "acme", "metric", "my_cpm", 1, author="ana")
    assert configs.latest(cs.db, "acme", "metric", "my_cpm").body is None


# -- isolation ------------------------------------------------------------------------------

def test_another_organisation_cannot_read_diff_roll_back_or_remove_a_document(cs):
    save(cs, "budget", "q4-meta", BUDGET)
    save(cs, "budget", "q4-meta", {**BUDGET, "amount": 2000})
    db = cs.db
    for attempt in (lambda: config_service.current(db, "globex", "budget", "q4-meta"),
                    lambda: config_service.version(db, "globex", "budget", "q4-meta", 1),
                    lambda: config_service.history(db, "globex", "budget", "q4-meta"),
                    lambda: config_service.diff(db, "globex", "budget", "q4-meta", 1, 2),
                    lambda: config_service.rollback(db, "globex", "budget", "q4-meta", 1, author="eve"),
                    lambda: config_service.remove(db, "globex", "budget", "q4-meta", author="eve")):
        with pytest.raises(NotFoundError, match="'globex' has no"):
            attempt()
    assert config_service.documents(db, "globex", "budget") == []
    assert configs.history(db, "globex", "budget", "q4-meta") == []

    # the same name in globex is globex's own document, numbered from 1
    own = save(cs, "budget", "q4-meta", {**BUDGET, "currency": "EUR"}, org="globex")
    assert own.version == 1
    assert config_service.current(db, "acme", "budget", "q4-meta")["amount"] == 2000.0
    assert config_service.current(db, "acme", "budget", "q4-meta")["currency"] == "USD"
    with pytest.raises(NotFoundError, match="'globex' has no version 2 of budget 'q4-meta'"):
        config_service.rollback(db, "globex", "budget", "q4-meta", 2, author="eve")
    assert events(cs, "globex")["actor"].to_list() == ["ana"]
    assert events(cs, "acme").height == 2


def test_a_workspace_context_for_another_organisation_fails_closed(cs):
    with pytest.raises(IsolationError, match="acts for organisation 'globex', not 'acme'"):
        config_service.WorkspaceConfigs(Workspace(cs, "acme", RequestContext("user:eve@globex.example", "globex",
                                                                               "admin")))


def test_roles_decide_who_may_change_documents(cs):
    save(cs, "budget", "b", BUDGET)
    viewer = config_service.WorkspaceConfigs(Workspace(cs, "acme", RequestContext("user:vi@acme.example", "acme",
                                                                                    "viewer")))
    assert viewer.show("budget", "b").body["amount"] == 1000.0
    with pytest.raises(PermissionDenied, match="config.write needs the editor role"):
        viewer.set("budget", "b", {**BUDGET, "amount": 5})
    with pytest.raises(PermissionDenied):
        viewer.rollback("budget", "b", 1)
    editor = config_service.WorkspaceConfigs(Workspace(cs, "acme", RequestContext("user:ed@acme.example", "acme",
                                                                                    "editor")))
    row = editor.set("budget", "b", "amount: 5\ncurrency: USD\nperiod: monthly\nscope: \"platform = 'ttd'\"\n"
                                    "start: 2026-10-01\n", comment="yaml text")
    assert (row.version, row.author, row.body["start"]) == (2, "ed@acme.example", "2026-10-01")
    assert events(cs)["actor"].to_list() == ["ana", "user:ed@acme.example"]
    with pytest.raises(PermissionDenied, match="connections.manage needs the admin role"):
        editor.set("connection", "synthetic", {"platform": "synthetic"})


# -- engines read the current version -------------------------------------------------------

def test_a_rolled_back_metric_is_what_ws_metrics_computes(lake_cs):
    cs = lake_cs
    ws = Workspace(cs, "acme")
    save(cs, "metric", "weighted_spend", {"formula": "spend * 2", "description": "doubled"})
    ws.define_metric("weighted_spend", "spend * 3", description="tripled")

    def value() -> float:
        return ws.metrics(["weighted_spend"], start=FIRST, end=LAST)["weighted_spend"][0]

    assert value() == 3 * 1100.0
    v3 = config_service.rollback(cs.db, "acme", "metric", "weighted_spend", 1, author="ana")
    assert v3.version == 3 and value() == 2 * 1100.0
    assert ws.metric_history("weighted_spend")["formula"].to_list() == ["spend * 2", "spend * 3", "spend * 2"]
    saved = events(cs)
    assert saved["action"].to_list() == ["config.save", "config.save", "config.rollback"]
    defined = saved[1]  # ws.define_metric is audited like a save through the service
    assert (defined["actor"][0], defined["detail"][0]) == (ws.ctx.actor, "v2")
    assert (json.loads(defined["before"][0])["formula"], json.loads(defined["after"][0])["formula"]) == (
        "spend * 2", "spend * 3")


def test_a_rolled_back_rule_is_what_the_next_evaluation_uses_and_records(lake_cs):
    cs = lake_cs
    ws = Workspace(cs, "acme")
    save(cs, "rule", "big_spender", RULE)
    ws.rules.define({**RULE, "condition": "spend[last_7d] > 50000"}, comment="stricter")
    assert ws.rules.evaluate("big_spender", as_of=AS_OF)[0].matched.height == 0
    config_service.rollback(cs.db, "acme", "rule", "big_spender", 1, author="ana")
    evaluation = ws.rules.evaluate("big_spender", as_of=AS_OF)[0]
    assert (evaluation.version, evaluation.matched["campaign_id"].to_list()) == (3, ["C1"])  # 700 in 7 days
    with cs.db.session() as s:
        recorded = s.get(RuleEvaluation, evaluation.id)
        assert recorded is not None and recorded.rule_version == 3


def test_the_service_and_the_define_functions_store_the_same_documents(cs):
    ws_acme, ws_globex = Workspace(cs, "acme"), Workspace(cs, "globex")
    save(cs, "metric", "cpm2", {"formula": "spend / impressions * 1000", "unit": "money", "format": "currency"})
    ws_globex.define_metric("cpm2", "spend / impressions * 1000", unit="money", format="currency")
    save(cs, "rule", "big_spender", RULE)
    ws_globex.rules.define(RULE)
    for kind, name in (("metric", "cpm2"), ("rule", "big_spender")):
        assert config_service.current(cs.db, "acme", kind, name) == config_service.current(cs.db, "globex", kind, name)
    with pytest.raises(FormulaError) as by_service:
        save(cs, "metric", "bad", {"formula": "spend / nope"})
    with pytest.raises(FormulaError) as by_define:
        ws_acme.define_metric("bad", "spend / nope")
    assert str(by_service.value) == str(by_define.value)
    with pytest.raises(ValidationError, match="no change"):  # define's version counts as the current one
        save(cs, "metric", "cpm2", {"formula": "spend / impressions * 1000", "unit": "money", "format": "currency"},
             org="globex")


def test_removing_a_metric_others_depend_on_is_refused_as_by_remove_metric(cs):
    save(cs, "metric", "base_cpm", {"formula": "spend / impressions * 1000"})
    save(cs, "metric", "cpm_x2", {"formula": "base_cpm * 2"})
    with pytest.raises(ValidationError, match="cannot remove 'base_cpm': cpm_x2 depend on it"):
        config_service.remove(cs.db, "acme", "metric", "base_cpm", author="ana")
    assert config_service.current(cs.db, "acme", "metric", "base_cpm")["formula"] == "spend / impressions * 1000"


# -- connections and channels ---------------------------------------------------------------

def test_connections_are_versioned_without_credentials_and_rollback_reaches_the_connection(cs):
    ws = Workspace(cs, "acme")
    ws.add_connection("meta", credentials={"access_token": "EAAB-XXXXsecretXXXX"}, settings={"account_ids": ["act_1"]})
    ws.add_connection("meta", settings={"account_ids": ["act_1", "act_2"]}, lookback_days=7, update=True)
    ws.add_connection("meta", credentials={"access_token": "EAAB-newXXXXsecretXXXX"}, update=True)  # no config change
    rows = config_service.history(cs.db, "acme", "connection", "meta")
    assert [(r.version, r.comment) for r in rows] == [(1, "added"), (2, "updated")]
    assert rows[1].body == {"platform": "meta", "settings": {"account_ids": ["act_1", "act_2"]}, "lookback_days": 7}
    ev = audit.events(cs.db, "acme")
    assert "XXXXsecretXXXX" not in ev.write_csv()
    assert ev.filter(pl.col("action") == "connection.credentials")["detail"].to_list() == ["set access_token"] * 2

    config_service.rollback(cs.db, "acme", "connection", "meta", 1, author="ana")
    live = repo.get_connection(cs.db, "acme", "meta")
    assert (live.settings, live.lookback_days) == ({"account_ids": ["act_1"]}, 28)
    assert repo.decrypt_credentials(cs.settings.credentials_key, live.credentials_encrypted) == {
        "access_token": "EAAB-newXXXXsecretXXXX"}  # credentials are not part of the document

    ws.remove_connection("meta")
    assert configs.latest(cs.db, "acme", "connection", "meta").body is None
    with pytest.raises(ValidationError, match="does not exist in 'acme' and needs credentials"):
        config_service.rollback(cs.db, "acme", "connection", "meta", 1, author="ana")
    assert configs.latest(cs.db, "acme", "connection", "meta").version == 4  # the refused rollback stored nothing


def test_a_connection_document_without_credentials_creates_and_removes_the_connection(cs):
    save(cs, "connection", "synthetic", {"platform": "synthetic", "settings": {"platforms": ["meta"]}})
    assert repo.get_connection(cs.db, "acme", "synthetic").lookback_days == 3
    config_service.remove(cs.db, "acme", "connection", "synthetic", author="ana")
    with pytest.raises(NotFoundError, match="no connection 'synthetic'"):
        repo.get_connection(cs.db, "acme", "synthetic")


def test_channel_saves_are_versioned_audited_and_redacted(cs):
    from workbench import notify

    key = cs.settings.credentials_key
    first = notify.save_channel(cs.db, key, "acme", "team-slack", "slack", {}, {"webhook_url": HOOK}, "ana")
    again = notify.save_channel(cs.db, key, "acme", "team-slack", "slack", {}, {"webhook_url": HOOK}, "ana")
    assert first.version == again.version == 1  # the same target again is no new version
    with pytest.raises(ValidationError, match="no change"):
        save(cs, "channel", "team-slack", {"type": "slack", "secrets": {"webhook_url": HOOK}})
    notify.save_channel(cs.db, key, "acme", "team-slack", "slack", {}, {"webhook_url": HOOK + "2"}, "ana", "rotated")

    compared = config_service.compare(cs.db, "acme", "channel", "team-slack", 1, 2)
    assert [c.path for c in compared.changes] == ["secrets"] and "secrets changed" in compared.text
    shown = config_service.WorkspaceConfigs(Workspace(cs, "acme")).show("channel", "team-slack")
    assert shown.body["secrets"] == config_service.REDACTED
    assert config_service.current(cs.db, "acme", "channel", "team-slack")["secrets"] != config_service.REDACTED
    ev = events(cs)
    assert ev.height == 2 and "XXXX" not in ev.write_csv() and '"secrets": "***"' in ev["after"][0]

    config_service.rollback(cs.db, "acme", "channel", "team-slack", 1, author="ana", key=key)
    assert notify.resolve_channel(cs.db, key, "acme", "team-slack", "slack").secret("webhook_url") == HOOK
    # a shown document (secrets ***) saved back keeps the secrets
    save(cs, "channel", "team-slack", {"type": "slack", "settings": {"note": "x"}, "secrets": "***"})
    assert notify.resolve_channel(cs.db, key, "acme", "team-slack", "slack").secret("webhook_url") == HOOK


# -- the command line -----------------------------------------------------------------------

def test_cli(cs, tmp_path, monkeypatch, request):
    from workbench.cli_config import config_app
    from workbench.stores import close_all

    request.addfinalizer(close_all)  # the commands open the stores of WORKBENCH_HOME in this process
    monkeypatch.setenv("WORKBENCH_HOME", str(cs.settings.home))
    monkeypatch.setenv("WORKBENCH_USER", "ana")
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(config_app, list(args))
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    doc = tmp_path / "budget.yaml"
    doc.write_text("amount: 1000\ncurrency: USD\nperiod: quarterly\nscope: \"platform = 'meta'\"\nstart: 2026-10-01\n")
    assert "budget" in run("kinds").output and "schedule" in run("kinds").output
    assert "saved budget q4 v1" in run("set", "budget", "q4", str(doc), "--org", "acme", "--comment", "plan").output
    doc.write_text(doc.read_text().replace("1000", "1200"))
    assert "saved budget q4 v2" in run("set", "budget", "q4", str(doc), "--org", "acme").output
    refused = run("set", "budget", "q4", str(doc), "--org", "acme", ok=False)
    assert refused.exit_code == 1 and "no change" in str(refused.exception)

    listed = run("list", "budget", "--org", "acme", "--format", "json").output
    assert [(r["name"], r["version"], r["author"]) for r in json.loads(listed)] == [("q4", 2, "ana")]
    shown = run("show", "budget", "q4", "--org", "acme", "--version", "1").output
    assert shown.startswith("# budget q4 v1 by ana") and "amount: 1000.0\n" in shown and "period: quarterly" in shown
    history = json.loads(run("history", "budget", "q4", "--org", "acme", "--format", "json").output)
    assert [(h["version"], h["comment"], h["changed"]) for h in history] == [
        (1, "plan", "alert_at_pct, amount, currency, description, end, name, period, scope, start"),
        (2, "", "amount")]
    diffed = run("diff", "budget", "q4", "--org", "acme", "--from", "1", "--to", "2").output
    assert "-amount: 1000.0\n+amount: 1200.0\n" in diffed and "changed: amount (changed)" in diffed
    assert "saved: the document of v1" in run("rollback", "budget", "q4", "--org", "acme", "--to", "1").output
    assert "are the same" in run("diff", "budget", "q4", "--org", "acme", "--from", "1", "--to", "3").output
    assert "removed budget q4 (v4)" in run("remove", "budget", "q4", "--org", "acme").output

    missing = run("show", "budget", "q4", "--org", "globex", ok=False)
    assert isinstance(missing.exception, NotFoundError) and "'globex' has no budget document 'q4'" in str(missing.exception)
    unknown = run("list", "budgets", "--org", "acme", ok=False)
    assert "unknown configuration kind 'budgets'" in str(unknown.exception)
