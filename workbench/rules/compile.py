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
