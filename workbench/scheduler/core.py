"""The scheduler: which jobs are due, running them as notebooks under a lock, chaining stages
through the event log, retries and backfills.

- The schedule is ``scheduled/schedule.yaml`` (cron per job, the chain, retries), overridden per
  organisation by configuration documents of kind ``schedule`` named after the job.
- ``tick`` runs, for every organisation, first the chained stages whose events arrived (each
  event starts its stage once: the consumer's cursor is moved forward before the run, by a
  compare-and-set, so two schedulers never both take it), then every job whose latest cron slot
  has no run yet, and the failed runs whose back-off has passed.
- ``run_job`` holds the job's lock (``workbench.scheduler.locks``) for the run, records a
  ``job_runs`` row (trigger, slot, attempt, the executed notebook), executes the notebook
  (``workbench.scheduler.notebooks``), meters ``job_seconds`` and, when the run fails, puts a
  message in the in-app inbox of the organisation's admins.
- ``backfill`` cuts a range into windows and runs them in order; it resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter
from sqlalchemy import select, update

from workbench import usage
from workbench.errors import ConfigError, NotFoundError, ValidationError
from workbench.oltp import repo
from workbench.oltp.models import Backfill, EventCursor, InboxMessage, JobRun, Membership, User
from workbench.settings import new_id
from workbench.stores import Stores

JOBS = ("ingest", "transform", "evaluate_rules", "dispatch_notifications")
SCHEDULE_FILE = Path(__file__).resolve().parents[2] / "scheduled" / "schedule.yaml"
LOCK_TTL_SECONDS = 120  # renewed by a heartbeat while the run lives; a crashed run's lock expires
WINDOWED = {"ingest", "transform"}  # jobs that take start / end (backfills)


@dataclass(frozen=True)
class JobSpec:
    job: str
    cron: str
    parameters: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    origin: str = "default"


@dataclass(frozen=True)
class Schedule:
    jobs: dict[str, JobSpec]
    chain: dict[str, str]
    max_attempts: int
    backoff_minutes: float


@functools.cache
def _defaults(path: Path = SCHEDULE_FILE) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"the default schedule {path} is missing; reinstall the workbench from its source tree")
    doc = yaml.safe_load(path.read_text()) or {}
    for job, spec in (doc.get("jobs") or {}).items():
        if job not in JOBS:
            raise ConfigError(f"{path}: unknown job '{job}'; jobs: {', '.join(JOBS)}")
        if not croniter.is_valid(spec.get("cron", "")):
            raise ConfigError(f"{path}: job {job} has no valid cron expression")
    return doc


def load_schedule(stores: Stores, org_id: str) -> Schedule:
    """The organisation's schedule: the defaults, then its own ``schedule`` documents."""
    from workbench.oltp import configs

    doc = _defaults()
    jobs = {job: JobSpec(job, spec["cron"], dict(spec.get("parameters") or {}))
            for job, spec in doc["jobs"].items()}
    for name, row in configs.current(stores.db, org_id, "schedule").items():
        body = row.body or {}
        job = body.get("job", name)
        if job in JOBS:
            jobs[job] = JobSpec(job, body.get("cron", jobs.get(job, JobSpec(job, "* * * * *")).cron),
                                dict(body.get("parameters") or {}), bool(body.get("enabled", True)),
                                f"config v{row.version}")
    retries = doc.get("retries") or {}
    return Schedule(jobs, dict(doc.get("chain") or {}), int(retries.get("max_attempts", 3)),
                    float(retries.get("backoff_minutes", 5)))


def _utc(value: dt.datetime | None) -> dt.datetime:
    value = value or dt.datetime.now(dt.UTC)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def latest_slot(cron: str, now: dt.datetime) -> dt.datetime:
    """The most recent time at or before ``now`` the cron expression names (UTC)."""
    it = croniter(cron, now + dt.timedelta(microseconds=1))
    return _utc(it.get_prev(dt.datetime))


# -- running one job ---------------------------------------------------------------------------

