"""Evaluate rules: preview (what matches now), evaluate (record, alert, act) and backtest.

One query per rule and date computes every window of the condition for every entity
(vectorised over gold); deciding who fires (transition, cooldown) is a join with the stored
rule states, also vectorised. Everything an evaluation decides is written in one OLTP
transaction: the evaluation record, the alerts, the notifications (outbox) and the new rule
states; platform actions run after that commit, each idempotent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import select

from workbench.errors import WorkbenchError
from workbench.formulas import plan as planner
from workbench.formulas.catalog import Catalog
from workbench.formulas.display import format_value
from workbench.formulas.units import default_format
from workbench.oltp.models import RuleState
from workbench.rules.compile import MATCH, CompiledRule, compile_rule
from workbench.rules.definitions import StoredRule
from workbench.rules.model import Rule

if TYPE_CHECKING:
    from workbench.stores import Stores


def _run(stores: Stores, org_id: str, compiled: CompiledRule, engine: str) -> pl.DataFrame:
    plan = compiled.plan
    if engine == "sql":
        frame = planner.run_sql(plan, lambda sql, params: stores.warehouse.query(sql, params, org=org_id,
                                                                                 trusted=True))
    else:
        frame = planner.run_polars(plan, lambda t: stores.lake.scan(t).filter(pl.col("org_id") == org_id))
    key = pl.concat_str([pl.col(d).fill_null("") for d in compiled.id_dims], separator="/")
    return frame.with_columns(entity=key, matched=pl.col(MATCH).fill_null(False))


def matches(stores: Stores, org_id: str, catalog: Catalog, rule: Rule, as_of: dt.date,
            engine: str = "sql") -> tuple[pl.DataFrame, CompiledRule]:
    """Every entity in scope with the rule's values on ``as_of`` and whether it matches."""
    compiled = compile_rule(catalog, rule, as_of)
    return _run(stores, org_id, compiled, engine), compiled


def states(stores: Stores, org_id: str, rule: str) -> pl.DataFrame:
    """The stored state per entity of a rule: did it match last time, when did it last fire."""
    with stores.db.session() as s:
        rows = s.execute(select(RuleState.entity, RuleState.matched, RuleState.last_fired_at)
                         .where(RuleState.org_id == org_id, RuleState.rule == rule)).all()
    return pl.DataFrame([{"entity": e, "was_matched": m, "last_fired_at": _utc(f)} for e, m, f in rows],
                        schema={"entity": pl.String, "was_matched": pl.Boolean,
                                "last_fired_at": pl.Datetime("us", "UTC")})


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes
    return value


def decide(frame: pl.DataFrame, prior: pl.DataFrame, rule: Rule, now: dt.datetime) -> pl.DataFrame:
    """Add ``fires`` and ``why`` to a matches frame given the prior states (vectorised).

    A matching entity fires unless the trigger is ``transition`` and it matched last time, or
    it fired less than ``cooldown_hours`` ago.
    """
    joined = frame.join(prior, on="entity", how="left")
    cooling = (pl.col("last_fired_at").is_not_null()
               & (pl.lit(now) - pl.col("last_fired_at") < pl.duration(seconds=rule.cooldown_hours * 3600)))
    repeat = pl.col("was_matched").fill_null(False) if rule.trigger == "transition" else pl.lit(False)
    why = (pl.when(~pl.col("matched")).then(pl.lit("no match"))
           .when(repeat).then(pl.lit("still matching (fires on a new match only)"))
           .when(cooling).then(pl.lit("cooling down"))
           .otherwise(pl.lit("fires")))
    return joined.with_columns(why=why).with_columns(fires=pl.col("why") == "fires")


def formats(compiled: CompiledRule) -> dict[str, str]:
    return {o.label: o.format or default_format(o.unit, o.vtype) for o in compiled.plan.outputs}


def render(template: str | None, row: dict[str, Any], fmt: dict[str, str], currency: str, rule: Rule) -> str:
    """A message with ``{name}`` placeholders filled from the match (values formatted by unit)."""
    if not template:
        values = ", ".join(f"{k} = {format_value(row.get(k), fmt.get(k, 'number'), currency)}"
                           for k in fmt if k != MATCH)
        label = row.get("campaign_name") or row.get("ad_name") or row.get("account_name") or row.get("entity")
        return f"{rule.title or rule.name}: {label} ({values})"
    import re

    def fill(match: re.Match[str]) -> str:
        key = match.group(1).strip().lower()
        if key not in row:
            return match.group(0)
        return format_value(row[key], fmt.get(key, "text"), currency) if key in fmt else str(row[key])
    return re.sub(r"\{([^{}]+)\}", fill, template)


@dataclass
class BacktestResult:
    """Per day and entity: matched, fired (respecting trigger and cooldown), and actions."""

    detail: pl.DataFrame
    daily: pl.DataFrame
    actions: list[str] = field(default_factory=list)


