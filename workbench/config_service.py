"""The configuration service: versioned configuration documents of each organisation.

Every document has a kind (:data:`KINDS`: connections, metric definitions, rules, budgets,
schedules, notification channels) and a name. A save validates the document with its kind's
validator, refuses a save that changes nothing, appends a version (author, time, comment) and
writes an audit event with the before and after documents. History, diffs between versions and
rollback (a new version equal to an old one, validated again) work the same for every kind.
Every function names the organisation and reads only its documents.

Metric definitions and rules keep one code path: the service validates them with their own
modules' checks and stores them through ``formulas.definitions.define`` / ``rules.definitions
.define``, so the engines (``ws.metrics``, rule evaluations) read what the service saved.
"""

from __future__ import annotations

import builtins
import datetime as dt
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic import ValidationError as PydanticError

from workbench import audit
from workbench.auth.context import WorkspaceAccessor
from workbench.auth.permissions import require, requires
from workbench.errors import ConfigError, NotFoundError, ValidationError
from workbench.oltp import configs, repo
from workbench.oltp.db import Oltp
from workbench.oltp.models import ConfigVersion

if TYPE_CHECKING:
    pass

Body = dict[str, Any]
REDACTED = "***"
#: names of budgets and schedules (channels have the same rule in workbench.notify.targets)
DOC_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
#: a setting key that looks like a credential (matched per _-separated word of the key)
CREDENTIAL_KEY = re.compile(r"(^|_)(secret|secrets|password|passwd|pwd|token|tokens|apikey|api_key|"
                            r"private_key|privatekey|credential|credentials|auth|authorization|bearer)(_|$)")


# -- the document kinds ---------------------------------------------------------------------

@dataclass(frozen=True)
class DocContext:
    """What a validator may look at: the organisation's store, the document's name, and the
    credentials key (only channel documents need it, to check their encrypted secrets)."""

    db: Oltp
    org_id: str
    kind: str
    name: str
    key: bytes | None = None

    def need_key(self) -> bytes:
        if self.key is None:
            raise ConfigError(f"{self.kind} documents hold encrypted secrets: pass the credentials key "
                              "(settings.credentials_key) to check and save them")
        return self.key


Validator = Callable[[DocContext, Body], Body]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Kind:
    """A kind of configuration document.

    ``validate`` turns a document into its normalised form (the stored body) or raises a
    ValidationError saying what to fix. ``store`` / ``unstore`` append a version (default:
    ``configs.save_version``); ``apply`` makes a saved or removed document take effect where the
    engine does not read ``config_versions`` itself (connections); ``redact`` hides what must not
    be shown in listings, diffs and audit events.
    """

    name: str
    description: str
    validate: Validator
    permission: str = "config.write"
    store: Callable[[DocContext, Body, str, str], ConfigVersion] | None = None
    unstore: Callable[[DocContext, str, str], ConfigVersion] | None = None
    apply: Callable[[DocContext, Body | None], None] | None = None
    redact: Callable[[Body], Body] | None = None


def _mapping(body: Any, ctx: DocContext, fields: str) -> Body:
    if not isinstance(body, dict):
        raise ValidationError(f"a {ctx.kind} document is a mapping ({fields}), not {type(body).__name__}")
    return body


def _pydantic(model: type[M], body: Body, ctx: DocContext) -> M:
    try:
        return model.model_validate(body)
    except PydanticError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors())
        raise ValidationError(f"{ctx.kind} '{ctx.name}' is not valid: {problems}") from None


def _named(body: Body, ctx: DocContext) -> Body:
    """The body with ``name`` set to the document's name (a different name is an error)."""
    given = body.get("name", ctx.name)
    if given != ctx.name:
        raise ValidationError(f"the document names {ctx.kind} '{given}' but is saved as '{ctx.name}'; "
                              "make the two the same")
    return {**body, "name": ctx.name}


def _doc_name(ctx: DocContext) -> None:
    if not DOC_NAME.match(ctx.name):
        raise ValidationError(f"{ctx.kind} name '{ctx.name}' must be 1-100 lowercase letters, digits, '-', '_' "
                              "or '.', e.g. q4-search")


# metric ------------------------------------------------------------------------------------

