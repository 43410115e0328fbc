"""A rule on a date -> one metrics plan over gold: entity dimensions, the condition, its values.

All windows of the condition are computed in the same scan (see ``windows.py``); the scope is
the plan's row filter; rule parameters (``target_cpa``) are constant metrics of the catalog.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from workbench.errors import FormulaError
from workbench.formulas import plan as planner
from workbench.formulas import syntax as s
from workbench.formulas.bound import Bound
from workbench.formulas.catalog import Catalog, MetricDef
from workbench.formulas.parser import parse
from workbench.rules.model import Rule
from workbench.rules.windows import WindowBinder

MATCH = "matched"
EARLIEST = dt.date(1900, 1, 1)


@dataclass
class CompiledRule:
    rule: Rule
    as_of: dt.date
    plan: planner.Plan
    shown: list[str]  # labels of the values recorded with each match
    id_dims: list[str]  # dimensions that identify an entity (without names)


def with_params(catalog: Catalog, rule: Rule) -> Catalog:
    """The catalog plus the rule's parameters as constant metrics."""
    out = catalog
    for name, value in rule.params.items():
        if name in catalog.base or name in catalog.dimensions:
            raise FormulaError(f"rule parameter '{name}' has the name of a base metric or dimension; rename it")
        out = out.with_metric(MetricDef(name, repr(float(value)), f"parameter of rule {rule.name}",
                                        origin=f"rule:{rule.name}"))
    return out


def windowed_refs(catalog: Catalog, text: str) -> list[str]:
    """The windowed references of a condition, as written (``cpa[last_7d]``), in order.

    A metric named without a window is an error: a rule must say over which days it looks.
    """
    tree = parse(text)
    out: list[str] = []
    for node in s.walk(tree):
        if not isinstance(node, s.Name):
            continue
        key = node.name.lower()
        if node.window is None:
            if key in catalog.base or (key in catalog.metrics and not catalog.metrics[key].origin.startswith("rule:")):
                raise FormulaError(f"say over which days to look at {node.name}, e.g. {node.name}[last_7d] "
                                   "(windows: today, yesterday, last_7d, previous_7d, month_to_date, lifetime, flight)",
                                   text, node.start, node.end)
            continue
        label = f"{key}[{node.window.lower()}]"
        if label not in out:
            out.append(label)
    return out


def compile_rule(catalog: Catalog, rule: Rule, as_of: dt.date) -> CompiledRule:
    """Bind and plan ``rule`` for evaluation date ``as_of``."""
    cat = with_params(catalog, rule)
    refs = windowed_refs(cat, rule.condition)
    shown = list(dict.fromkeys([*(rule.show or refs), *rule.params]))
    windows = WindowBinder(as_of, settled_only=rule.settled_only)
    metrics = {MATCH: rule.condition, **{label: label for label in shown}}
    plan = planner.build(cat, metrics, list(rule.dims), rule.scope, windows=windows)
    if plan.outputs[0].unit.value not in ("boolean", "null"):
        raise FormulaError(f"a rule condition must be true or false; this one gives {plan.outputs[0].unit.value}",
                           rule.condition)
    start, end = windows.scan_range()
    plan = replace(plan, start=start or EARLIEST, end=end)
    return CompiledRule(rule, as_of, plan, shown, [d for d in rule.dims if not d.endswith("_name")])


def _rename_params(text: str, rule: Rule, prefix: str) -> str:
    """``text`` with the rule's parameter names prefixed (so rules' parameters don't collide)."""
    if not rule.params:
        return text
    spans = sorted((n.start, n.end, n.name) for n in s.walk(parse(text))
                   if isinstance(n, s.Name) and n.window is None and n.name.lower() in rule.params)
    out, last = [], 0
    for start, end, name in spans:
        out += [text[last:start], f"{prefix}{name.lower()}"]
        last = end
    return "".join(out) + text[last:]


@dataclass
class CompiledSet:
    """Several rules of one level on one date, computed in a single scan."""

    as_of: dt.date
    plan: planner.Plan
    rules: list[Rule]
    id_dims: list[str]

    def label(self, rule: Rule) -> str:
        return f"{rule.name}:{MATCH}"


def compile_many(catalog: Catalog, rules: list[Rule], as_of: dt.date) -> CompiledSet:
    """One plan for rules of the same level: each rule's match is one output column.

    Each rule's scope restricts its own windows (rows outside the scope do not count) and an
    entity must have rows in scope to match; parameters are renamed per rule. Aggregates that
    rules share (same metric, window, scope) are computed once.
    """
    from workbench.formulas.binder import Binder

    levels = {r.level for r in rules}
    if len(levels) != 1:
        raise FormulaError(f"rules evaluated together must have one level, got {', '.join(sorted(levels))}")
    cat = catalog
    for rule in rules:
        for name, value in rule.params.items():
            cat = cat.with_metric(MetricDef(f"{rule.name}__{name}", repr(float(value)), origin=f"rule:{rule.name}"))
    resolvers: dict[str, WindowBinder] = {}
    metrics: dict[str, str] = {}
    for rule in rules:
        windowed_refs(with_params(catalog, rule), rule.condition)  # every metric has a window
        scope = Binder(cat).condition(rule.scope) if rule.scope else None
        in_scope = f"MAX(IF({rule.scope}, 1, 0)) = 1" if rule.scope else "TRUE"
        # the trailing comment makes each rule's text unique, so the resolver knows whose it is
        text = f"({_rename_params(rule.condition, rule, rule.name + '__')}) AND {in_scope}\n-- {rule.name}"
        metrics[f"{rule.name}:{MATCH}"] = text
        resolvers[text] = WindowBinder(as_of, settled_only=rule.settled_only, scope=scope)

    def resolver(node: s.Name, binder: Binder) -> Bound:
        return resolvers[binder._scope.text](node, binder)

    plan = planner.build(cat, metrics, list(rules[0].dims), None, windows=resolver)
    starts = [r.scan_range()[0] for r in resolvers.values()]
    start = EARLIEST if any(x is None for x in starts) else min(x for x in starts if x is not None)
    return CompiledSet(as_of, replace(plan, start=start, end=as_of), rules,
                       [d for d in rules[0].dims if not d.endswith("_name")])