@dataclass
class RunOutcome:
    job: str
    org_id: str | None
    status: str  # succeeded / failed / skipped (locked by another scheduler)
    run_id: str | None = None
    notebook: str | None = None
    error: str | None = None


def run_job(stores: Stores, org_id: str | None, job: str, parameters: dict[str, Any] | None = None, *,
            trigger: str = "manual", scheduled_for: dt.datetime | None = None, attempt: int = 1,
            now: dt.datetime | None = None, lock_ttl: float = LOCK_TTL_SECONDS) -> RunOutcome:
    """Run ``job`` for ``org_id`` (``None``: every organisation; dispatch only) as its notebook,
    holding the job's lock; ``skipped`` when another scheduler holds it."""
    from workbench.scheduler.locks import hold, job_locks

    if job not in JOBS:
        raise ValidationError(f"unknown job '{job}'; jobs: {', '.join(JOBS)}")
    if org_id is not None:
        repo.get_org(stores.db, org_id)
    locks = job_locks(stores.settings, stores.db, clock=(lambda: _utc(now)) if now else None)
    try:
        with hold(locks, f"{org_id or '*'}/{job}", lock_ttl) as lease:
            if lease is None:
                return RunOutcome(job, org_id, "skipped", error="another scheduler is running it")
            return _run_locked(stores, org_id, job, parameters, trigger, scheduled_for, attempt, now)
    finally:
        locks.close()


def _run_locked(stores: Stores, org_id: str | None, job: str, parameters: dict[str, Any] | None, trigger: str,
                scheduled_for: dt.datetime | None, attempt: int, now: dt.datetime | None) -> RunOutcome:
    """The body of ``run_job``, under the job's lock."""
    from workbench.scheduler.notebooks import run_notebook

    run_id = new_id()
    started = _utc(now)  # a tick's own time (``--now``), so back-offs compare like with like
    run = JobRun(id=run_id, org_id=org_id or _any_org(stores), job=job, parameters=parameters or {},
                 status="running", attempt=attempt, trigger=trigger, scheduled_for=scheduled_for,
                 started_at=started)
    with stores.db.session() as s:
        s.add(run)
    result = run_notebook(stores.settings, job, org_id, dict(parameters or {}), run_id, now=now)
    status = "succeeded" if result.ok else "failed"
    with stores.db.session() as s:
        row = s.get(JobRun, run_id)
        assert row is not None
        row.status, row.finished_at = status, started + dt.timedelta(seconds=result.seconds)
        row.notebook, row.error = str(result.path), result.error
    if org_id is not None:
        usage.meter(stores.db, org_id, "job_seconds", result.seconds, f"scheduled:{job}")
        if result.ok and job == "evaluate_rules":
            repo.append_event(stores.db, org_id, "rules.evaluated", {"run_id": run_id})
        if not result.ok:
            _alert_admins(stores, org_id, job, run_id, result.error or "failed", str(result.path))
    return RunOutcome(job, org_id, status, run_id, str(result.path), result.error)


def _any_org(stores: Stores) -> str:
    # dispatch for every organisation is recorded under the first one (job_runs needs an org)
    orgs = repo.list_orgs(stores.db)
    if not orgs:
        raise NotFoundError("there is no organisation yet: workbench orgs add")
    return orgs[0].id


def _alert_admins(stores: Stores, org_id: str, job: str, run_id: str, error: str, notebook: str) -> None:
    """A message in the in-app inbox of each admin (``admins`` when the install has no users)."""
    with stores.db.session() as s:
        admins = list(s.scalars(select(User.email).join(Membership, Membership.user_id == User.id).where(
            Membership.org_id == org_id, Membership.role == "admin")))
        for user in admins or ["admins"]:
            s.add(InboxMessage(id=new_id(), org_id=org_id, user=user,
                               title=f"scheduled job {job} failed",
                               body=f"run {run_id}: {error}\nexecuted notebook: {notebook}"))


# -- ticks -------------------------------------------------------------------------------------