METRIC_FIELDS = ("formula", "description", "unit", "format")


def _validate_metric(ctx: DocContext, body: Body) -> Body:
    from workbench.formulas import definitions
    from workbench.formulas.catalog import MetricDef
    from workbench.formulas.packs import check_unit_and_format

    body = _mapping(body, ctx, "formula, description, unit, format")
    unknown = sorted(set(body) - set(METRIC_FIELDS))
    if unknown:
        raise ValidationError(f"metric '{ctx.name}': unknown field(s) {', '.join(unknown)}; "
                              f"a metric document has {', '.join(METRIC_FIELDS)}")
    formula, description = body.get("formula"), body.get("description") or ""
    if not isinstance(formula, str) or not formula.strip():
        raise ValidationError(f"metric '{ctx.name}' needs a formula, e.g. formula: spend / impressions * 1000")
    if not isinstance(description, str):
        raise ValidationError(f"metric '{ctx.name}': description must be text")
    # the same checks, in the same order, as formulas.definitions.define (which stores it)
    catalog = definitions.load_catalog(ctx.db, ctx.org_id)
    definitions._check_name(catalog, ctx.name)
    try:
        unit, fmt = check_unit_and_format(body.get("unit"), body.get("format"), f"metric {ctx.name}")
    except ConfigError as exc:
        raise ValidationError(str(exc)) from None
    candidate = catalog.with_metric(MetricDef(ctx.name, formula, description, unit, fmt, origin="org"))
    definitions.validate(candidate, ctx.name)
    return {"formula": formula, "description": description, "unit": body.get("unit"), "format": body.get("format")}


def _store_metric(ctx: DocContext, body: Body, author: str, comment: str) -> ConfigVersion:
    from workbench.formulas import definitions

    change = definitions.define(ctx.db, ctx.org_id, ctx.name, body["formula"], description=body["description"],
                                unit=body["unit"], format=body["format"], comment=comment, author=author)
    return configs.get_version(ctx.db, ctx.org_id, ctx.kind, ctx.name, change.version)


def _unstore_metric(ctx: DocContext, author: str, comment: str) -> ConfigVersion:
    from workbench.formulas import definitions

    change = definitions.remove(ctx.db, ctx.org_id, ctx.name, comment=comment, author=author)
    return configs.get_version(ctx.db, ctx.org_id, ctx.kind, ctx.name, change.version)


# rule --------------------------------------------------------------------------------------

def _validate_rule(ctx: DocContext, body: Body) -> Body:
    from workbench.rules import definitions

    body = _named(_mapping(body, ctx, "name, condition, scope, actions, ..."), ctx)
    rule = definitions.validate(ctx.db, ctx.org_id, body)
    return rule.model_dump(mode="json", exclude_defaults=False)  # exactly what rules.definitions.define stores


def _store_rule(ctx: DocContext, body: Body, author: str, comment: str) -> ConfigVersion:
    from workbench.rules import definitions

    return definitions.define(ctx.db, ctx.org_id, body, comment=comment, author=author)


# connection --------------------------------------------------------------------------------

CONNECTION_FIELDS = ("platform", "settings", "lookback_days")


