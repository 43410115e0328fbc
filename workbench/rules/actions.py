"""Platform actions of rules: pause, resume, set or change a budget; planned, gated, audited.

A rule's action (``{"type": "change_budget", "by_percent": -20, "floor": 50}``) becomes one
``ActionRequest`` row per entity, whose ``status`` moves like this::

    request_action ──┬─ nothing to change ───────── noop
                     ├─ mode dry_run ────────────── dry_run            (the platform is only read)
                     ├─ mode approval ───────────── pending_approval ──┬─ reject ─▶ rejected
                     │                                                 ├─ expiry ─▶ expired
                     │                                                 └─ approve ─▶ approved ─┐
                     └─ mode execute ────────────── approved ──────────────────────────────────┤
                                                                     executed ◀─ the writer ◀──┘
                                                                     failed (params.retryable)
    undo(executed) ─▶ a new request (approved ─▶ executed | failed), params.undo_of = the original

``before``/``after`` hold the entity's state around the change (the would-be ``after`` until it
is executed) and ``undo`` the spec that reverts it. The row is written, with its planned target,
before the platform is called; the platform call carries the row's idempotency key. So a crash
between the call and the commit, or a timeout after the platform acted, leaves a row that the
next ``request_action`` of the same evaluation (or ``approve``) finishes without acting twice.

Audit: every decision and platform change is an audit event (``workbench.audit``) on the
request, with the entity's before/after: ``action.approve``, ``action.reject``,
``action.execute``, ``action.undo`` (on the undone request) and ``action.fail`` (a platform
call that failed). The actor is the ``actor`` given (a request context's: ``token:<id>``...),
else ``user:<user>`` for approve/reject/undo, else ``local:<login>`` of the process.

Guardrails: ``change_budget`` clamps at ``floor``/``ceiling``; a clamp stops a change, never
reverses it (a budget already under the floor is not raised by a cut). ``set_budget`` with an
amount outside its own floor/ceiling is refused when the rule is read: both numbers are in the
same document, so one of them is a typo. Amounts are in the entity's own currency (the account
currency); an optional ``currency`` in the spec refuses entities billed in another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from connectors.base import (
    WRITE_LEVELS,
    EntityState,
    PermanentWriteError,
    PlatformWriter,
    TransientWriteError,
    WriteError,
    WriteResult,
    money,
)
from workbench import audit
from workbench.errors import NotFoundError, ValidationError
from workbench.oltp.db import Oltp
from workbench.oltp.models import ActionRequest
from workbench.settings import new_id

Mode = Literal["dry_run", "approval", "execute"]
MODES: tuple[str, ...] = ("dry_run", "approval", "execute")
DEFAULT_APPROVAL_TTL = dt.timedelta(hours=24)
WriterFor = Callable[[str], PlatformWriter]  # platform -> that platform's writer for the org
ACTOR_PREFIXES = ("user:", "token:", "local:")  # the actor forms of audit events
log = logging.getLogger("workbench.rules.actions")


# -- action specs ----------------------------------------------------------------------------

class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pause(_Spec):
    """Stop delivery."""

    type: Literal["pause"]


class Resume(_Spec):
    """Restart delivery."""

    type: Literal["resume"]


class _Budget(_Spec):
    floor: Decimal | None = Field(None, ge=0)
    ceiling: Decimal | None = Field(None, gt=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")

    def _check_bounds(self) -> None:
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ValueError(f"floor {self.floor} is above ceiling {self.ceiling}")


class SetBudget(_Budget):
    """Set the budget to ``amount`` (refused when outside its own floor/ceiling)."""

    type: Literal["set_budget"]
    amount: Decimal = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> SetBudget:
        self._check_bounds()
        if self.floor is not None and self.amount < self.floor:
            raise ValueError(f"amount {self.amount} is below floor {self.floor}; fix one of them")
        if self.ceiling is not None and self.amount > self.ceiling:
            raise ValueError(f"amount {self.amount} is above ceiling {self.ceiling}; fix one of them")
        return self


class ChangeBudget(_Budget):
    """Change the budget ``by_percent`` (-20 is a 20% cut) or ``by_amount``, within floor/ceiling."""

    type: Literal["change_budget"]
    by_percent: Decimal | None = Field(None, gt=-100, le=1000)
    by_amount: Decimal | None = None

    @model_validator(mode="after")
    def _check(self) -> ChangeBudget:
        if (self.by_percent is None) == (self.by_amount is None):
            raise ValueError("give exactly one of by_percent (e.g. -20) or by_amount (e.g. 25)")
        if (self.by_percent if self.by_amount is None else self.by_amount) == 0:
            raise ValueError("a change of 0 does nothing; remove the action or give a change")
        self._check_bounds()
        return self


Spec = Pause | Resume | SetBudget | ChangeBudget
_SPECS: TypeAdapter[Spec] = TypeAdapter(Annotated[Spec, Field(discriminator="type")])
_CLASSES: dict[str, type[_Spec]] = {"pause": Pause, "resume": Resume, "set_budget": SetBudget,
                                    "change_budget": ChangeBudget}
ACTION_TYPES = tuple(_CLASSES)


def parse_action(document: Mapping[str, Any] | Spec) -> Spec:
    """The spec of a platform action from its rule-document form; errors say what to fix."""
    if isinstance(document, Pause | Resume | SetBudget | ChangeBudget):
        return document
    data = dict(document)
    kind = data.get("type")
    if kind not in _CLASSES:
        got = "no 'type'" if kind is None else f"type '{kind}'"
        raise ValidationError(f"platform action with {got}: the type is one of {', '.join(ACTION_TYPES)}")
    try:
        return _SPECS.validate_python(data)
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"][1:])
            if err["type"] == "extra_forbidden":
                fields = [f for f in _CLASSES[kind].model_fields if f != "type"]
                problems.append(f"unknown field '{where}' (fields: {', '.join(fields) or 'none'})")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{where}: {msg}" if where else msg)
        raise ValidationError(f"action '{kind}': " + "; ".join(problems)) from None


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The spec as it reads in a rule document (numbers as numbers, unset fields left out)."""
    def number(v: Any) -> Any:
        return (int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v
    return {k: number(v) for k, v in spec.model_dump(exclude_none=True).items()}


# -- planning --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What an action would do to one entity: ``op`` is None when it would change nothing."""

    op: Literal["pause", "resume", "set_budget"] | None
    before: EntityState
    after: EntityState
    amount: Decimal | None = None  # the budget to set
    undo: dict[str, Any] | None = None
    note: str = ""

    @property
    def noop(self) -> bool:
        return self.op is None


def plan_action(spec: Spec, state: EntityState) -> Plan:
    """The change ``spec`` makes to an entity in ``state``, with guardrails and the undo.

    Raises ``ValidationError`` when the action cannot apply (archived entity, no budget,
    another currency, a budget that would drop to 0 or less).
    """
    if state.status == "archived":
        raise ValidationError("the entity is archived; archived entities cannot be changed")
    if isinstance(spec, Pause | Resume):
        status = "paused" if isinstance(spec, Pause) else "active"
        if state.status == status:
            return Plan(None, state, state, note=f"already {status}")
        after = EntityState(status, state.budget, state.budget_type, state.currency)
        return Plan(spec.type, state, after, undo=_undo_for(spec.type, state))
    if state.budget is None:
        raise ValidationError("the entity has no budget of its own (it is set on its parent)")
    if spec.currency is not None and state.currency is not None and spec.currency != state.currency:
        raise ValidationError(f"the action's amounts are in {spec.currency} but the entity's budget "
                              f"is in {state.currency}")
    current = state.budget
    target, note = _target_budget(spec, current)
    if target == current:
        return Plan(None, state, state, note=note or f"budget already {current}")
    after = EntityState(state.status, target, state.budget_type, state.currency)
    return Plan("set_budget", state, after, target, _undo_for("set_budget", state), note)


def _target_budget(spec: SetBudget | ChangeBudget, current: Decimal) -> tuple[Decimal, str]:
    if isinstance(spec, SetBudget):
        return money(spec.amount), ""
    if spec.by_percent is not None:
        raw = money(current * (1 + spec.by_percent / 100))
    else:
        assert spec.by_amount is not None
        raw = money(current + spec.by_amount)
    target, note = raw, ""
    if raw < current and spec.floor is not None and raw < spec.floor:
        floor = money(spec.floor)
        if floor >= current:
            return current, f"budget {current} is already at or below the floor {floor}"
        target, note = floor, f"clamped at the floor {floor} (the change asked for {raw})"
    if raw > current and spec.ceiling is not None and raw > spec.ceiling:
        ceiling = money(spec.ceiling)
        if ceiling <= current:
            return current, f"budget {current} is already at or above the ceiling {ceiling}"
        target, note = ceiling, f"clamped at the ceiling {ceiling} (the change asked for {raw})"
    if target <= 0:
        raise ValidationError(f"the change would take the budget from {current} to {target}; give "
                              "a floor above 0, or use pause to stop delivery")
    return target, note


def _undo_for(op: str, before: EntityState) -> dict[str, Any]:
    if op == "pause":
        return {"type": "resume"}
    if op == "resume":
        return {"type": "pause"}
    assert before.budget is not None
    return spec_to_dict(SetBudget(type="set_budget", amount=before.budget))


def action_key(org_id: str, rule: str | None, evaluation_id: str | None, platform: str,
               level: str, entity_id: str, spec: Spec) -> str:
    """The idempotency key of one action of one evaluation on one entity."""
    text = json.dumps([org_id, rule, evaluation_id, platform, level, entity_id, spec_to_dict(spec)],
                      sort_keys=True, separators=(",", ":"))
    return "act-" + hashlib.sha256(text.encode()).hexdigest()[:40]


# -- requests --------------------------------------------------------------------------------

def request_action(db: Oltp, org_id: str, *, rule: str | None, evaluation_id: str | None,
                   platform: str, level: str, entity_id: str,
                   spec: Mapping[str, Any] | Spec, mode: Mode = "dry_run",
                   writer: PlatformWriter, now: dt.datetime | None = None,
                   approval_ttl: dt.timedelta = DEFAULT_APPROVAL_TTL, actor: str | None = None) -> ActionRequest:
    """Record (and in ``execute`` mode apply) one platform action on one entity.

    Idempotent per (org, rule, evaluation, platform, level, entity, spec): a repeat returns the
    existing row, finishing it first if it was left half-done (a crash after the platform call,
    a transient failure). For one-off actions outside a rule, pass a fresh ``evaluation_id``.
    Refusals and platform failures are recorded as ``failed`` rows with the error, not raised.
    ``actor`` (``user:...``, ``token:...``) is who the audit events of an execution name;
    default ``local:<login>``.
    """
    parsed = parse_action(spec)
    if mode not in MODES:
        raise ValidationError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    if level not in WRITE_LEVELS:
        raise ValidationError(f"platform actions apply to {', '.join(WRITE_LEVELS)}, not {level}")
    if writer.platform != platform:
        raise ValueError(f"writer for {writer.platform} given for a {platform} action")
    now = _utc(now)
    key = action_key(org_id, rule, evaluation_id, platform, level, entity_id, parsed)
    for _ in range(3):
        existing = _by_key(db, org_id, key)
        if existing is not None:
            if existing.params.get("target") is not None and _resumable(existing):
                return _execute(db, existing, writer, now, actor)
            if not _resumable(existing):
                return existing
        params: dict[str, Any] = {"spec": spec_to_dict(parsed), "mode": mode}
        values: dict[str, Any] = {"status": "failed", "params": params}
        try:
            plan = plan_action(parsed, writer.read(level, entity_id))
        except (ValidationError, WriteError) as exc:
            values["error"] = str(exc)
            params["retryable"] = isinstance(exc, TransientWriteError)
        else:
            values.update(_planned(plan, params, mode, rule, now, approval_ttl))
        if existing is not None:
            _transition(db, existing, ("failed",), **values)
        elif not _insert(db, ActionRequest(
                id=new_id(), org_id=org_id, rule=rule, evaluation_id=evaluation_id,
                platform=platform, level=level, entity_id=entity_id, kind=parsed.type,
                idempotency_key=key, created_at=now, **values)):
            continue  # another process recorded this action first: take its row
        row = _by_key(db, org_id, key)
        assert row is not None
        return _execute(db, row, writer, now, actor) if row.status == "approved" else row
    raise ValidationError(f"could not record the {parsed.type} action on {level} {entity_id}")


def _planned(plan: Plan, params: dict[str, Any], mode: str, rule: str | None, now: dt.datetime,
             ttl: dt.timedelta) -> dict[str, Any]:
    if plan.note:
        params["note"] = plan.note
    values: dict[str, Any] = {"before": plan.before.to_dict(), "after": plan.after.to_dict(),
                              "undo": plan.undo, "error": None, "params": params}
    if plan.noop:
        return {**values, "status": "noop"}
    params["target"] = {"op": plan.op, "amount": None if plan.amount is None else str(plan.amount)}
    if mode == "dry_run":
        return {**values, "status": "dry_run"}
    if mode == "approval":
        return {**values, "status": "pending_approval", "expires_at": now + ttl}
    return {**values, "status": "approved", "decided_by": f"rule:{rule}" if rule else "auto",
            "decided_at": now}


def approve(db: Oltp, org_id: str, request_id: str, user: str, writer_for: WriterFor,
            now: dt.datetime | None = None, *, actor: str | None = None) -> ActionRequest:
    """Approve a pending request and apply it. Approving an executed request returns it as is;
    an expired one is marked ``expired`` and refused. ``actor`` names the approver in the audit
    events when it is more than ``user:<user>`` (a token)."""
    now = _utc(now)
    who = _actor(user, actor)
    row = get_request(db, org_id, request_id)
    if row.status == "executed":
        return row
    if _resumable(row) and row.decided_by:  # approved earlier, left half-done: finish it
        return _execute(db, row, writer_for(row.platform), now, who)
    if row.status != "pending_approval":
        raise ValidationError(f"action request {request_id} is {row.status}; only a request pending "
                              "approval can be approved")
    if row.expires_at is not None and _utc(row.expires_at) <= now:
        _transition(db, row, ("pending_approval",), status="expired")
        raise ValidationError(f"action request {request_id} expired at {_utc(row.expires_at):%Y-%m-%d %H:%M} "
                              f"UTC and was not applied; the rule asks again the next time it fires")
    if not _transition(db, row, ("pending_approval",), status="approved", decided_by=user,
                       decided_at=now):
        return approve(db, org_id, request_id, user, writer_for, now, actor=actor)  # decided meanwhile
    _audit(db, row, "action.approve", who, row.before, row.after)
    return _execute(db, get_request(db, org_id, request_id), writer_for(row.platform), now, who)


def reject(db: Oltp, org_id: str, request_id: str, user: str, now: dt.datetime | None = None,
           reason: str | None = None, *, actor: str | None = None) -> ActionRequest:
    """Reject a pending request (nothing is applied); audited with the change it would have made."""
    now = _utc(now)
    row = get_request(db, org_id, request_id)
    if row.status == "rejected":
        return row
    params = {**row.params, **({"reason": reason} if reason else {})}
    if row.status != "pending_approval" or not _transition(
            db, row, ("pending_approval",), status="rejected", decided_by=user, decided_at=now,
            params=params):
        raise ValidationError(f"action request {request_id} is {get_request(db, org_id, request_id).status}; "
                              "only a request pending approval can be rejected")
    _audit(db, row, "action.reject", _actor(user, actor), row.before, row.after,
           f"reason: {reason}" if reason else "")
    return get_request(db, org_id, request_id)


def expire_pending(db: Oltp, org_id: str, now: dt.datetime | None = None) -> int:
    """Mark the organisation's requests whose approval time ran out as ``expired``; how many."""
    with db.session() as s:
        result = s.execute(update(ActionRequest).where(
            ActionRequest.org_id == org_id, ActionRequest.status == "pending_approval",
            ActionRequest.expires_at <= _utc(now)).values(status="expired"))
        return int(result.rowcount)  # type: ignore[attr-defined]


def undo(db: Oltp, org_id: str, request_id: str, user: str, writer_for: WriterFor,
         now: dt.datetime | None = None, *, actor: str | None = None) -> ActionRequest:
    """Revert an executed request: a new request applying its recorded undo (params.undo_of).

    Refused when the entity changed since (the undo would overwrite someone's later change).
    Undoing twice returns the first undo. Audited as ``action.undo`` on the undone request.
    """
    now = _utc(now)
    who = _actor(user, actor)
    original = get_request(db, org_id, request_id)
    if original.status != "executed" or not original.undo:
        raise ValidationError(f"action request {request_id} is {original.status}; only an executed "
                              "action can be undone")
    key = f"undo-{original.id}"
    writer = writer_for(original.platform)
    existing = _by_key(db, org_id, key)
    if existing is not None:
        return _execute(db, existing, writer, now, who) if _resumable(existing) else existing
    spec = parse_action(original.undo)
    current = writer.read(original.level, original.entity_id)
    assert original.after is not None
    left = EntityState.from_dict(original.after)
    if (current.status, current.budget) != (left.status, left.budget):
        raise ValidationError(
            f"{original.level} {original.entity_id} changed since request {request_id}: it left "
            f"{_describe(left)}, it is now {_describe(current)}; undo would overwrite that change")
    plan = plan_action(spec, current)
    params: dict[str, Any] = {"spec": spec_to_dict(spec), "mode": "execute", "undo_of": original.id}
    values = _planned(plan, params, "execute", None, now, DEFAULT_APPROVAL_TTL)
    values["decided_by"] = user
    _insert(db, ActionRequest(
        id=new_id(), org_id=org_id, rule=original.rule, evaluation_id=None,
        platform=original.platform, level=original.level, entity_id=original.entity_id,
        kind=spec.type, idempotency_key=key, created_at=now, **values))
    row = _by_key(db, org_id, key)
    assert row is not None
    row = _execute(db, row, writer, now, who) if row.status == "approved" else row
    if row.status == "executed":
        _transition(db, original, ("executed",), params={**original.params, "undone_by": row.id})
    return row


def get_request(db: Oltp, org_id: str, request_id: str) -> ActionRequest:
    """One action request of the organisation (``NotFoundError`` for another org's id)."""
    with db.session() as s:
        row = s.scalar(select(ActionRequest).where(ActionRequest.org_id == org_id,
                                                   ActionRequest.id == request_id))
    if row is None:
        raise NotFoundError(f"action request {request_id} not found in '{org_id}'")
    return row


_COLUMNS: dict[str, Any] = {
    "id": pl.String, "created_at": pl.Datetime("us", "UTC"), "rule": pl.String,
    "evaluation_id": pl.String, "platform": pl.String, "level": pl.String,
    "entity_id": pl.String, "kind": pl.String, "status": pl.String, "before_status": pl.String,
    "after_status": pl.String, "before_budget": pl.Float64, "after_budget": pl.Float64,
    "currency": pl.String, "note": pl.String, "error": pl.String,
    "expires_at": pl.Datetime("us", "UTC"), "decided_by": pl.String,
    "decided_at": pl.Datetime("us", "UTC"), "executed_at": pl.Datetime("us", "UTC"),
    "undo": pl.String, "undo_of": pl.String, "undone_by": pl.String,
}


def list_requests(db: Oltp, org_id: str, status: str | None = None) -> pl.DataFrame:
    """The organisation's action requests, oldest first, optionally of one status."""
    q = select(ActionRequest).where(ActionRequest.org_id == org_id)
    if status is not None:
        q = q.where(ActionRequest.status == status)
    with db.session() as s:
        rows = list(s.scalars(q.order_by(ActionRequest.created_at, ActionRequest.id)))

    def when(value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else _utc(value)

    records = [{
        "id": r.id, "created_at": when(r.created_at), "rule": r.rule,
        "evaluation_id": r.evaluation_id, "platform": r.platform, "level": r.level,
        "entity_id": r.entity_id, "kind": r.kind, "status": r.status,
        "before_status": (r.before or {}).get("status"), "after_status": (r.after or {}).get("status"),
        "before_budget": (r.before or {}).get("budget"), "after_budget": (r.after or {}).get("budget"),
        "currency": (r.before or {}).get("currency"), "note": r.params.get("note"),
        "error": r.error, "expires_at": when(r.expires_at), "decided_by": r.decided_by,
        "decided_at": when(r.decided_at), "executed_at": when(r.executed_at),
        "undo": None if r.undo is None else json.dumps(r.undo),
        "undo_of": r.params.get("undo_of"), "undone_by": r.params.get("undone_by"),
    } for r in rows]
    return pl.DataFrame(records, schema=_COLUMNS)


# -- execution and storage -------------------------------------------------------------------

def _execute(db: Oltp, row: ActionRequest, writer: PlatformWriter, now: dt.datetime,
             actor: str | None) -> ActionRequest:
    """Apply an approved (or retryable failed) request's planned target through ``writer``;
    ``actor`` is who the audit event names (None: the local operator)."""
    if not (row.status == "approved" or _resumable(row)) or row.params.get("target") is None:
        return row
    target = row.params["target"]
    assert row.before is not None and row.after is not None
    planned_before, planned_after = EntityState.from_dict(row.before), EntityState.from_dict(row.after)
    field = "budget" if target["op"] == "set_budget" else "status"
    params = {k: v for k, v in row.params.items() if k != "retryable"}
    try:
        current = writer.read(row.level, row.entity_id)
        if getattr(current, field) not in (getattr(planned_before, field), getattr(planned_after, field)):
            raise PermanentWriteError(
                f"{row.level} {row.entity_id} changed since the action was planned: it was "
                f"{_describe(planned_before)}, it is now {_describe(current)}; not applied")
        result = _call(writer, row, target)
    except WriteError as exc:
        params["retryable"] = isinstance(exc, TransientWriteError)
        if _transition(db, row, ("approved", "failed"), status="failed", error=str(exc), params=params):
            what = "undo" if row.params.get("undo_of") else "execution"
            _audit(db, row, "action.fail", actor, row.before, row.after,
                   f"{what} failed ({'will retry' if params['retryable'] else 'final'}): {exc}")
        return _reload(db, row)
    # A platform that found the change already made (a retry whose key it no longer knows)
    # reports before == after; the planned before is then the state the change started from.
    before = result.before if result.before != result.after else planned_before
    # Audited only by the process whose update took the row: a concurrent finisher of the same
    # request (its platform call replayed by the idempotency key) changed nothing.
    if _transition(db, row, ("approved", "failed"), status="executed", error=None, params=params,
                   before=before.to_dict(), after=result.after.to_dict(),
                   undo=_undo_for(target["op"], before), executed_at=now):
        undo_of = row.params.get("undo_of")
        if undo_of:  # on the undone request, where a reviewer looks for what became of it
            _audit(db, row, "action.undo", actor, before.to_dict(), result.after.to_dict(),
                   f"reverted by request {row.id}", target_id=undo_of)
        else:
            _audit(db, row, "action.execute", actor, before.to_dict(), result.after.to_dict(),
                   "replayed: the platform had already applied it" if result.replayed else "")
    return _reload(db, row)


def _actor(user: str | None, actor: str | None) -> str:
    """Who an audit event names: ``actor`` when given, ``user:<user>`` for a deciding user, else
    the local operator (a rule evaluation run from the command line or a scheduler)."""
    if actor:
        return actor
    if user:
        return user if user.startswith(ACTOR_PREFIXES) else f"user:{user}"
    from workbench.formulas.definitions import default_author  # only here: rules need not load formulas

    return f"local:{default_author()}"


def _audit(db: Oltp, row: ActionRequest, action: str, actor: str | None, before: dict[str, Any] | None,
           after: dict[str, Any] | None, note: str = "", *, target_id: str | None = None) -> None:
    """One audit event on an action request. The change is already committed (and on the
    platform): a failure to audit it is logged loudly rather than reported as a failed action."""
    detail = f"{row.kind} on {row.platform} {row.level} {row.entity_id}"
    detail += f", rule {row.rule}" if row.rule else ""
    detail += f"; {note}" if note else ""
    try:
        audit.record(db, org_id=row.org_id, actor=_actor(None, actor), action=action, target_kind="action_request",
                     target_id=target_id or row.id, before=before, after=after, detail=detail)
    except Exception as exc:
        log.error("audit event %s on action request %s of '%s' not recorded: %s", action, row.id,
                  row.org_id, exc)


def _call(writer: PlatformWriter, row: ActionRequest, target: dict[str, Any]) -> WriteResult:
    key = row.idempotency_key
    if target["op"] == "pause":
        return writer.pause(row.level, row.entity_id, key)
    if target["op"] == "resume":
        return writer.resume(row.level, row.entity_id, key)
    return writer.set_budget(row.level, row.entity_id, Decimal(target["amount"]), key)


def _resumable(row: ActionRequest) -> bool:
    """Left half-done: approved but not finished (a crash), or failed transiently."""
    return row.status == "approved" or (row.status == "failed" and bool(row.params.get("retryable")))


def _describe(state: EntityState) -> str:
    budget = "" if state.budget is None else f", budget {state.budget} {state.currency or ''}".rstrip()
    return f"{state.status}{budget}"


def _utc(value: dt.datetime | None) -> dt.datetime:
    """Aware UTC (SQLite hands back naive datetimes, which are UTC here)."""
    if value is None:
        return dt.datetime.now(dt.UTC)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _by_key(db: Oltp, org_id: str, key: str) -> ActionRequest | None:
    with db.session() as s:
        return s.scalar(select(ActionRequest).where(ActionRequest.org_id == org_id,
                                                    ActionRequest.idempotency_key == key))


def _reload(db: Oltp, row: ActionRequest) -> ActionRequest:
    return get_request(db, row.org_id, row.id)


def _insert(db: Oltp, row: ActionRequest) -> bool:
    """Insert; False when the idempotency key is taken (another process got there first)."""
    try:
        with db.session() as s:
            s.add(row)
        return True
    except IntegrityError:
        if _by_key(db, row.org_id, row.idempotency_key) is None:
            raise NotFoundError(f"organisation '{row.org_id}' does not exist") from None
        return False


def _transition(db: Oltp, row: ActionRequest, from_status: tuple[str, ...], **values: Any) -> bool:
    """Update the row only if it is still in one of ``from_status``; whether it was."""
    with db.session() as s:
        result = s.execute(update(ActionRequest).where(
            ActionRequest.id == row.id, ActionRequest.org_id == row.org_id,
            ActionRequest.status.in_(from_status)).values(**values))
        return int(result.rowcount) == 1  # type: ignore[attr-defined]