def backtest(stores: Stores, org_id: str, catalog: Catalog, rule: Rule, start: dt.date, end: dt.date,
             engine: str = "sql") -> BacktestResult:
    """Evaluate ``rule`` as of each day of ``start..end`` (one query per day), simulating states."""
    prior = pl.DataFrame(schema={"entity": pl.String, "was_matched": pl.Boolean,
                                 "last_fired_at": pl.Datetime("us", "UTC")})
    days: list[pl.DataFrame] = []
    day = start
    while day <= end:
        frame, _ = matches(stores, org_id, catalog, rule, day, engine)
        now = dt.datetime.combine(day, dt.time(12), dt.UTC)
        decided = decide(frame, prior, rule, now)
        days.append(decided.with_columns(as_of=pl.lit(day)).drop("was_matched", "last_fired_at"))
        fired_now = decided.filter("fires").select("entity", last=pl.lit(now))
        prior = (decided.select("entity", was_matched="matched")
                 .join(prior.select("entity", "last_fired_at"), on="entity", how="full", coalesce=True)
                 .join(fired_now, on="entity", how="left")
                 .select("entity", pl.col("was_matched").fill_null(False),
                         last_fired_at=pl.coalesce("last", "last_fired_at")))
        day += dt.timedelta(days=1)
    detail = pl.concat(days, how="diagonal_relaxed") if days else pl.DataFrame()
    actions: list[str] = [a.type for a in rule.actions]
    if detail.is_empty():
        daily = pl.DataFrame(schema={"as_of": pl.Date, "matched": pl.UInt32, "fired": pl.UInt32})
    else:
        daily = detail.group_by("as_of").agg(matched=pl.col("matched").sum(), fired=pl.col("fires").sum()).sort("as_of")
        detail = detail.filter("matched").select("as_of", *[c for c in detail.columns if c != "as_of"])
    return BacktestResult(detail, daily, actions)


@dataclass
class Evaluation:
    """What one evaluation of one rule saw and did."""

    id: str
    rule: str
    version: int
    as_of: dt.date
    outcome: str  # ok / capped / failed
    entities: int
    matched: pl.DataFrame  # matching entities with values, fires and why
    alerts: list[str] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"<Evaluation {self.rule} v{self.version} as of {self.as_of}: {self.entities} entities, "
                f"{self.matched.height} matched, {len(self.alerts)} fired, {len(self.actions)} actions, "
                f"{self.outcome}>")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        out[k] = v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v
    return out


def _today(tz: str) -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(tz)).date()


def evaluate(stores: Stores, org_id: str, stored: StoredRule, *, as_of: dt.date | None = None,
             now: dt.datetime | None = None, engine: str = "sql") -> Evaluation:
    """Evaluate one rule for the organisation: record it, raise alerts, queue notifications, act.

    ``as_of`` is the "today" of the windows (default: today in the organisation's time zone).
    """
    from workbench.formulas.definitions import load_catalog
    from workbench.oltp import repo
    from workbench.oltp.models import Alert, RuleEvaluation
    from workbench.settings import new_id

    rule = stored.rule
    org = repo.get_org(stores.db, org_id)
    as_of = as_of or _today(org.timezone)
    now = now or dt.datetime.now(dt.UTC)
    catalog = load_catalog(stores.db, org_id)
    try:
        frame, compiled = matches(stores, org_id, catalog, rule, as_of, engine)
    except WorkbenchError as exc:
        # a rule that cannot be evaluated (a metric removed, the engine down) leaves a record
        with stores.db.session() as s:
            s.add(RuleEvaluation(id=new_id(), org_id=org_id, rule=rule.name, rule_version=stored.version,
                                 as_of=as_of, snapshots={}, evaluated_at=now, matches={"rows": []}, actions={},
                                 outcome="failed", error=str(exc)[:4000]))
        raise
    decided = decide(frame, states(stores, org_id, rule.name), rule, now)
    fmt = formats(compiled)
    matched = decided.filter("matched").drop("was_matched", "last_fired_at", MATCH)
    fired = matched.filter("fires")
    platform_actions = [a for a in rule.actions if a.is_platform]
    capped = bool(platform_actions) and fired.height > rule.max_actions
    evaluation_id = new_id()
    snapshots = {g.table: stores.lake.snapshot_id(g.table) for g in compiled.plan.groups}
    rows = [_jsonable(r) for r in matched.iter_rows(named=True)]
    result = Evaluation(evaluation_id, rule.name, stored.version, as_of, "capped" if capped else "ok",
                        frame.height, matched)
    with stores.db.session() as s:
        s.add(RuleEvaluation(id=evaluation_id, org_id=org_id, rule=rule.name, rule_version=stored.version,
                             as_of=as_of, snapshots=snapshots, evaluated_at=now, matched=matched.height,
                             fired=fired.height, matches={"rows": rows}, actions={}, outcome=result.outcome))
        s.flush()
        items = []
        for row in fired.iter_rows(named=True):
            alert_id = new_id()
            title = render(None, row, fmt, org.currency, rule)
            s.add(Alert(id=alert_id, org_id=org_id, rule=rule.name, evaluation_id=evaluation_id,
                        entity=row["entity"], values=_jsonable({k: row[k] for k in compiled.shown}),
                        title=title[:400], body=rule.description, created_at=now))
            result.alerts.append(alert_id)
            items.append(row)
        result.notifications = _queue_notifications(s, org_id, rule, evaluation_id, items, fmt, org.currency, now)
        for row in decided.iter_rows(named=True):
            last = now if row["fires"] else row["last_fired_at"]
            s.merge(RuleState(org_id=org_id, rule=rule.name, entity=row["entity"], matched=row["matched"],
                              last_fired_at=last, updated_at=now))
    if platform_actions and not capped and fired.height:
        result.actions = _platform_actions(stores, org_id, rule, evaluation_id, fired, now)
    if result.actions or capped:
        skipped = [] if not capped else [{"reason": f"{fired.height} entities fired, more than max_actions "
                                          f"{rule.max_actions}: no platform action was taken"}]
        with stores.db.session() as s:
            ev = s.get(RuleEvaluation, evaluation_id)
            assert ev is not None
            ev.actions = {"taken": result.actions, "skipped": skipped}
    return result