def _credential_keys(value: Any, credential_fields: set[str], path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            word = str(key).lower().replace("-", "_")
            where = f"{path}.{key}" if path else str(key)
            if word in credential_fields or CREDENTIAL_KEY.search(word):
                found.append(where)
            found += _credential_keys(item, credential_fields, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _credential_keys(item, credential_fields, f"{path}[{i}]")
    return found


def _validate_connection(ctx: DocContext, body: Body) -> Body:
    from connectors.registry import connectors

    body = _mapping(body, ctx, "platform, settings, lookback_days")
    if "credentials" in body:
        raise ValidationError(f"connection '{ctx.name}': credentials are never part of a configuration document; "
                              f"set them with `workbench connections add PLATFORM --name {ctx.name} --update`")
    unknown = sorted(set(body) - set(CONNECTION_FIELDS))
    if unknown:
        raise ValidationError(f"connection '{ctx.name}': unknown field(s) {', '.join(unknown)}; "
                              f"a connection document has {', '.join(CONNECTION_FIELDS)}")
    platform = body.get("platform")
    if not isinstance(platform, str) or platform not in connectors.names():
        raise ValidationError(f"connection '{ctx.name}': platform '{platform}' is not an installed connector; "
                              f"connectors: {', '.join(connectors.names())}")
    cls = connectors.get(platform)
    settings = body.get("settings") if body.get("settings") is not None else {}
    if not isinstance(settings, dict):
        raise ValidationError(f"connection '{ctx.name}': settings must be a mapping of names to values, "
                              "e.g. {account_ids: [act_123]}")
    secret_like = _credential_keys(settings, {f.name.lower() for f in cls.credential_fields})
    if secret_like:
        raise ValidationError(f"connection '{ctx.name}': settings {', '.join(secret_like)} look like credentials; "
                              "credentials are stored encrypted, apart from the configuration: remove them here and "
                              f"set them with `workbench connections add {platform} --name {ctx.name} --update`")
    absent = [s for s in getattr(cls, "required_settings", ()) if not settings.get(s)]
    if absent:
        raise ValidationError(f"a {platform} connection needs the setting(s) {', '.join(absent)}")
    lookback = body.get("lookback_days", cls.default_lookback_days)
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 0:
        raise ValidationError(f"connection '{ctx.name}': lookback_days must be a whole number of days, 0 or more "
                              f"(got {lookback!r})")
    return {"platform": platform, "settings": settings, "lookback_days": lookback}


def _apply_connection(ctx: DocContext, body: Body | None) -> None:
    """Make the connections table (what ingestion reads) match the document; credentials stay."""
    from connectors.registry import connectors

    existing = {c.name: c for c in repo.list_connections(ctx.db, ctx.org_id)}.get(ctx.name)
    if body is None:
        if existing is not None:
            repo.remove_connection(ctx.db, ctx.org_id, ctx.name)
        return
    if existing is None and any(f.required for f in connectors.get(body["platform"]).credential_fields):
        raise ValidationError(f"connection '{ctx.name}' does not exist in '{ctx.org_id}' and needs credentials, "
                              "which configuration documents never hold: add it with "
                              f"`workbench connections add {body['platform']} --name {ctx.name} --org {ctx.org_id}`")
    if existing is not None and existing.platform != body["platform"]:
        raise ValidationError(f"connection '{ctx.name}' of '{ctx.org_id}' is a {existing.platform} connection, "
                              f"not {body['platform']}; choose another name")
    # the key only encrypts credentials, and none are passed: the stored ones stay as they are
    repo.upsert_connection(ctx.db, b"", ctx.org_id, ctx.name, body["platform"], body["settings"],
                           body["lookback_days"], None)


# channel -----------------------------------------------------------------------------------

CHANNEL_FIELDS = ("type", "settings", "secrets", "secret_names")


def _validate_channel(ctx: DocContext, body: Body) -> Body:
    """A channel target: type, plain settings, secrets (plain values to encrypt, the stored
    encrypted token, or absent / ``***`` to keep the current version's)."""
    from workbench.notify.registry import channels
    from workbench.notify.targets import NAME
    from workbench.oltp.repo import decrypt_credentials, encrypt_credentials

    body = _mapping(body, ctx, "type, settings, secrets")
    if not NAME.match(ctx.name):
        raise ValidationError(f"channel name '{ctx.name}' must be 1-100 lowercase letters, digits, '-', '_' "
                              "or '.', e.g. team-slack")
    unknown = sorted(set(body) - set(CHANNEL_FIELDS))
    if unknown:
        raise ValidationError(f"channel '{ctx.name}': unknown field(s) {', '.join(unknown)}; "
                              "a channel document has type, settings and secrets")
    type_ = str(body.get("type") or "")
    try:
        cls = channels.get(type_)
    except NotFoundError as exc:
        raise ValidationError(str(exc)) from None
    if not cls.configurable:
        raise ValidationError(f"{type_} targets are {cls.target_hint} given when a notification is sent; "
                              "they need no channel configuration")
    settings = body.get("settings") if body.get("settings") is not None else {}
    if not isinstance(settings, dict):
        raise ValidationError(f"channel '{ctx.name}': settings must be a mapping, e.g. {{url: https://...}}")
    key = ctx.need_key()
    current = configs.current(ctx.db, ctx.org_id, ctx.kind).get(ctx.name)
    current_body = (current.body or {}) if current is not None else {}
    same_type = current is not None and current_body.get("type") == type_
    secrets = body.get("secrets")
    if secrets is None or secrets == REDACTED:  # keep the current version's secrets
        if not same_type:
            raise ValidationError(f"channel '{ctx.name}' needs its secrets ({', '.join(cls.secret_fields)})")
        token = current_body.get("secrets")
        plain = decrypt_credentials(key, token)
    elif isinstance(secrets, str):  # the encrypted token of a stored version (a rollback)
        token, plain = secrets, decrypt_credentials(key, secrets)
    elif isinstance(secrets, dict):
        plain = {str(k): str(v) for k, v in secrets.items() if v is not None}
        old = current_body.get("secrets") if same_type else None
        # the same secrets keep the same token, so saving an unchanged channel is seen as no change
        token = old if old and _decrypts_to(key, old, plain) else encrypt_credentials(key, plain)
    else:
        raise ValidationError(f"channel '{ctx.name}': secrets must be a mapping of names to values")
    cls.check_config(settings, plain)
    return {"type": type_, "settings": settings, "secret_names": sorted(plain), "secrets": token}


def _decrypts_to(key: bytes, token: str, plain: dict[str, str]) -> bool:
    from workbench.oltp.repo import decrypt_credentials

    try:
        return decrypt_credentials(key, token) == plain
    except ConfigError:  # saved with another key: the new secrets get a new token
        return False


def _redact_channel(body: Body) -> Body:
    return {**body, "secrets": REDACTED} if body.get("secrets") else body


# budget ------------------------------------------------------------------------------------

class Budget(BaseModel):
    """A spend budget over a set of campaigns (``scope``), with alert thresholds."""

    model_config = ConfigDict(extra="forbid")

    name: str
    amount: float = Field(gt=0)
    currency: str
    period: Literal["monthly", "quarterly", "flight"]
    scope: str = Field(min_length=1)
    start: dt.date
    end: dt.date | None = None
    alert_at_pct: list[float] = Field(default_factory=lambda: [80.0, 100.0])
    description: str = ""

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"'{value}' is not a 3-letter ISO currency code such as USD or EUR")
        return value.upper()

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give the campaigns the budget covers, e.g. \"platform = 'meta'\"")
        return value.strip()

    @field_validator("alert_at_pct")
    @classmethod
    def _alerts(cls, value: list[float]) -> list[float]:
        bad = [v for v in value if not 0 < v <= 1000]
        if bad:
            raise ValueError(f"alert thresholds are percentages of the amount above 0 (e.g. [50, 80, 100]); not {bad}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _dates(self) -> Budget:
        if self.period == "flight" and self.end is None:
            raise ValueError("a flight budget needs an end date")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"the end date {self.end} is before the start date {self.start}")
        return self