def _claim_event(stores: Stores, org_id: str, consumer: str, kinds: list[str]) -> int | None:
    """The newest unconsumed event of ``kinds`` for ``consumer``, claimed (cursor moved to it by a
    compare-and-set); None when there is none or another scheduler claimed it first."""
    events = repo.events(stores.db, org_id)
    with stores.db.session() as s:
        cursor = s.get(EventCursor, (org_id, consumer))
        if cursor is None:
            s.add(EventCursor(org_id=org_id, consumer=consumer, last_seq=0))
            last = 0
        else:
            last = cursor.last_seq
    pending = [e for e in events if e.seq > last and e.kind in kinds]
    if not pending:
        return None
    newest = max(e.seq for e in pending)  # several pending events start the stage once
    with stores.db.session() as s:
        moved = s.execute(update(EventCursor).where(
            EventCursor.org_id == org_id, EventCursor.consumer == consumer, EventCursor.last_seq == last)
            .values(last_seq=newest)).rowcount  # type: ignore[attr-defined]
    return newest if moved else None


def _due(stores: Stores, org_id: str, spec: JobSpec, schedule: Schedule,
         now: dt.datetime) -> tuple[dt.datetime, int] | None:
    """(slot, attempt) when the job's latest cron slot has no run yet, or its last run for that
    slot failed and the back-off has passed; None otherwise."""
    slot = latest_slot(spec.cron, now)
    with stores.db.session() as s:
        runs = list(s.scalars(select(JobRun).where(
            JobRun.org_id == org_id, JobRun.job == spec.job, JobRun.trigger == "schedule",
            JobRun.scheduled_for == slot).order_by(JobRun.attempt.desc())))
    if not runs:
        return slot, 1
    last = runs[0]
    if last.status == "running" and _crashed(stores, org_id, spec.job, last, now):
        return slot, last.attempt + 1  # no back-off: the run never finished, it did not fail
    if last.status != "failed" or last.attempt >= schedule.max_attempts or not transient(last.error):
        return None
    finished = _utc(last.finished_at or last.started_at)
    if now < finished + dt.timedelta(minutes=schedule.backoff_minutes * 2 ** (last.attempt - 1)):
        return None
    return slot, last.attempt + 1


def _run_chain(stores: Stores, org: str, schedule: Schedule, now: dt.datetime) -> list[RunOutcome]:
    """Every chained stage whose events arrived, until none is left (a stage's own event can
    start the next one: ingest.done -> transform -> gold.ready -> evaluate_rules -> ...)."""
    outcomes: list[RunOutcome] = []
    for _ in range(len(schedule.chain) + 1):
        started = False
        for job in dict.fromkeys(schedule.chain.values()):
            kinds = [k for k, j in schedule.chain.items() if j == job]
            seq = _claim_event(stores, org, job, kinds)
            if seq is not None:
                spec = schedule.jobs.get(job, JobSpec(job, "* * * * *"))
                outcomes.append(run_job(stores, org, job, spec.parameters, trigger=f"event:{seq}", now=now))
                started = True
        if not started:
            break
    return outcomes


def transient(error: str | None) -> bool:
    """Whether a failed run's error (``"<ExceptionName>: message"``) is worth retrying: a
    ``TransientError`` of any kind (a platform's 5xx or throttle, a lost commit race), a kernel
    that died or a cell that timed out, a run whose process died. A wrong parameter or bad credentials fail for good."""
    import workbench.errors as errors
    from connectors import base as connector_errors

    from connectors import http as connector_http

    name = (error or "").split(":", 1)[0].strip()
    if name in ("DeadKernelError", "CellTimeoutError") or (error or "").startswith("the run stopped without finishing"):
        return True
    cls = next((getattr(m, name) for m in (errors, connector_errors, connector_http) if hasattr(m, name)), None)
    return isinstance(cls, type) and issubclass(cls, errors.TransientError)


