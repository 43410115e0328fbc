"""Rule semantics on hand-computed fixtures: windows, settled days, scope, nested logic,
transitions, cooldown, the action cap, records and backtests (see rule_helpers.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from polars.testing import assert_frame_equal
from rule_helpers import AS_OF

from workbench.errors import FormulaError, ValidationError
from workbench.formulas.definitions import load_catalog
from workbench.oltp.models import Alert, RuleEvaluation
from workbench.rules import engine
from workbench.rules.definitions import StoredRule, parse_rule
from workbench.rules.windows import resolve

NOW = dt.datetime(2026, 10, 20, 7, 0, tzinfo=dt.UTC)


def rule(**fields):
    return parse_rule({"name": "r", **fields})


def matched(stores, r, as_of=AS_OF, eng="sql"):
    frame, _ = engine.matches(stores, "acme", load_catalog(stores.db, "acme"), r, as_of, eng)
    return frame


def names(frame):
    return sorted(frame.filter("matched")["campaign_name"].to_list())


def test_windows_are_relative_to_the_evaluation_date():
    d = dt.date
    assert (resolve("today", AS_OF).start, resolve("today", AS_OF).end) == (AS_OF, AS_OF)
    assert resolve("yesterday", AS_OF).start == d(2026, 10, 19)
    last = resolve("last_7d", AS_OF)
    assert (last.start, last.end) == (d(2026, 10, 13), d(2026, 10, 19))
    prev = resolve("previous_7d", AS_OF)
    assert (prev.start, prev.end) == (d(2026, 10, 6), d(2026, 10, 12))
    assert resolve("month_to_date", AS_OF).start == d(2026, 10, 1)
    assert resolve("lifetime", AS_OF).start is None
    with pytest.raises(ValueError, match="unknown window 'last_week'"):
        resolve("last_week", AS_OF)


def test_values_per_window_and_engine(rule_stores):
    r = rule(condition="cpa[last_7d] > 30", show=["cpa[last_7d]", "spend[last_7d]", "spend[previous_7d]",
                                                   "spend[yesterday]", "spend[month_to_date]", "spend[today]"])
    frame = matched(rule_stores, r).sort("campaign_id")
    assert frame["spend[last_7d]"].to_list() == [700.0, 70.0, 300.0]  # Gamma: 6 days x 50 + 0
    assert frame["spend[previous_7d]"].to_list() == [700.0, 70.0, 350.0]
    assert frame["spend[yesterday]"].to_list() == [100.0, 10.0, 0.0]
    assert frame["spend[month_to_date]"].to_list() == [1900.0, 190.0, 900.0]
    assert frame["spend[today]"].to_list() == [0.0, 0.0, 0.0]  # no data yet today: 0, not missing
    assert frame["cpa[last_7d]"].to_list() == [50.0, 10.0, 50.0]
    assert names(frame) == ["Alpha", "Gamma"]
    assert_frame_equal(frame, matched(rule_stores, r, eng="polars").sort("campaign_id"), check_exact=False)


def test_only_own_organisation(rule_stores):
    frame = matched(rule_stores, rule(condition="spend[last_7d] > 5000"))
    assert frame.height == 3 and names(frame) == []  # globex's Alpha spends 70,000 a week


def test_scope_nested_logic_and_period_over_period(rule_stores):
    assert names(matched(rule_stores, rule(condition="cpa[last_7d] > 30", scope="platform = 'meta'"))) == \
        ["Alpha", "Gamma"]
    assert names(matched(rule_stores, rule(condition="cpa[last_7d] > 30", scope="platform = 'ttd'"))) == []
    nested = rule(condition="(cpa[last_7d] > 30 OR spend[yesterday] < 20) AND NOT impressions[yesterday] = 0")
    assert names(matched(rule_stores, nested)) == ["Alpha", "Beta"]
    drop = rule(condition="ctr[yesterday] < 0.7 * ctr[previous_7d]")
    assert names(matched(rule_stores, drop)) == ["Beta"]  # 0.5% vs 2%; Gamma's CTR yesterday is null
    zero = rule(condition="impressions[yesterday] = 0 AND impressions[last_7d] > 0")
    assert names(matched(rule_stores, zero)) == ["Gamma"]
    budget = rule(condition="spend[yesterday] > 1.2 * budget[yesterday]", scope="budget_type = 'daily'")
    assert names(matched(rule_stores, budget)) == ["Alpha"]  # 100 > 96; Beta 10 < 24


def test_settled_only_ignores_days_that_may_change(rule_stores):
    r = rule(condition="spend[last_7d] > 0", show=["spend[last_7d]"], settled_only=True)
    frame = matched(rule_stores, r).sort("campaign_id")
    assert frame["spend[last_7d]"].to_list() == [400.0, 40.0, 200.0]  # 10-13 .. 10-16 only


def test_params_and_errors(rule_stores):
    r = rule(condition="cpa[last_7d] > 1.3 * target_cpa", params={"target_cpa": 30})
    assert names(matched(rule_stores, r)) == ["Alpha", "Gamma"]  # 50 > 39
    with pytest.raises(FormulaError, match=r"say over which days to look at cpa, e.g. cpa\[last_7d\]"):
        matched(rule_stores, rule(condition="cpa > 3"))
    with pytest.raises(FormulaError, match="unknown window 'lastweek'") as info:
        matched(rule_stores, rule(condition="cpa[lastweek] > 3"))
    assert info.value.column == 1
    with pytest.raises(FormulaError, match="must be true or false"):
        matched(rule_stores, rule(condition="cpa[last_7d] * 2"))
    with pytest.raises(ValidationError, match="level: Input should be"):
        parse_rule({"name": "x", "condition": "spend[today] > 1", "level": "adset"})
    with pytest.raises(ValidationError, match="not a cron expression"):
        parse_rule({"name": "x", "condition": "spend[today] > 1", "schedule": "every day"})


def _evaluate(stores, r, now=NOW, version=1):
    return engine.evaluate(stores, "acme", StoredRule(r, "org", version), as_of=AS_OF, now=now)


def test_transition_fires_once_then_waits_for_a_new_match(rule_stores):
    r = rule(condition="cpa[last_7d] > 30", trigger="transition", cooldown_hours=0)
    first = _evaluate(rule_stores, r)
    assert (first.matched.height, len(first.alerts)) == (2, 2)
    second = _evaluate(rule_stores, r, NOW + dt.timedelta(hours=1))
    assert (second.matched.height, len(second.alerts)) == (2, 0)
    assert set(second.matched["why"]) == {"still matching (fires on a new match only)"}
    stop = rule(condition="cpa[last_7d] > 30 AND platform = 'x'", trigger="transition", cooldown_hours=0)
    with pytest.raises(FormulaError):
        _evaluate(rule_stores, stop)  # a dimension at the top of a condition is refused
    # the same rule, edited so nothing matches: the states go back to "not matched"...
    none = rule(condition="cpa[last_7d] > 1000", trigger="transition", cooldown_hours=0)
    assert len(_evaluate(rule_stores, none, NOW + dt.timedelta(hours=2)).alerts) == 0
    # ...so the next match is a new false -> true transition and fires again
    assert len(_evaluate(rule_stores, r, NOW + dt.timedelta(hours=3)).alerts) == 2
    # states are per rule: another rule with the same condition fires on its own
    assert len(_evaluate(rule_stores, r.model_copy(update={"name": "other"}), NOW + dt.timedelta(hours=3)).alerts) == 2


def test_every_mode_respects_cooldown(rule_stores):
    r = rule(condition="cpa[last_7d] > 30", trigger="every", cooldown_hours=24)
    assert len(_evaluate(rule_stores, r).alerts) == 2
    cooling = _evaluate(rule_stores, r, NOW + dt.timedelta(hours=23))
    assert len(cooling.alerts) == 0 and set(cooling.matched["why"]) == {"cooling down"}
    assert len(_evaluate(rule_stores, r, NOW + dt.timedelta(hours=25)).alerts) == 2


def test_every_evaluation_is_recorded(rule_stores):
    r = rule(condition="cpa[last_7d] > 30", show=["cpa[last_7d]"])
    ev = _evaluate(rule_stores, r, version=3)
    with rule_stores.db.session() as s:
        row = s.get(RuleEvaluation, ev.id)
        alerts = s.query(Alert).filter(Alert.evaluation_id == ev.id).all()
    assert row is not None and (row.rule, row.rule_version, row.as_of, row.matched, row.fired) == ("r", 3, AS_OF, 2, 2)
    assert set(row.snapshots) == {"gold.campaign_daily"} and all(row.snapshots.values())
    values = {m["campaign_name"]: m["cpa[last_7d]"] for m in row.matches["rows"]}
    assert values == {"Alpha": 50.0, "Gamma": 50.0}
    assert sorted(a.values["cpa[last_7d]"] for a in alerts) == [50.0, 50.0]
    assert all("Alpha" in a.title or "Gamma" in a.title for a in alerts)


def test_backtest_respects_trigger_and_cooldown(rule_stores):
    catalog = load_catalog(rule_stores.db, "acme")
    r = rule(condition="spend[yesterday] > 1.2 * budget[yesterday]", trigger="every", cooldown_hours=48)
    bt = engine.backtest(rule_stores, "acme", catalog, r, dt.date(2026, 10, 2), dt.date(2026, 10, 8))
    assert bt.daily["matched"].to_list() == [1] * 7  # Alpha overspends every day
    assert bt.daily["fired"].to_list() == [1, 0, 1, 0, 1, 0, 1]  # at noon each day, 48 h cooldown
    t = rule(condition="spend[yesterday] > 1.2 * budget[yesterday]", trigger="transition")
    assert engine.backtest(rule_stores, "acme", catalog, t, dt.date(2026, 10, 2), dt.date(2026, 10, 4)
                           ).daily["fired"].to_list() == [1, 0, 0]


# -- platform actions from evaluations -------------------------------------------------------

def _platform(stores, platform="meta"):
    from connectors.writers import platform_writers

    return platform_writers.get(platform, stores, "acme")


def _seed(stores):
    from decimal import Decimal

    from connectors.base import EntityState

    meta = _platform(stores)
    meta.seed_entity("campaign", "C1", EntityState("active", Decimal("80"), "daily", "USD"))
    meta.seed_entity("campaign", "C3", EntityState("active", Decimal("60"), "daily", "USD"))
    return meta


BUDGET_CUT = {"type": "change_budget", "by_percent": -20, "floor": 50}


def test_platform_actions_are_dry_run_by_default(rule_stores):
    meta = _seed(rule_stores)
    ev = _evaluate(rule_stores, rule(condition="cpa[last_7d] > 30", actions=[BUDGET_CUT]))
    assert sorted(a["status"] for a in ev.actions) == ["dry_run", "dry_run"]
    assert meta.requests() == []  # nothing was asked of the platform
    assert meta.read("campaign", "C1").budget == 80


def test_executed_actions_apply_guardrails_and_are_recorded(rule_stores):
    from workbench.rules.actions import list_requests

    meta = _seed(rule_stores)
    ev = _evaluate(rule_stores, rule(condition="cpa[last_7d] > 30", actions=[BUDGET_CUT], mode="execute"))
    assert sorted(a["status"] for a in ev.actions) == ["executed", "executed"]
    assert meta.read("campaign", "C1").budget == 64  # 80 - 20%
    assert meta.read("campaign", "C3").budget == 50  # 60 - 20% = 48, clamped at the floor
    requests = list_requests(rule_stores.db, "acme")
    assert requests.height == 2 and set(requests["evaluation_id"]) == {ev.id}
    with rule_stores.db.session() as s:
        record = s.get(RuleEvaluation, ev.id)
    assert record is not None and len(record.actions["taken"]) == 2


def test_the_action_cap_stops_every_platform_action(rule_stores):
    meta = _seed(rule_stores)
    ev = _evaluate(rule_stores, rule(condition="cpa[last_7d] > 30", actions=[BUDGET_CUT], mode="execute",
                                     max_actions=1))
    assert ev.outcome == "capped" and ev.actions == [] and len(ev.alerts) == 2
    assert meta.requests() == []
    with rule_stores.db.session() as s:
        record = s.get(RuleEvaluation, ev.id)
    assert record is not None and "more than max_actions 1" in record.actions["skipped"][0]["reason"]


def test_account_level_rules_cannot_take_platform_actions():
    with pytest.raises(ValidationError, match="act on campaigns, ad groups or ads"):
        rule(condition="spend[yesterday] > 1", level="account", actions=[{"type": "pause"}])


def test_approval_queue_through_the_notebook_api(rule_stores):
    import workbench as wb

    meta = _seed(rule_stores)
    ws = wb.open("acme", settings=rule_stores.settings)
    ws.rules.define({"name": "cut", "condition": "cpa[last_7d] > 30", "actions": [BUDGET_CUT],
                     "mode": "approval", "approval_ttl_hours": 2})
    [ev] = ws.rules.evaluate("cut", as_of=AS_OF)
    waiting = ws.rules.actions("pending_approval")
    assert waiting.height == 2 and meta.requests() == []
    c1 = waiting.filter(waiting["entity_id"] == "C1")["id"][0]
    assert ws.rules.approve(c1).status == "executed"
    assert meta.read("campaign", "C1").budget == 64
    assert ws.rules.undo(c1).status == "executed" and meta.read("campaign", "C1").budget == 80
    c3 = waiting.filter(waiting["entity_id"] == "C3")["id"][0]
    assert ws.rules.reject(c3, reason="seasonal").status == "rejected"
    assert ws.rules.history("cut")["id"].to_list() == [ev.id]


def test_conditions_travel_as_jsonlogic(rule_stores):
    import workbench as wb

    ws = wb.open("acme", settings=rule_stores.settings)
    logic = ws.rules.to_jsonlogic("cpa_guardrail")
    assert logic == {"and": [{">": [{"var": "cpa[last_7d]"}, {"*": [1.3, {"var": "target_cpa"}]}]},
                             {">": [{"var": "spend[last_7d]"}, {"var": "min_spend"}]}]}
    text = ws.rules.from_jsonlogic(logic)
    ws.rules.define({"name": "imported", "condition": text, "params": {"target_cpa": 30, "min_spend": 0}})
    assert sorted(ws.rules.preview("imported", AS_OF)["campaign_name"]) == ["Alpha", "Gamma"]


def test_an_alert_reaches_the_inbox_once(rule_stores):
    from workbench import notify

    r = rule(condition="cpa[last_7d] > 30", show=["cpa[last_7d]"],
             actions=[{"type": "notify", "channels": ["inapp:ana"],
                       "message": "CPA {cpa[last_7d]} on {campaign_name}"}])
    ev = _evaluate(rule_stores, r)
    assert len(ev.notifications) == 1  # one digest for both alerts
    assert notify.dispatch(rule_stores, "acme", now=NOW).sent == 1
    assert notify.dispatch(rule_stores, "acme", now=NOW).sent == 0
    [message] = notify.inbox(rule_stores.db, "acme", "ana")
    text = message.title + "\n" + message.body
    assert "CPA $50.00 on Alpha" in text and "CPA $50.00 on Gamma" in text, text
    assert notify.inbox(rule_stores.db, "globex", "ana") == []


def test_a_broken_rule_is_recorded_and_does_not_stop_the_others(rule_stores):
    import workbench as wb
    from workbench.rules.api import RuleEvaluationError

    ws = wb.open("acme", settings=rule_stores.settings)
    ws.define_metric("my_cpa", "spend / conversions")
    ws.rules.define({"name": "uses_my_cpa", "condition": "my_cpa[last_7d] > 30"})
    ws.rules.define({"name": "fine", "condition": "cpa[last_7d] > 30"})
    ws.remove_metric("my_cpa")  # the rule now names a metric that is gone
    with pytest.raises(RuleEvaluationError, match="uses_my_cpa: .*unknown metric 'my_cpa'") as info:
        ws.rules.evaluate(as_of=AS_OF)
    assert [ev.rule for ev in info.value.results] == ["fine"]
    history = ws.rules.history()
    assert dict(zip(history["rule"], history["outcome"], strict=True)) == {"fine": "ok", "uses_my_cpa": "failed"}