def _validate_budget(ctx: DocContext, body: Body) -> Body:
    from workbench.formulas import syntax as s
    from workbench.formulas.binder import Binder
    from workbench.formulas.definitions import load_catalog
    from workbench.formulas.parser import parse

    _doc_name(ctx)
    budget = _pydantic(Budget, _named(_mapping(body, ctx, "amount, currency, period, scope, start, end, ..."), ctx),
                       ctx)
    catalog = load_catalog(ctx.db, ctx.org_id)
    Binder(catalog).condition(budget.scope)  # parses and type-checks (a FormulaError says where)
    # a budget covers whole campaigns: its scope may name only what a campaign row has
    finer = sorted({n.name for n in s.walk(parse(budget.scope)) if isinstance(n, s.Name)
                    and n.name.lower() not in {k for k, d in catalog.dimensions.items()
                                               if "gold.campaign_daily" in d.tables}})
    if finer:
        campaign_dims = sorted(k for k, d in catalog.dimensions.items() if "gold.campaign_daily" in d.tables)
        raise ValidationError(f"budget '{ctx.name}': the scope selects campaigns, so it can only use campaign "
                              f"attributes ({', '.join(campaign_dims)}); not {', '.join(finer)}")
    return budget.model_dump(mode="json")


# schedule ----------------------------------------------------------------------------------