def _crashed(stores: Stores, org_id: str, job: str, run: JobRun, now: dt.datetime) -> bool:
    """Whether a run still marked running has no process any more: its lock is free (the
    holder's lease expired or its connection closed). Such a run is marked failed."""
    from workbench.scheduler.locks import job_locks

    locks = job_locks(stores.settings, stores.db, clock=lambda: now)
    try:
        lease = locks.acquire(f"{org_id}/{job}", 1.0)
        if lease is None:
            return False  # still running somewhere
        locks.release(lease)
    finally:
        locks.close()
    with stores.db.session() as s:
        row = s.get(JobRun, run.id)
        if row is None or row.status != "running":
            return False
        row.status, row.finished_at = "failed", now
        row.error = "the run stopped without finishing (its process died); its lock expired"
    return True


def tick(stores: Stores, now: dt.datetime | None = None, orgs: list[str] | None = None) -> list[RunOutcome]:
    """For every organisation (or ``orgs``): the chained stages already waiting, every due job,
    then the stages those jobs started; each once."""
    now = _utc(now)
    outcomes: list[RunOutcome] = []
    for org in orgs or [o.id for o in repo.list_orgs(stores.db)]:
        schedule = load_schedule(stores, org)
        outcomes += _run_chain(stores, org, schedule, now)
        for spec in schedule.jobs.values():
            if not spec.enabled:
                continue
            due = _due(stores, org, spec, schedule, now)
            if due is not None:
                slot, attempt = due
                outcomes.append(run_job(stores, org, spec.job, spec.parameters, trigger="schedule",
                                        scheduled_for=slot, attempt=attempt, now=now))
        outcomes += _run_chain(stores, org, schedule, now)
    return outcomes


# -- backfills ---------------------------------------------------------------------------------

def backfill(stores: Stores, org_id: str, job: str, start: dt.date, end: dt.date, *, window_days: int = 7,
             parameters: dict[str, Any] | None = None) -> Backfill:
    """Run ``job`` over ``start``..``end`` in windows of ``window_days``, in order; a failed
    window stops it (status failed); the same call again resumes from the failed window."""
    if job not in WINDOWED:
        raise ValidationError(f"only {', '.join(sorted(WINDOWED))} take a window; {job} cannot be backfilled")
    if end < start or window_days < 1:
        raise ValidationError("a backfill needs --from before --to and a window of at least one day")
    with stores.db.session() as s:
        row = s.scalar(select(Backfill).where(Backfill.org_id == org_id, Backfill.job == job, Backfill.start == start,
                                              Backfill.end == end, Backfill.status != "done"))
        if row is None:
            row = Backfill(id=new_id(), org_id=org_id, job=job, start=start, end=end, window_days=window_days,
                           parameters=parameters or {}, next_start=start, status="running")
            s.add(row)
        backfill_id = row.id
    while True:
        with stores.db.session() as s:
            row = s.get(Backfill, backfill_id)
            assert row is not None
            first = row.next_start
            if first > row.end:
                row.status = "done"
                return row
            last = min(row.end, first + dt.timedelta(days=row.window_days - 1))
            params = {**row.parameters, "start": first.isoformat(), "end": last.isoformat()}
            row.status = "running"
        outcome = run_job(stores, org_id, job, params, trigger=f"backfill:{backfill_id}")
        with stores.db.session() as s:
            row = s.get(Backfill, backfill_id)
            assert row is not None
            if outcome.status != "succeeded":
                row.status, row.error = "failed", f"window {first}..{last}: {outcome.error}"
                return row
            row.next_start, row.error = last + dt.timedelta(days=1), None


def history(stores: Stores, org_id: str | None = None, limit: int = 50) -> list[JobRun]:
    """The newest scheduled runs (trigger set), of one organisation or all."""
    query = select(JobRun).where(JobRun.trigger.is_not(None))
    if org_id is not None:
        query = query.where(JobRun.org_id == org_id)
    with stores.db.session() as s:
        return list(s.scalars(query.order_by(JobRun.started_at.desc()).limit(limit)))
