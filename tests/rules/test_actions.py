"""Platform actions: guardrails, dry run, approval with expiry, execution, undo, idempotency, isolation.

Budgets are hand-computed in each test; the platform is the synthetic one, whose recorded
requests show what it was asked.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.base import EntityState, PlatformWriter, WriteResult
from connectors.synthetic_platform import SyntheticPlatform
from connectors.writers import platform_writers
from workbench.errors import NotFoundError, ValidationError
from workbench.oltp import repo
from workbench.rules import actions as A

NOW = dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def state(budget="100", status="active", currency="USD") -> EntityState:
    return EntityState(status, None if budget is None else Decimal(budget),
                       None if budget is None else "daily", currency)


def plan(spec: dict, st: EntityState) -> A.Plan:
    return A.plan_action(A.parse_action(spec), st)


# -- specs and guardrails (pure) -----------------------------------------------------------

@pytest.mark.parametrize("doc, message", [
    ({"type": "pase"}, "type 'pase': the type is one of pause, resume, set_budget, change_budget"),
    ({}, "with no 'type'"),
    ({"type": "change_budget", "by_precent": -20}, "unknown field 'by_precent' (fields: floor, ceiling, currency, by_percent, by_amount)"),
    ({"type": "pause", "amount": 3}, "action 'pause': unknown field 'amount' (fields: none)"),
    ({"type": "change_budget", "by_percent": -20, "by_amount": 5}, "exactly one of by_percent"),
    ({"type": "change_budget"}, "exactly one of by_percent"),
    ({"type": "change_budget", "by_amount": 0}, "a change of 0 does nothing"),
    ({"type": "change_budget", "by_percent": -100}, "by_percent: Input should be greater than -100"),
    ({"type": "change_budget", "by_percent": 10, "floor": 500, "ceiling": 50}, "floor 500 is above ceiling 50"),
    ({"type": "set_budget", "amount": 30, "floor": 50}, "amount 30 is below floor 50; fix one of them"),
    ({"type": "set_budget", "amount": 900, "ceiling": 500}, "amount 900 is above ceiling 500"),
    ({"type": "set_budget"}, "action 'set_budget': amount: Field required"),
    ({"type": "set_budget", "amount": -5}, "amount: Input should be greater than 0"),
    ({"type": "set_budget", "amount": 5, "currency": "usd"}, "currency: String should match"),
])
def test_invalid_specs_say_what_to_fix(doc, message):
    with pytest.raises(ValidationError) as caught:
        A.parse_action(doc)
    assert message in str(caught.value)


def test_specs_round_trip_as_rule_documents():
    spec = A.parse_action({"type": "change_budget", "by_percent": -20, "floor": 50.5})
    assert A.spec_to_dict(spec) == {"type": "change_budget", "by_percent": -20, "floor": 50.5}
    assert A.parse_action(A.spec_to_dict(spec)) == spec
    assert A.parse_action(spec) is spec


@pytest.mark.parametrize("spec, budget, target, note", [
    ({"by_percent": -20, "floor": 50}, "100", "80.00", ""),
    ({"by_percent": -20, "floor": 50}, "60", "50.00", "clamped at the floor 50.00 (the change asked for 48.00)"),
    ({"by_percent": -20, "floor": 50}, "45", None, "already at or below the floor 50.00"),  # never raised by a cut
    ({"by_percent": 50, "ceiling": 500}, "400", "500.00", "clamped at the ceiling 500.00 (the change asked for 600.00)"),
    ({"by_percent": 50, "ceiling": 500}, "520", None, "already at or above the ceiling"),
    ({"by_percent": 10, "floor": 50}, "40", "44.00", ""),  # a floor does not force a rise either
    ({"by_amount": 25}, "100", "125.00", ""),
    ({"by_amount": -30, "floor": 80}, "100", "80.00", "clamped at the floor"),
    ({"by_percent": 10}, "33.33", "36.66", ""),  # 36.663
    ({"by_percent": -50}, "10.05", "5.03", ""),  # 5.025, half up
])
def test_change_budget_guardrails(spec, budget, target, note):
    p = plan({"type": "change_budget", **spec}, state(budget))
    if target is None:
        assert p.noop and p.after == p.before and p.undo is None
    else:
        assert (p.op, p.amount, p.after.budget) == ("set_budget", Decimal(target), Decimal(target))
        assert p.undo == {"type": "set_budget", "amount": float(budget) if "." in budget else int(budget)}
    assert note in p.note


def test_set_budget_pause_resume_plans():
    p = plan({"type": "set_budget", "amount": 120}, state("100"))
    assert (p.op, p.amount, p.undo) == ("set_budget", Decimal("120.00"), {"type": "set_budget", "amount": 100})
    assert plan({"type": "set_budget", "amount": 100}, state("100")).noop
    p = plan({"type": "pause"}, state("100"))
    assert (p.op, p.after.status, p.after.budget, p.undo) == ("pause", "paused", Decimal(100), {"type": "resume"})
    assert plan({"type": "pause"}, state(status="paused")).note == "already paused"
    assert plan({"type": "resume"}, state(status="paused")).undo == {"type": "pause"}
    assert plan({"type": "resume"}, state()).noop


@pytest.mark.parametrize("spec, st, message", [
    ({"type": "resume"}, state(status="archived"), "archived entities cannot be changed"),
    ({"type": "change_budget", "by_percent": -10}, state(None), "no budget of its own"),
    ({"type": "set_budget", "amount": 50, "currency": "EUR"}, state("100"), "in EUR but the entity's budget is in USD"),
    ({"type": "change_budget", "by_amount": -150}, state("100"), "from 100 to -50.00; give a floor above 0"),
    ({"type": "change_budget", "by_amount": -150, "floor": 0}, state("100"), "to 0.00"),
])
def test_plans_that_cannot_apply(spec, st, message):
    with pytest.raises(ValidationError, match=message):
        plan(spec, st)


# -- requests against the synthetic platform ----------------------------------------------

@pytest.fixture
def env(stores):
    repo.create_org(stores.db, "acme", "Acme", "USD")
    repo.create_org(stores.db, "globex", "Globex", "EUR")
    meta = platform_writers.get("meta", stores, "acme")
    assert isinstance(meta, SyntheticPlatform)
    meta.seed_entity("campaign", "c1", state("100"))
    meta.seed_entity("campaign", "c2", state("60"))
    return stores, meta


def writer_for(stores, org="acme"):
    return lambda platform: platform_writers.get(platform, stores, org)


def ask(stores, meta, spec, mode="dry_run", *, entity="c1", evaluation="ev1", now=NOW, ttl=2 * HOUR, org="acme"):
    return A.request_action(stores.db, org, rule="cpa_guardrail", evaluation_id=evaluation, platform="meta",
                            level="campaign", entity_id=entity, spec=spec, mode=mode, writer=meta,
                            now=now, approval_ttl=ttl)


CUT = {"type": "change_budget", "by_percent": -20, "floor": 50}


def test_dry_run_records_the_diff_and_calls_nothing(env):
    stores, meta = env
    r = ask(stores, meta, CUT)
    assert r.status == "dry_run" and r.kind == "change_budget"
    assert (r.before["budget"], r.after["budget"], r.undo) == (100.0, 80.0, {"type": "set_budget", "amount": 100})
    assert r.params["spec"] == CUT and r.params["mode"] == "dry_run"
    assert meta.requests() == [] and meta.read("campaign", "c1").budget == Decimal(100)
    assert ask(stores, meta, CUT).id == r.id  # the same evaluation asks again: one row
    clamped = ask(stores, meta, CUT, entity="c2")
    assert (clamped.after["budget"], clamped.params["note"]) == (50.0, "clamped at the floor 50.00 (the change asked for 48.00)")
    noop = ask(stores, meta, {"type": "resume"})
    assert (noop.status, noop.params["note"]) == ("noop", "already active")


def test_approval_executes_once(env):
    stores, meta = env
    r = ask(stores, meta, CUT, mode="approval")
    assert r.status == "pending_approval" and A._utc(r.expires_at) == NOW + 2 * HOUR
    assert meta.requests() == []
    done = A.approve(stores.db, "acme", r.id, "ana", writer_for(stores), now=NOW + HOUR)
    assert (done.status, done.decided_by, done.before["budget"], done.after["budget"]) == ("executed", "ana", 100.0, 80.0)
    assert A._utc(done.executed_at) == NOW + HOUR
    again = A.approve(stores.db, "acme", r.id, "bob", writer_for(stores), now=NOW + HOUR)
    assert (again.status, again.decided_by) == ("executed", "ana")
    assert [(q.op, q.params, q.outcome, q.idempotency_key) for q in meta.requests()] == [
        ("set_budget", {"amount": "80.00"}, "applied", r.idempotency_key)]
    assert meta.read("campaign", "c1").budget == Decimal(80)
    assert ask(stores, meta, CUT, mode="approval").id == r.id  # a retried evaluation does not ask again


def test_approval_expires(env):
    stores, meta = env
    r1 = ask(stores, meta, CUT, mode="approval")
    r2 = ask(stores, meta, {"type": "pause"}, mode="approval", entity="c2")
    assert A.expire_pending(stores.db, "acme", NOW + HOUR) == 0
    assert A.expire_pending(stores.db, "acme", NOW + 2 * HOUR) == 2  # expires_at is inclusive
    assert set(A.list_requests(stores.db, "acme")["status"]) == {"expired"}
    with pytest.raises(ValidationError, match=f"action request {r1.id} is expired"):
        A.approve(stores.db, "acme", r1.id, "ana", writer_for(stores), now=NOW)
    r3 = ask(stores, meta, CUT, mode="approval", evaluation="ev2")  # not yet swept: approve finds it out
    with pytest.raises(ValidationError, match="expired at 2026-11-25 09:00 UTC and was not applied"):
        A.approve(stores.db, "acme", r3.id, "ana", writer_for(stores), now=NOW + 3 * HOUR)
    assert A.get_request(stores.db, "acme", r3.id).status == "expired"
    assert meta.requests() == [] and r2.status == "pending_approval"


def test_reject(env):
    stores, meta = env
    r = ask(stores, meta, {"type": "pause"}, mode="approval")
    done = A.reject(stores.db, "acme", r.id, "ana", now=NOW, reason="launch week")
    assert (done.status, done.decided_by, done.params["reason"]) == ("rejected", "ana", "launch week")
    assert A.reject(stores.db, "acme", r.id, "bob").decided_by == "ana"
    with pytest.raises(ValidationError, match="is rejected; only a request pending approval can be approved"):
        A.approve(stores.db, "acme", r.id, "ana", writer_for(stores), now=NOW)
    dry = ask(stores, meta, CUT)
    with pytest.raises(ValidationError, match="is dry_run; only a request pending approval can be rejected"):
        A.reject(stores.db, "acme", dry.id, "ana")
    assert meta.requests() == [] and meta.read("campaign", "c1").status == "active"


def test_execute_and_undo_restore_the_budget_and_the_status(env):
    stores, meta = env
    cut = ask(stores, meta, CUT, mode="execute")
    assert (cut.status, cut.decided_by, cut.after["budget"]) == ("executed", "rule:cpa_guardrail", 80.0)
    assert cut.undo == {"type": "set_budget", "amount": 100}
    back = A.undo(stores.db, "acme", cut.id, "ana", writer_for(stores), now=NOW + HOUR)
    assert (back.status, back.kind, back.decided_by, back.params["undo_of"]) == ("executed", "set_budget", "ana", cut.id)
    assert (back.before["budget"], back.after["budget"], back.undo) == (80.0, 100.0, {"type": "set_budget", "amount": 80})
    assert meta.read("campaign", "c1").budget == Decimal(100)
    assert A.get_request(stores.db, "acme", cut.id).params["undone_by"] == back.id
    assert A.undo(stores.db, "acme", cut.id, "bob", writer_for(stores)).id == back.id  # once

    paused = ask(stores, meta, {"type": "pause"}, mode="execute", entity="c2")
    assert meta.read("campaign", "c2").status == "paused"
    A.undo(stores.db, "acme", paused.id, "ana", writer_for(stores))
    assert meta.read("campaign", "c2").status == "active"
    assert [q.op for q in meta.requests()] == ["set_budget", "set_budget", "pause", "resume"]
    with pytest.raises(ValidationError, match="is dry_run; only an executed action can be undone"):
        A.undo(stores.db, "acme", ask(stores, meta, CUT, evaluation="ev9").id, "ana", writer_for(stores))


def test_changes_made_meanwhile_are_not_overwritten(env):
    stores, meta = env
    cut = ask(stores, meta, CUT, mode="execute")
    meta.set_budget("campaign", "c1", Decimal(90), "someone-in-the-ui")
    with pytest.raises(ValidationError, match="it left active, budget 80.00 USD, it is now active, budget 90.00 USD"):
        A.undo(stores.db, "acme", cut.id, "ana", writer_for(stores))
    assert meta.read("campaign", "c1").budget == Decimal(90)

    r = ask(stores, meta, CUT, mode="approval", entity="c2")  # a stale diff fails instead of applying
    meta.set_budget("campaign", "c2", Decimal(150), "someone-else-in-the-ui")
    done = A.approve(stores.db, "acme", r.id, "ana", writer_for(stores), now=NOW + HOUR)
    assert done.status == "failed" and "changed since the action was planned: it was active, budget 60.00 USD, it is now active, budget 150.00 USD" in done.error
    assert meta.read("campaign", "c2").budget == Decimal(150)


class CrashAfterCall(PlatformWriter):
    """Calls the platform, then dies before the caller can record the result."""

    def __init__(self, inner: PlatformWriter) -> None:
        self.inner, self.platform = inner, inner.platform

    def read(self, level, entity_id):
        return self.inner.read(level, entity_id)

    def pause(self, level, entity_id, idempotency_key) -> WriteResult:
        raise NotImplementedError

    resume = pause

    def set_budget(self, level, entity_id, amount, idempotency_key) -> WriteResult:
        self.inner.set_budget(level, entity_id, amount, idempotency_key)
        raise SystemExit("killed between the platform call and the commit")


def test_a_crash_after_the_platform_call_does_not_apply_twice(env):
    stores, meta = env
    with pytest.raises(SystemExit):
        ask(stores, CrashAfterCall(meta), CUT, mode="execute")
    (row,) = A.list_requests(stores.db, "acme").iter_rows(named=True)
    assert row["status"] == "approved" and meta.read("campaign", "c1").budget == Decimal(80)
    done = ask(stores, meta, CUT, mode="execute")  # the evaluation is retried
    assert (done.id, done.status, done.before["budget"], done.after["budget"]) == (row["id"], "executed", 100.0, 80.0)
    assert meta.read("campaign", "c1").budget == Decimal(80)  # not 64
    assert [q.outcome for q in meta.requests()] == ["applied", "replayed"]
    assert done.undo == {"type": "set_budget", "amount": 100}


def test_transient_failures_are_retried_by_the_next_attempt_permanent_ones_are_not(env):
    stores, meta = env
    meta.fail_next("transient", after_apply=True)  # applied, but the answer was lost
    r = ask(stores, meta, CUT, mode="execute")
    assert (r.status, r.params["retryable"]) == ("failed", True) and "timed out" in r.error
    assert meta.read("campaign", "c1").budget == Decimal(80)
    r = ask(stores, meta, CUT, mode="execute")
    assert (r.status, r.error, "retryable" in r.params) == ("executed", None, False)
    assert meta.read("campaign", "c1").budget == Decimal(80)

    meta.fail_next("permanent", message="ad account disabled")
    p = ask(stores, meta, {"type": "pause"}, mode="execute", entity="c2")
    assert (p.status, p.error, p.params["retryable"]) == ("failed", "ad account disabled", False)
    assert ask(stores, meta, {"type": "pause"}, mode="execute", entity="c2").status == "failed"
    assert meta.read("campaign", "c2").status == "active"
    assert [q.outcome for q in meta.requests()] == ["applied", "replayed", "failed"]

    unknown = ask(stores, meta, {"type": "pause"}, mode="execute", entity="nope")
    assert unknown.status == "failed" and "meta has no campaign 'nope'" in unknown.error
    refused = ask(stores, meta, {"type": "change_budget", "by_amount": -500}, mode="approval")
    assert refused.status == "failed" and "give a floor above 0" in refused.error


def test_another_organisation_cannot_see_or_decide(env):
    stores, meta = env
    r = ask(stores, meta, CUT, mode="approval")
    done = ask(stores, meta, {"type": "pause"}, mode="execute", entity="c2")
    for call in (lambda: A.get_request(stores.db, "globex", r.id),
                 lambda: A.approve(stores.db, "globex", r.id, "eve", writer_for(stores, "globex"), now=NOW),
                 lambda: A.reject(stores.db, "globex", r.id, "eve"),
                 lambda: A.undo(stores.db, "globex", done.id, "eve", writer_for(stores, "globex"))):
        with pytest.raises(NotFoundError, match="action request .* not found in 'globex'"):
            call()
    assert A.list_requests(stores.db, "globex").is_empty()
    assert A.expire_pending(stores.db, "globex", NOW + 10 * HOUR) == 0
    assert A.get_request(stores.db, "acme", r.id).status == "pending_approval"
    with pytest.raises(NotFoundError, match="organisation 'initech' does not exist"):
        ask(stores, meta, CUT, org="initech")


def test_list_requests_and_argument_checks(env):
    stores, meta = env
    ask(stores, meta, CUT)
    ask(stores, meta, {"type": "pause"}, mode="approval", entity="c2", now=NOW + HOUR)
    df = A.list_requests(stores.db, "acme")
    assert df.columns[:9] == ["id", "created_at", "rule", "evaluation_id", "platform", "level", "entity_id", "kind", "status"]
    assert df.select("entity_id", "kind", "status", "before_budget", "after_budget", "after_status").rows() == [
        ("c1", "change_budget", "dry_run", 100.0, 80.0, "active"),
        ("c2", "pause", "pending_approval", 60.0, 60.0, "paused")]
    assert A.list_requests(stores.db, "acme", status="pending_approval")["entity_id"].to_list() == ["c2"]
    assert A.list_requests(stores.db, "acme", status="executed").is_empty()

    with pytest.raises(ValidationError, match="mode 'live' is not one of dry_run, approval, execute"):
        ask(stores, meta, CUT, mode="live")
    with pytest.raises(ValidationError, match="apply to campaign, ad_group, ad, not account"):
        A.request_action(stores.db, "acme", rule=None, evaluation_id="x", platform="meta", level="account",
                         entity_id="a1", spec=CUT, writer=meta)
    with pytest.raises(ValueError, match="writer for ttd given for a meta action"):
        A.request_action(stores.db, "acme", rule=None, evaluation_id="x", platform="meta", level="campaign",
                         entity_id="c1", spec=CUT, writer=platform_writers.get("ttd", stores, "acme"))


@pytest.mark.postgres
def test_the_lifecycle_on_postgres(tmp_path, pg_url):
    from workbench.oltp.db import Oltp

    db = Oltp(pg_url)
    try:
        db.migrate()
        repo.create_org(db, "acme", "Acme", "USD")
        meta = SyntheticPlatform(tmp_path / "acme.sqlite", "acme", "meta")
        meta.seed_entity("campaign", "c1", state("100"))
        kw = dict(rule="r", evaluation_id="ev1", platform="meta", level="campaign", entity_id="c1", spec=CUT,
                  mode="approval", writer=meta, now=NOW, approval_ttl=2 * HOUR)
        r = A.request_action(db, "acme", **kw)
        assert A.request_action(db, "acme", **kw).id == r.id
        assert A.expire_pending(db, "acme", NOW + HOUR) == 0
        done = A.approve(db, "acme", r.id, "ana", lambda p: meta, now=NOW + HOUR)
        assert (done.status, done.after["budget"], A._utc(done.executed_at)) == ("executed", 80.0, NOW + HOUR)
        A.undo(db, "acme", r.id, "ana", lambda p: meta, now=NOW + 2 * HOUR)
        assert meta.read("campaign", "c1").budget == Decimal(100)
        late = A.request_action(db, "acme", **{**kw, "evaluation_id": "ev2"})
        assert A.expire_pending(db, "acme", NOW + 2 * HOUR) == 1
        assert A.get_request(db, "acme", late.id).status == "expired"
        assert sorted(A.list_requests(db, "acme")["status"]) == ["executed", "executed", "expired"]
    finally:
        db.dispose()