class Schedule(BaseModel):
    """A job the scheduler runs on a cron expression."""

    model_config = ConfigDict(extra="forbid")

    job: Literal["ingest", "transform", "evaluate_rules", "dispatch_notifications"]
    cron: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    enabled: StrictBool = True
    description: str = ""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression (e.g. '0 7 * * *' for 07:00 every day)")
        return value


def _validate_schedule(ctx: DocContext, body: Body) -> Body:
    _doc_name(ctx)
    schedule = _pydantic(Schedule, _mapping(body, ctx, "job, cron, parameters, enabled"), ctx)
    return schedule.model_dump(mode="json")


KINDS: dict[str, Kind] = {
    "connection": Kind("connection", "a platform connection: platform, settings and look-back days "
                       "(credentials are stored encrypted apart, never here)", _validate_connection,
                       permission="connections.manage", apply=_apply_connection),
    "metric": Kind("metric", "a metric definition of the organisation: formula, description, unit, format",
                   _validate_metric, store=_store_metric, unstore=_unstore_metric),
    "rule": Kind("rule", "a rule: condition over gold, scope, trigger, actions (see docs/rules.md)",
                 _validate_rule, store=_store_rule),
    "budget": Kind("budget", "a spend budget: amount, currency, period (monthly, quarterly, flight), the campaigns "
                   "it covers (scope), dates and alert thresholds", _validate_budget),
    "schedule": Kind("schedule", "a scheduled job (ingest, transform, evaluate_rules, dispatch_notifications) "
                     "on a cron expression, with parameters", _validate_schedule),
    "channel": Kind("channel", "a notification channel target (Slack, webhook): type, settings, encrypted "
                    "secrets", _validate_channel, redact=_redact_channel),
}


def kind_of(kind: str) -> Kind:
    """The registered kind ``kind``, or a ValidationError listing the kinds."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValidationError(f"unknown configuration kind '{kind}'; kinds: {', '.join(KINDS)}") from None


# -- reading --------------------------------------------------------------------------------

def _context(db: Oltp, org_id: str, kind: str, name: str, key: bytes | None = None) -> DocContext:
    kind_of(kind)
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or any(c in name for c in "\r\n\t"):
        raise ValidationError(f"a {kind} name is 1-200 characters on one line; got {name!r}")
    repo.get_org(db, org_id)  # an unknown organisation says so (not "no version")
    return DocContext(db, org_id, kind, name, key)


def _jsonable(body: Body) -> Body:
    """The body as the JSON column will hold it (YAML dates become ISO text), to compare and store."""
    return json.loads(json.dumps(body, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


def redact(kind: str, body: Body | None) -> Body | None:
    """What may be shown of a stored body (channel secrets as ``***``)."""
    spec = kind_of(kind)
    return body if body is None or spec.redact is None else spec.redact(body)


def history(db: Oltp, org_id: str, kind: str, name: str) -> list[ConfigVersion]:
    """Every version of the organisation's document ``kind/name``, oldest first (removals have no body)."""
    _context(db, org_id, kind, name)
    rows = configs.history(db, org_id, kind, name)
    if not rows:
        raise NotFoundError(f"organisation '{org_id}' has no {kind} document '{name}'; "
                            f"`workbench config list {kind} --org {org_id}` lists them")
    return rows


def version(db: Oltp, org_id: str, kind: str, name: str, number: int | None = None) -> ConfigVersion:
    """Version ``number`` of the document (default: the current one, which must not be removed)."""
    if number is None:
        row = history(db, org_id, kind, name)[-1]
        if row.body is None:
            raise NotFoundError(f"{kind} '{name}' of '{org_id}' was removed in v{row.version}; "
                                f"`workbench config history {kind} {name} --org {org_id}` shows its versions")
        return row
    _context(db, org_id, kind, name)
    try:
        return configs.get_version(db, org_id, kind, name, number)
    except NotFoundError:
        known = [r.version for r in configs.history(db, org_id, kind, name)]
        raise NotFoundError(f"organisation '{org_id}' has no version {number} of {kind} '{name}'"
                            + (f"; versions: 1..{known[-1]}" if known else "")) from None


