"""Metric definitions: the packs' and an organisation's own, versioned in the OLTP store.

An organisation's definition of a name overrides the packs'. Every change is validated
against the whole catalog first (a change that breaks a dependent metric or closes a cycle
is refused, naming them), then stored as a new version with author, time and comment.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field

from workbench.errors import FormulaError, NotFoundError, ValidationError
from workbench.formulas import syntax as s
from workbench.formulas.binder import Binder, parse_in
from workbench.formulas.catalog import FUNCTIONS, RESERVED, Catalog, MetricDef
from workbench.formulas.packs import NAME, check_unit_and_format, metric_packs
from workbench.oltp import configs
from workbench.oltp.db import Oltp
from workbench.oltp.models import ConfigVersion

KIND = "metric"


@dataclass(frozen=True)
class MetricChange:
    """What a define or remove did: the new version and the metrics that depend on the name."""

    name: str
    version: int
    unit: str | None
    dependents: list[str] = field(default_factory=list)
    removed: bool = False
    now_from: str | None = None  # after a removal: the pack definition now in force, if any


def default_author() -> str:
    return os.environ.get("WORKBENCH_USER") or getpass.getuser()


def _from_row(row: ConfigVersion) -> MetricDef:
    body = row.body or {}
    unit, fmt = check_unit_and_format(body.get("unit"), body.get("format"), f"metric {row.name}")
    return MetricDef(row.name, body["formula"], body.get("description", ""), unit, fmt, origin="org",
                     version=row.version, author=row.author)


def load_catalog(db: Oltp, org_id: str) -> Catalog:
    """The catalog one organisation's formulas see: built-ins, packs, then its own definitions."""
    metrics = metric_packs.definitions()
    for name, row in configs.current(db, org_id, KIND).items():
        metrics[name] = _from_row(row)
    return Catalog(metrics)


def dependencies(catalog: Catalog, name: str) -> list[str]:
    """The derived metrics that ``name``'s formula names directly, in order of appearance."""
    definition = catalog.metrics[name]
    try:
        tree = parse_in(definition.formula, name)
    except FormulaError:
        return []
    out: list[str] = []
    for node in s.walk(tree):
        if isinstance(node, s.Name) and node.name.lower() in catalog.metrics and node.name.lower() not in out:
            out.append(node.name.lower())
    return out


def dependents(catalog: Catalog, name: str) -> list[str]:
    """Every derived metric that uses ``name``, directly or through others (sorted)."""
    users: dict[str, set[str]] = {}
    for metric in catalog.metrics:
        for dep in dependencies(catalog, metric):
            users.setdefault(dep, set()).add(metric)
    seen: set[str] = set()
    todo = [name]
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in seen:
                seen.add(user)
                todo.append(user)
    seen.discard(name)
    return sorted(seen)


def _check_name(catalog: Catalog, name: str) -> None:
    if not NAME.match(name):
        raise ValidationError(f"'{name}' is not a valid metric name: use lower case letters, digits and _, "
                              "starting with a letter (e.g. blended_cpm)")
    if name in catalog.base:
        raise ValidationError(f"'{name}' is a base metric read from gold; pick another name for a derived metric")
    if name in catalog.dimensions:
        raise ValidationError(f"'{name}' is a dimension; pick another name")
    if name.upper() in FUNCTIONS or name in RESERVED:
        raise ValidationError(f"'{name}' is a function or keyword of the formula language; pick another name")


def validate(catalog: Catalog, name: str) -> list[str]:
    """Bind ``name`` and everything that depends on it; return the dependents."""
    Binder(catalog).metric(name)
    users = dependents(catalog, name)
    for user in users:
        try:
            Binder(catalog).metric(user)
        except FormulaError as exc:
            raise FormulaError(f"this change breaks '{user}', which depends on '{name}': {exc.message}",
                               exc.text, exc.start, exc.end, metric=exc.metric) from None
    return users


def define(db: Oltp, org_id: str, name: str, formula: str, *, description: str = "", unit: str | None = None,
           format: str | None = None, comment: str = "", author: str | None = None) -> MetricChange:
    """Validate and store a new version of the organisation's metric ``name``."""
    catalog = load_catalog(db, org_id)
    _check_name(catalog, name)
    declared, fmt = check_unit_and_format(unit, format, f"metric {name}")
    definition = MetricDef(name, formula, description, declared, fmt, origin="org")
    candidate = catalog.with_metric(definition)
    users = validate(candidate, name)
    bound = Binder(candidate).metric(name)
    body = {"formula": formula, "description": description, "unit": unit, "format": format}
    row = configs.save_version(db, org_id, KIND, name, body, author or default_author(), comment)
    return MetricChange(name, row.version, bound.unit.value, users)


def remove(db: Oltp, org_id: str, name: str, *, comment: str = "", author: str | None = None) -> MetricChange:
    """Remove the organisation's definition of ``name`` (a pack's definition of it returns)."""
    own = configs.current(db, org_id, KIND)
    if name not in own:
        raise NotFoundError(f"'{name}' has no definition of this organisation's own to remove"
                            + (" (it comes from a metric pack)" if name in metric_packs.definitions() else ""))
    catalog = load_catalog(db, org_id)
    pack = metric_packs.definitions().get(name)
    candidate = catalog.with_metric(pack) if pack else catalog.without_metric(name)
    users = dependents(catalog, name)
    if pack is None and users:
        raise ValidationError(f"cannot remove '{name}': {', '.join(users)} depend on it; change or remove them first")
    if pack is not None:
        validate(candidate, name)
    row = configs.save_version(db, org_id, KIND, name, None, author or default_author(), comment)
    return MetricChange(name, row.version, None, users, removed=True, now_from=pack.origin if pack else None)


def history(db: Oltp, org_id: str, name: str) -> list[ConfigVersion]:
    """Every stored version of the organisation's metric ``name``, oldest first."""
    rows = configs.history(db, org_id, KIND, name)
    if not rows:
        raise NotFoundError(f"the organisation has never defined a metric '{name}'"
                            + (" (it comes from a metric pack)" if name in metric_packs.definitions() else ""))
    return rows
