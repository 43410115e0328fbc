"""``ws.rules``: the rule operations of one organisation, for notebooks and the CLI."""

from __future__ import annotations

import builtins
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import select

from workbench.auth.context import WorkspaceAccessor
from workbench.auth.permissions import requires
from workbench.errors import ValidationError, WorkbenchError
from workbench.formulas.definitions import load_catalog
from workbench.oltp.models import ConfigVersion, RuleEvaluation
from workbench.rules import definitions, engine
from workbench.rules.definitions import StoredRule
from workbench.rules.model import Rule

if TYPE_CHECKING:
    pass


class RuleEvaluationError(WorkbenchError):
    """Some rules could not be evaluated (each failure is recorded); the others ran."""

    def __init__(self, results: list[engine.Evaluation], failures: list[str]) -> None:
        self.results = results
        self.failures = failures
        super().__init__(f"{len(failures)} rule(s) failed, {len(results)} evaluated: " + "; ".join(failures))


def read_document(doc: dict[str, Any] | str | Path | Rule) -> dict[str, Any] | Rule:
    """A rule given as a dict, a Rule, YAML text or a YAML file path."""
    from workbench.config_service import read_document as read_yaml

    return doc if isinstance(doc, (dict, Rule)) else read_yaml(doc)


class Rules(WorkspaceAccessor):
    """Rules of one organisation: list, define, validate, preview, backtest, evaluate, history."""

    def _stored(self, rule: str | dict[str, Any] | Rule | Path) -> StoredRule:
        if isinstance(rule, str) and "\n" not in rule and not rule.endswith((".yaml", ".yml")):
            return definitions.get_rule(self.ws.stores.db, self.org_id, rule)
        parsed = definitions.validate(self.ws.stores.db, self.org_id, read_document(rule))
        return StoredRule(parsed, "draft", 0)

    @requires("data.read")
    def list(self) -> pl.DataFrame:
        """Every rule: the pack's and the organisation's own, with version and whether enabled."""
        rows = [{"name": n, "title": r.rule.title, "enabled": r.rule.enabled, "level": r.rule.level,
                 "origin": r.origin, "version": r.version, "schedule": r.rule.schedule,
                 "condition": r.rule.condition}
                for n, r in sorted(definitions.load_rules(self.ws.stores.db, self.org_id).items())]
        return pl.DataFrame(rows)

    @requires("data.read")
    def show(self, name: str) -> Rule:
        return definitions.get_rule(self.ws.stores.db, self.org_id, name).rule

    @requires("data.read")
    def validate(self, doc: dict[str, Any] | str | Path | Rule) -> Rule:
        """Check a rule document completely without saving it."""
        return definitions.validate(self.ws.stores.db, self.org_id, read_document(doc))

    @requires("config.write")
    def define(self, doc: dict[str, Any] | str | Path | Rule, *, comment: str = "") -> int:
        """Validate and save a rule (a new version); returns the version number."""
        from workbench import config_service

        row = definitions.define(self.ws.stores.db, self.org_id, read_document(doc), comment=comment,
                                 author=self.ctx.author)
        config_service.audit_version(self.ws.stores.db, self.org_id, "rule", row.name, row.version,
                                     actor=self.ctx.actor)
        return row.version

    @requires("config.write")
    def enable(self, name: str, enabled: bool = True, *, comment: str = "") -> int:
        """Save a new version of a rule (the pack's, or the organisation's) with ``enabled`` set."""
        rule = self.show(name).model_copy(update={"enabled": enabled})
        return self.define(rule, comment=comment or ("enabled" if enabled else "disabled"))

    @requires("data.read")
    def preview(self, rule: str | dict[str, Any] | Rule | Path, as_of: dt.date | str | None = None,
                *, engine_name: str = "sql") -> pl.DataFrame:
        """Entities that match now, with the values that made them match and whether they would fire."""
        stored = self._stored(rule)
        day = _date(as_of) or engine._today(self.ws.org.timezone)
        frame, _ = engine.matches(self.ws.stores, self.org_id, load_catalog(self.ws.stores.db, self.org_id),
                                  stored.rule, day, engine_name)
        decided = engine.decide(frame, engine.states(self.ws.stores, self.org_id, stored.rule.name), stored.rule,
                                dt.datetime.now(dt.UTC))
        return decided.filter("matched").drop("was_matched", "last_fired_at", engine.MATCH, "matched")

    @requires("data.read")
    def backtest(self, rule: str | dict[str, Any] | Rule | Path, start: dt.date | str, end: dt.date | str,
                 *, engine_name: str = "sql") -> engine.BacktestResult:
        """On which days each entity would have matched and fired (trigger and cooldown respected)."""
        s, e = _date(start), _date(end)
        assert s is not None and e is not None
        if e < s:
            raise ValidationError(f"the end date {e} is before the start date {s}")
        stored = self._stored(rule)
        return engine.backtest(self.ws.stores, self.org_id, load_catalog(self.ws.stores.db, self.org_id),
                               stored.rule, s, e, engine_name)

    @requires("data.write")
    def evaluate(self, name: str | None = None, as_of: dt.date | str | None = None) -> builtins.list[engine.Evaluation]:
        """Evaluate one rule, or every enabled rule: record, alert, queue notifications, act."""
        rules = definitions.load_rules(self.ws.stores.db, self.org_id)
        chosen = [rules[name]] if name else [r for r in rules.values() if r.rule.enabled]
        if name and name not in rules:
            definitions.get_rule(self.ws.stores.db, self.org_id, name)  # raises with the list of rules
        if name:
            return [engine.evaluate(self.ws.stores, self.org_id, chosen[0], as_of=_date(as_of))]
        results, failures = [], []
        for stored in chosen:  # one broken rule does not stop the others; its failure is recorded
            try:
                results.append(engine.evaluate(self.ws.stores, self.org_id, stored, as_of=_date(as_of)))
            except WorkbenchError as exc:
                failures.append(f"{stored.rule.name}: {exc}")
        if failures:
            raise RuleEvaluationError(results, failures)
        return results

    @requires("data.read")
    def history(self, name: str | None = None, limit: int = 50) -> pl.DataFrame:
        """Recorded evaluations, newest first."""
        query = select(RuleEvaluation).where(RuleEvaluation.org_id == self.org_id)
        if name:
            query = query.where(RuleEvaluation.rule == name)
        with self.ws.stores.db.session() as s:
            rows = list(s.scalars(query.order_by(RuleEvaluation.evaluated_at.desc()).limit(limit)))
        return pl.DataFrame([{"id": r.id, "rule": r.rule, "version": r.rule_version, "as_of": r.as_of,
                              "evaluated_at": r.evaluated_at, "matched": r.matched, "fired": r.fired,
                              "outcome": r.outcome, "actions": len((r.actions or {}).get("taken", []))}
                             for r in rows],
                            schema={"id": pl.String, "rule": pl.String, "version": pl.Int64, "as_of": pl.Date,
                                    "evaluated_at": pl.Datetime("us"), "matched": pl.Int64, "fired": pl.Int64,
                                    "outcome": pl.String, "actions": pl.Int64})

    # -- JsonLogic, for visual query builders -------------------------------------------------

    @requires("data.read")
    def to_jsonlogic(self, name: str) -> dict[str, Any]:
        """A rule's condition as JsonLogic (where it fits; otherwise a FormulaError says what does not)."""
        from workbench.rules.jsonlogic import to_jsonlogic

        return to_jsonlogic(self.show(name).condition)

    @staticmethod
    def from_jsonlogic(logic: dict[str, Any] | str) -> str:
        """JsonLogic from a query builder -> condition text for a rule document."""
        from workbench.rules.jsonlogic import from_jsonlogic

        return from_jsonlogic(logic)

    # -- platform actions waiting for people ------------------------------------------------

    @requires("data.read")
    def actions(self, status: str | None = None) -> pl.DataFrame:
        """Platform action requests (dry runs, waiting for approval, executed...), with before/after."""
        from workbench.rules.actions import expire_pending, list_requests

        expire_pending(self.ws.stores.db, self.org_id)
        return list_requests(self.ws.stores.db, self.org_id, status)

    def _writer_for(self) -> Any:
        from connectors.writers import platform_writers

        return lambda platform: platform_writers.get(platform, self.ws.stores, self.org_id)

    @requires("actions.decide")
    def approve(self, request_id: str, user: str | None = None) -> Any:
        """Approve a waiting action: it runs now, unless it expired or the entity changed meanwhile."""
        from workbench.rules.actions import approve

        return approve(self.ws.stores.db, self.org_id, request_id, user or self.ctx.author, self._writer_for(),
                       actor=None if user else self.ctx.actor)

    @requires("actions.decide")
    def reject(self, request_id: str, user: str | None = None, reason: str | None = None) -> Any:
        from workbench.rules.actions import reject

        return reject(self.ws.stores.db, self.org_id, request_id, user or self.ctx.author, reason=reason,
                      actor=None if user else self.ctx.actor)

    @requires("actions.decide")
    def undo(self, request_id: str, user: str | None = None) -> Any:
        """Revert an executed action (the old budget or status), unless the entity changed since."""
        from workbench.rules.actions import undo

        return undo(self.ws.stores.db, self.org_id, request_id, user or self.ctx.author, self._writer_for(),
                       actor=None if user else self.ctx.actor)

    @requires("data.read")
    def versions(self, name: str) -> pl.DataFrame:
        rows: list[ConfigVersion] = definitions.history(self.ws.stores.db, self.org_id, name)
        return pl.DataFrame([{"version": r.version, "created_at": r.created_at, "author": r.author,
                              "comment": r.comment} for r in rows])


def _date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)
