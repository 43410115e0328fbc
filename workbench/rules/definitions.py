"""Rule documents: the shipped pack (``rules/rules/*.yaml``) and each organisation's versions.

An organisation's version of a rule name overrides the pack's. A save validates the document
(pydantic), then compiles the condition against the organisation's catalog, and stores a new
version (config documents of kind ``rule``) with author, time and comment.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticError

from workbench.errors import NotFoundError, ValidationError
from workbench.formulas.definitions import default_author, load_catalog
from workbench.formulas.packs import RULES_DIR, read_pack
from workbench.oltp import configs
from workbench.oltp.db import Oltp
from workbench.oltp.models import ConfigVersion
from workbench.rules.compile import compile_rule
from workbench.rules.model import Rule

KIND = "rule"
PACK_DIR = RULES_DIR / "rules"


@dataclass(frozen=True)
class StoredRule:
    rule: Rule
    origin: str  # "pack:core" or "org"
    version: int  # 0 for a pack rule the organisation has not saved


def parse_rule(doc: dict[str, Any], where: str = "rule") -> Rule:
    """A rule document -> Rule, with pydantic's complaints turned into one readable message."""
    try:
        return Rule.model_validate(doc)
    except PydanticError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
        raise ValidationError(f"{where} is not a valid rule: {problems}") from None


@functools.cache
def _pack(path: Path, _mtime: int) -> dict[str, Rule]:
    out = {}
    for i, item in enumerate(read_pack(path, "rule", "rules")):
        rule = parse_rule(item, f"{path.name}, rule {i + 1}")
        out[rule.name] = rule
    return out


def pack_rules() -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for path in sorted(PACK_DIR.glob("*.yaml")):
        out.update(_pack(path, path.stat().st_mtime_ns))
    return out


def load_rules(db: Oltp, org_id: str) -> dict[str, StoredRule]:
    """Every rule an organisation has: the pack's, overridden by its own versions."""
    out = {name: StoredRule(rule, "pack:core", 0) for name, rule in pack_rules().items()}
    for name, row in configs.current(db, org_id, KIND).items():
        out[name] = StoredRule(parse_rule(row.body or {}, f"rule {name} v{row.version}"), "org", row.version)
    return out


def get_rule(db: Oltp, org_id: str, name: str) -> StoredRule:
    rules = load_rules(db, org_id)
    if name not in rules:
        raise NotFoundError(f"no rule '{name}'; rules: {', '.join(sorted(rules)) or 'none'}")
    return rules[name]


def validate(db: Oltp, org_id: str, doc: dict[str, Any] | Rule) -> Rule:
    """Check a rule document completely (fields, condition, scope, windows) without saving it."""
    rule = doc if isinstance(doc, Rule) else parse_rule(doc)
    compile_rule(load_catalog(db, org_id), rule, dt.date.today())
    return rule


def define(db: Oltp, org_id: str, doc: dict[str, Any] | Rule, *, comment: str = "",
           author: str | None = None) -> ConfigVersion:
    """Validate and store a new version of a rule of the organisation."""
    rule = validate(db, org_id, doc)
    return configs.save_version(db, org_id, KIND, rule.name, rule.model_dump(mode="json", exclude_defaults=False),
                                author or default_author(), comment)


def history(db: Oltp, org_id: str, name: str) -> list[ConfigVersion]:
    rows = configs.history(db, org_id, KIND, name)
    if not rows:
        raise NotFoundError(f"the organisation has never saved a rule '{name}'")
    return rows