def current(db: Oltp, org_id: str, kind: str, name: str) -> Body:
    """The current body of the organisation's document ``kind/name`` (what the engines read)."""
    body = version(db, org_id, kind, name).body
    assert body is not None  # version() refuses a removed document
    return body


def documents(db: Oltp, org_id: str, kind: str) -> list[ConfigVersion]:
    """The current version of each of the organisation's documents of ``kind`` (removed ones left out)."""
    kind_of(kind)
    return [row for _, row in sorted(configs.current(db, org_id, kind).items())]


# -- diffs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One changed key between two versions: ``path`` like ``settings.account_ids`` or
    ``actions[0].type``; ``change`` is added, removed or changed."""

    path: str
    before: Any
    after: Any
    change: str = "changed"


_ABSENT = object()


def canonical_yaml(body: Body | None) -> str:
    """A body as YAML with sorted keys: the same document always gives the same text."""
    if body is None:
        return ""
    return yaml.safe_dump(body, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1000)


def changed_keys(before: Body | None, after: Body | None) -> list[Change]:
    """The keys whose values differ between two bodies (nested mappings and same-length lists
    are compared item by item; anything else as a whole)."""
    out: list[Change] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{path}.{key}" if path else str(key))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]")
        else:
            change = "added" if a is _ABSENT else "removed" if b is _ABSENT else "changed"
            out.append(Change(path or "(document)", None if a is _ABSENT else a, None if b is _ABSENT else b, change))

    walk(before or {}, after or {}, "")
    return out


@dataclass(frozen=True)
class ConfigDiff:
    """A diff between two versions: unified text of canonical YAML, and the changed keys."""

    kind: str
    name: str
    from_version: int
    to_version: int
    text: str
    changes: list[Change]

    def __str__(self) -> str:
        return self.text


def compare(db: Oltp, org_id: str, kind: str, name: str, from_version: int, to_version: int) -> ConfigDiff:
    """Diff two versions of the organisation's document (secrets redacted)."""
    rows = [version(db, org_id, kind, name, n) for n in (from_version, to_version)]
    bodies = [redact(kind, r.body) for r in rows]
    labels = [f"{kind}/{name} v{r.version}" + (" (removed)" if r.body is None else "") for r in rows]
    text = "".join(difflib.unified_diff(canonical_yaml(bodies[0]).splitlines(keepends=True),
                                        canonical_yaml(bodies[1]).splitlines(keepends=True),
                                        fromfile=labels[0], tofile=labels[1]))
    changes = changed_keys(bodies[0], bodies[1])
    raw = [r.body or {} for r in rows]
    if kind_of(kind).redact is not None and raw[0].get("secrets") != raw[1].get("secrets") \
            and not any(c.path == "secrets" for c in changes):
        # the values are hidden, but that they changed is worth seeing
        changes.append(Change("secrets", REDACTED, f"{REDACTED} (changed)"))
        text += "# secrets changed (values not shown)\n"
    return ConfigDiff(kind, name, rows[0].version, rows[1].version, text, changes)


def diff(db: Oltp, org_id: str, kind: str, name: str, from_version: int, to_version: int) -> str:
    """A unified diff of the canonical YAML of two versions ("" when they are the same)."""
    return compare(db, org_id, kind, name, from_version, to_version).text


# -- writing --------------------------------------------------------------------------------

def validate(db: Oltp, org_id: str, kind: str, name: str, body: Body, *, key: bytes | None = None) -> Body:
    """The normalised body ``save`` would store, without saving (a ValidationError says what to fix)."""
    ctx = _context(db, org_id, kind, name, key)
    return _jsonable(KINDS[kind].validate(ctx, body))


def _audit(db: Oltp, ctx: DocContext, action: str, actor: str, before: Body | None, row: ConfigVersion,
           detail: str) -> None:
    audit.record(db, org_id=ctx.org_id, actor=actor, action=action, target_kind=ctx.kind, target_id=ctx.name,
                 before=redact(ctx.kind, before), after=redact(ctx.kind, row.body),
                 detail=f"v{row.version}" + (f": {detail}" if detail else ""))


