"""`workbench rules list|show|validate|define|enable|disable|preview|backtest|evaluate|history`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
import yaml

from workbench.cli_common import Format, FromOpt, OrgOpt, ToOpt, _date, out, print_frame

rules_app = typer.Typer(help="Rules over gold: `workbench rules preview cpa_guardrail --org acme`.", no_args_is_help=True)
AsOfOpt = Annotated[dt.datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"],
                                                     help="Evaluate as if today were this date (YYYY-MM-DD).")]
RuleArg = Annotated[str, typer.Argument(help="A rule name, or a YAML file with a rule document.")]


def _rule_ref(value: str) -> str | Path:
    return Path(value) if value.endswith((".yaml", ".yml")) else value


def _ws(org: str):  # type: ignore[no-untyped-def]
    import workbench

    return workbench.open(org)


@rules_app.command("list")
def list_(org: OrgOpt, fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Every rule (the shipped pack's and the organisation's own). Example: `workbench rules list --org acme`"""
    print_frame(_ws(org).rules.list(), fmt=fmt)


@rules_app.command("show")
def show(name: str, org: OrgOpt) -> None:
    """A rule document as YAML. Example: `workbench rules show cpa_guardrail --org acme > mine.yaml`"""
    rule = _ws(org).rules.show(name)
    out.print(yaml.safe_dump(rule.model_dump(mode="json"), sort_keys=False), highlight=False, markup=False)


@rules_app.command("validate")
def validate(file: Path, org: OrgOpt) -> None:
    """Check a rule file (fields, condition, windows, scope) without saving. Example: `workbench rules validate mine.yaml --org acme`"""
    rule = _ws(org).rules.validate(file)
    out.print(f"{rule.name}: valid ({rule.level} level, {len(rule.actions)} action(s))")


@rules_app.command("define")
def define(file: Path, org: OrgOpt, comment: Annotated[str, typer.Option(help="Why it changed.")] = "") -> None:
    """Validate and save a rule from a YAML file (a new version). Example: `workbench rules define mine.yaml --org acme`"""
    ws = _ws(org)
    version = ws.rules.define(file, comment=comment)
    out.print(f"saved {ws.rules.validate(file).name} v{version}")


@rules_app.command("enable")
def enable(name: str, org: OrgOpt) -> None:
    """Enable a rule (saves a new version). Example: `workbench rules enable zero_delivery --org acme`"""
    out.print(f"{name} enabled (v{_ws(org).rules.enable(name, True)})")


@rules_app.command("disable")
def disable(name: str, org: OrgOpt) -> None:
    """Disable a rule (saves a new version). Example: `workbench rules disable zero_delivery --org acme`"""
    out.print(f"{name} disabled (v{_ws(org).rules.enable(name, False)})")


@rules_app.command("preview")
def preview(rule: RuleArg, org: OrgOpt, as_of: AsOfOpt = None,
            fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Entities that match now, with the values that made them match. Example: `workbench rules preview cpa_guardrail --org acme`"""
    frame = _ws(org).rules.preview(_rule_ref(rule), _date(as_of))
    print_frame(frame.drop("entity"), f"{frame.height} matching", fmt=fmt)


@rules_app.command("backtest")
def backtest(rule: RuleArg, org: OrgOpt, start: FromOpt = None, end: ToOpt = None,
             fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """On which days each entity would have matched and fired. Example: `workbench rules backtest ctr_drop --org acme --from 2026-10-01 --to 2026-10-31`"""
    if start is None or end is None:
        raise typer.BadParameter("give --from and --to")
    result = _ws(org).rules.backtest(_rule_ref(rule), _date(start), _date(end))  # type: ignore[arg-type]
    print_frame(result.daily, "matches and firings per day", fmt=fmt)
    if result.detail.height:
        print_frame(result.detail.filter("fires").drop("entity", "matched", "fires"),
                    f"firings (actions: {', '.join(result.actions) or 'none'})", fmt=fmt)


@rules_app.command("evaluate")
def evaluate(org: OrgOpt, name: Annotated[str | None, typer.Argument(help="One rule; default every enabled rule.")] = None,
             as_of: AsOfOpt = None) -> None:
    """Evaluate and act: record, alert, queue notifications, platform actions. Example: `workbench rules evaluate --org acme`"""
    results = _ws(org).rules.evaluate(name, _date(as_of))
    if not results:
        out.print("no enabled rule: `workbench rules enable NAME --org ORG`")
    for ev in results:
        out.print(repr(ev), highlight=False, markup=False)


@rules_app.command("history")
def history(org: OrgOpt, name: Annotated[str | None, typer.Argument()] = None,
            fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Recorded evaluations, newest first. Example: `workbench rules history cpa_guardrail --org acme`"""
    print_frame(_ws(org).rules.history(name), fmt=fmt)


@rules_app.command("actions")
def actions(org: OrgOpt, status: Annotated[str | None, typer.Option(help="dry_run, pending_approval, executed, failed, expired, rejected.")] = None,
            fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """Platform actions rules asked for, with before/after values. Example: `workbench rules actions --org acme --status pending_approval`"""
    print_frame(_ws(org).rules.actions(status), fmt=fmt)


@rules_app.command("approve")
def approve(request_id: str, org: OrgOpt) -> None:
    """Approve a waiting platform action (it runs now). Example: `workbench rules approve 3f2a... --org acme`"""
    req = _ws(org).rules.approve(request_id)
    out.print(f"{req.kind} on {req.platform} {req.level} {req.entity_id}: {req.status}"
              + (f" ({req.error})" if req.error else ""), highlight=False, markup=False)


@rules_app.command("reject")
def reject(request_id: str, org: OrgOpt, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Reject a waiting platform action. Example: `workbench rules reject 3f2a... --org acme --reason "seasonal"`"""
    req = _ws(org).rules.reject(request_id, reason=reason)
    out.print(f"{req.kind} on {req.entity_id}: {req.status}", highlight=False, markup=False)


@rules_app.command("undo")
def undo(request_id: str, org: OrgOpt) -> None:
    """Revert an executed platform action. Example: `workbench rules undo 3f2a... --org acme`"""
    req = _ws(org).rules.undo(request_id)
    out.print(f"undo of {request_id}: {req.kind} on {req.entity_id} {req.status}", highlight=False, markup=False)