def _queue_notifications(session: Any, org_id: str, rule: Rule, evaluation_id: str, fired: list[dict[str, Any]],
                         fmt: dict[str, str], currency: str, now: dt.datetime) -> list[str]:
    """One digest per channel target and evaluation, in the caller's transaction (the outbox)."""
    if not fired or not any(a.type in ("notify", "webhook") for a in rule.actions):
        return []
    from workbench.notify.outbox import enqueue

    ids = []
    for i, action in enumerate(rule.actions):
        if action.type not in ("notify", "webhook"):
            continue
        items = [{"title": render(action.message, row, fmt, currency, rule), "text": rule.description,
                  "values": {k: format_value(row[k], fmt.get(k, "number"), currency) for k in fmt if k != MATCH}}
                 for row in fired]
        payload = {"title": f"{rule.title or rule.name}: {len(fired)} match{'es' if len(fired) > 1 else ''}",
                   "items": items, "org": org_id, "rule": rule.name, "link": None}
        targets = [tuple(c.split(":", 1)) for c in action.channels] if action.type == "notify" else \
            [("webhook", action.target or "")]
        for channel, target in targets:
            row = enqueue(session, org_id, channel, target, payload, f"{evaluation_id}:{i}:{channel}:{target}",
                          not_before=now)
            ids.append(row.id)
    return ids


def _platform_actions(stores: Stores, org_id: str, rule: Rule, evaluation_id: str, fired: pl.DataFrame,
                      now: dt.datetime) -> list[dict[str, Any]]:
    """Each fired entity's platform actions, in the rule's mode (dry run, approval or execute)."""
    from connectors.writers import platform_writers
    from workbench.rules.actions import request_action

    taken = []
    for row in fired.iter_rows(named=True):
        for action in rule.actions:
            if not action.is_platform:
                continue
            try:
                writer = platform_writers.get(row["platform"], stores, org_id)
            except KeyError:
                taken.append({"id": None, "entity": row["entity"], "kind": action.type, "status": "failed",
                              "error": f"no write interface for platform '{row['platform']}'"})
                continue
            req = request_action(stores.db, org_id, rule=rule.name, evaluation_id=evaluation_id,
                                 platform=row["platform"], level=rule.level, entity_id=row[rule.entity_id],
                                 spec=action.spec(), mode=rule.mode, writer=writer, now=now,
                                 approval_ttl=dt.timedelta(hours=rule.approval_ttl_hours))
            taken.append({"id": req.id, "entity": row["entity"], "kind": req.kind, "status": req.status,
                          "error": req.error})
    return taken


def matches_many(stores: Stores, org_id: str, catalog: Catalog, rules: list[Rule], as_of: dt.date,
                 engine: str = "sql") -> pl.DataFrame:
    """Entities of one level with one boolean column per rule (``<rule>:matched``), one scan."""
    from workbench.rules.compile import compile_many

    compiled = compile_many(catalog, rules, as_of)
    if engine == "sql":
        return planner.run_sql(compiled.plan, lambda sql, params: stores.warehouse.query(
            sql, params, org=org_id, trusted=True))
    return planner.run_polars(compiled.plan, lambda t: stores.lake.scan(t).filter(pl.col("org_id") == org_id))