def _previous(db: Oltp, ctx: DocContext, row: ConfigVersion) -> Body | None:
    # read after the write: with concurrent saves, the version before ours is the true "before"
    if row.version <= 1:
        return None
    return configs.get_version(db, ctx.org_id, ctx.kind, ctx.name, row.version - 1).body


def audit_version(db: Oltp, org_id: str, kind: str, name: str, number: int, *, actor: str,
                  action: str | None = None) -> None:
    """Write the audit event of a version stored without :func:`save` (``ws.define_metric``,
    ``ws.rules.define``, ``notify.remove_channel``): before is the version below it, after is
    this one; the action is ``config.save`` (``config.remove`` for a removal) unless given."""
    ctx = _context(db, org_id, kind, name)
    row = version(db, org_id, kind, name, number)
    _audit(db, ctx, action or ("config.remove" if row.body is None else "config.save"), actor,
           _previous(db, ctx, row), row, row.comment)


def _save(ctx: DocContext, body: Body, *, author: str, comment: str, actor: str | None, action: str,
          detail: str, refuse_unchanged: bool, apply: bool) -> ConfigVersion:
    spec = KINDS[ctx.kind]
    normalised = _jsonable(spec.validate(ctx, body))
    latest = configs.latest(ctx.db, ctx.org_id, ctx.kind, ctx.name)
    if latest is not None and latest.body == normalised:
        if refuse_unchanged:
            raise ValidationError(f"no change: {ctx.kind} '{ctx.name}' v{latest.version} is already this document; "
                                  "nothing saved")
        return latest
    if apply and spec.apply is not None:
        spec.apply(ctx, normalised)
    row = (spec.store or _store_generic)(ctx, normalised, author, comment)
    _audit(ctx.db, ctx, action, actor or author, _previous(ctx.db, ctx, row), row, detail or comment)
    return row


def _store_generic(ctx: DocContext, body: Body, author: str, comment: str) -> ConfigVersion:
    return configs.save_version(ctx.db, ctx.org_id, ctx.kind, ctx.name, body, author, comment)


def save(db: Oltp, org_id: str, kind: str, name: str, body: Body, *, author: str, comment: str = "",
         actor: str | None = None, key: bytes | None = None, refuse_unchanged: bool = True,
         apply: bool = True) -> ConfigVersion:
    """Validate ``body`` and store it as the next version of the organisation's ``kind/name``.

    A body equal to the current version is refused as "no change" (``refuse_unchanged=False``
    returns the current version instead). The audit event (``config.save``) has the previous and
    the new body; ``actor`` (default ``author``) is who acted. ``apply=False`` is for callers that
    already made the change take effect themselves (``connections.add``). ``key`` is the
    credentials key, needed for channel documents.
    """
    ctx = _context(db, org_id, kind, name, key)
    return _save(ctx, body, author=author, comment=comment, actor=actor, action="config.save", detail="",
                 refuse_unchanged=refuse_unchanged, apply=apply)


def remove(db: Oltp, org_id: str, kind: str, name: str, *, author: str, comment: str = "",
           actor: str | None = None, apply: bool = True) -> ConfigVersion:
    """Remove the organisation's document (a version without a body; the history stays), audited
    as ``config.remove``."""
    ctx = _context(db, org_id, kind, name)
    before = current(db, org_id, kind, name)
    spec = KINDS[kind]
    if apply and spec.apply is not None:
        spec.apply(ctx, None)
    row = spec.unstore(ctx, author, comment) if spec.unstore is not None else \
        configs.save_version(db, org_id, kind, name, None, author, comment)
    _audit(db, ctx, "config.remove", actor or author, before, row, comment)
    return row


def rollback(db: Oltp, org_id: str, kind: str, name: str, to_version: int, *, author: str, comment: str = "",
             actor: str | None = None, key: bytes | None = None) -> ConfigVersion:
    """Save a new version equal to version ``to_version`` (validated again: the catalog or the
    connectors may have changed since), audited as ``config.rollback``."""
    ctx = _context(db, org_id, kind, name, key)
    old = version(db, org_id, kind, name, to_version)
    if old.body is None:
        raise ValidationError(f"v{to_version} of {kind} '{name}' is a removal; to remove the document use "
                              f"`workbench config remove {kind} {name} --org {org_id}`")
    note = f"rollback to v{to_version}" + (f": {comment}" if comment else "")
    return _save(ctx, old.body, author=author, comment=note, actor=actor, action="config.rollback", detail=note,
                 refuse_unchanged=True, apply=True)


# -- a workspace's configuration (``ws.config``), with its permissions ----------------------

class WorkspaceConfigs(WorkspaceAccessor):
    """The configuration documents of one workspace's organisation, under its request context:
    reading needs ``data.read``; changing needs ``config.write`` (``connections.manage`` for
    connection documents). Authors and audit actors come from the context."""

    @property
    def _db(self) -> Oltp:
        return self.ws.stores.db

    def _may_change(self, kind: str) -> None:
        require(self.ctx, kind_of(kind).permission, self.org_id)

    @requires("data.read")
    def kinds(self) -> dict[str, str]:
        """Kind name -> what its documents hold."""
        return {k: spec.description for k, spec in KINDS.items()}

    @requires("data.read")
    def list(self, kind: str) -> builtins.list[ConfigVersion]:
        """The current documents of ``kind`` (secrets redacted)."""
        return [_redacted_row(kind, r) for r in documents(self._db, self.org_id, kind)]

    @requires("data.read")
    def show(self, kind: str, name: str, number: int | None = None) -> ConfigVersion:
        """One version (default: the current one), secrets redacted."""
        return _redacted_row(kind, version(self._db, self.org_id, kind, name, number))

    @requires("data.read")
    def history(self, kind: str, name: str) -> builtins.list[ConfigVersion]:
        return [_redacted_row(kind, r) for r in history(self._db, self.org_id, kind, name)]

    @requires("data.read")
    def diff(self, kind: str, name: str, from_version: int, to_version: int) -> ConfigDiff:
        return compare(self._db, self.org_id, kind, name, from_version, to_version)

    @requires("data.read")
    def validate(self, kind: str, name: str, body: Body | str | Path) -> Body:
        return redact(kind, validate(self._db, self.org_id, kind, name, read_document(body),
                                     key=self.ws.settings.credentials_key)) or {}

    @requires("config.write")
    def set(self, kind: str, name: str, body: Body | str | Path, *, comment: str = "") -> ConfigVersion:
        """Validate and save a document given as a mapping, YAML text or a YAML file."""
        self._may_change(kind)
        return save(self._db, self.org_id, kind, name, read_document(body), author=self.ctx.author,
                    comment=comment, actor=self.ctx.actor, key=self.ws.settings.credentials_key)

    @requires("config.write")
    def rollback(self, kind: str, name: str, to_version: int, *, comment: str = "") -> ConfigVersion:
        self._may_change(kind)
        return rollback(self._db, self.org_id, kind, name, to_version, author=self.ctx.author, comment=comment,
                        actor=self.ctx.actor, key=self.ws.settings.credentials_key)

    @requires("config.write")
    def remove(self, kind: str, name: str, *, comment: str = "") -> ConfigVersion:
        self._may_change(kind)
        return remove(self._db, self.org_id, kind, name, author=self.ctx.author, comment=comment,
                      actor=self.ctx.actor)


def _redacted_row(kind: str, row: ConfigVersion) -> ConfigVersion:
    if row.body is None or kind_of(kind).redact is None:
        return row
    return ConfigVersion(id=row.id, org_id=row.org_id, kind=row.kind, name=row.name, version=row.version,
                         body=redact(kind, row.body), author=row.author, comment=row.comment,
                         created_at=row.created_at)


def read_document(doc: Body | str | Path) -> Body:
    """A document given as a mapping, YAML text or the path of a YAML file."""
    if isinstance(doc, dict):
        return doc
    is_file = isinstance(doc, Path) or ("\n" not in doc and doc.endswith((".yaml", ".yml", ".json")))
    if is_file:
        path = Path(doc)
        if not path.is_file():
            raise NotFoundError(f"configuration file {path} does not exist")
        text = path.read_text()
    else:
        text = str(doc)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"the document is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValidationError("a configuration document is a YAML mapping (key: value lines)")
    return loaded
