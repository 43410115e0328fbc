"""`workbench schedule list|tick|run|backfill|history` and `workbench worker`: scheduled notebooks."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import polars as pl
import typer

from workbench.cli_common import Format, FromOpt, ToOpt, _date, err, key_values, operator_only, out, print_frame

schedule_app = typer.Typer(help="Scheduled notebooks: `workbench schedule tick` (from cron every minute).",
                           no_args_is_help=True)
OrgOption = Annotated[str | None, typer.Option("--org", help="Organisation slug (default: every organisation).")]


def _stores():  # type: ignore[no-untyped-def]
    from workbench.stores import get_stores

    return get_stores()


def _outcomes(outcomes: list) -> None:  # type: ignore[type-arg]
    if not outcomes:
        out.print("nothing due")
        return
    print_frame(pl.DataFrame([{"org": o.org_id, "job": o.job, "status": o.status, "run": o.run_id,
                               "error": o.error, "notebook": o.notebook} for o in outcomes],
                             schema={"org": pl.String, "job": pl.String, "status": pl.String, "run": pl.String,
                                     "error": pl.String, "notebook": pl.String}), "runs")
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


@schedule_app.callback()
def _operator_only() -> None:
    operator_only("schedule")  # runs jobs of every organisation


@schedule_app.command("list")
def list_(org: OrgOption = None) -> None:
    """Each organisation's jobs: cron, parameters, where the schedule comes from, the next run.

    Example: `workbench schedule list --org acme`
    """
    from croniter import croniter

    from workbench.oltp import repo
    from workbench.scheduler.core import load_schedule

    stores = _stores()
    now = dt.datetime.now(dt.UTC)
    rows = []
    for o in [org] if org else [x.id for x in repo.list_orgs(stores.db)]:
        for spec in load_schedule(stores, o).jobs.values():
            rows.append({"org": o, "job": spec.job, "cron": spec.cron, "enabled": spec.enabled,
                         "parameters": str(spec.parameters), "from": spec.origin,
                         "next_run": croniter(spec.cron, now).get_next(dt.datetime)})
    print_frame(pl.DataFrame(rows, schema={"org": pl.String, "job": pl.String, "cron": pl.String, "enabled": pl.Boolean,
                                           "parameters": pl.String, "from": pl.String,
                                           "next_run": pl.Datetime("us", "UTC")}))


@schedule_app.command("tick")
def tick(org: OrgOption = None,
         now: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%dT%H:%M"], help="Pretend it is this UTC time.")] = None) -> None:
    """Run every chained stage and every due job once (for cron or a systemd timer, every minute).
    Exits 1 when a run failed.

    Example: `* * * * * cd /srv/workbench && .venv/bin/workbench schedule tick >> runs.log 2>&1`
    """
    from workbench.scheduler.core import tick as run_tick

    _outcomes(run_tick(_stores(), now.replace(tzinfo=dt.UTC) if now else None, [org] if org else None))


@schedule_app.command("run")
def run(job: str, org: Annotated[str, typer.Option("--org", help="Organisation slug.")],
        param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Notebook parameter KEY=VALUE.")] = None) -> None:
    """Run one job now (its lock still holds: refused while another run of it is going).

    Example: `workbench schedule run ingest --org acme -p start=2026-11-01 -p end=2026-11-07`
    """
    from workbench.scheduler.core import run_job

    params = key_values(param, "--param", "KEY=VALUE")
    _outcomes([run_job(_stores(), None if job == "dispatch_notifications" and org == "*" else org, job, params)])


@schedule_app.command("backfill")
def backfill(job: str, org: Annotated[str, typer.Option("--org", help="Organisation slug.")],
             start: FromOpt = None, end: ToOpt = None,
             window_days: Annotated[int, typer.Option(min=1, help="Days per run.")] = 7) -> None:
    """Run a job over a long range, window by window, in order; rerun the same command to resume
    after a failure.

    Example: `workbench schedule backfill ingest --org acme --from 2026-01-01 --to 2026-06-30 --window-days 14`
    """
    from workbench.scheduler.core import backfill as run_backfill

    first, last = _date(start), _date(end)
    if first is None or last is None:
        raise typer.BadParameter("a backfill needs --from and --to")
    row = run_backfill(_stores(), org, job, first, last, window_days=window_days)
    if row.status == "failed":
        err.print(f"backfill {row.id} stopped: {row.error}; run the same command again to resume")
        raise typer.Exit(1)
    out.print(f"backfill {row.id}: {job} for {org} from {first} to {last} done")


@schedule_app.command("history")
def history(org: OrgOption = None, limit: Annotated[int, typer.Option(min=1)] = 30,
            fmt: Annotated[Format, typer.Option("--format")] = Format.table) -> None:
    """The newest scheduled runs: job, trigger, slot, attempt, status, error and notebook.

    Example: `workbench schedule history --org acme`
    """
    from workbench.scheduler.core import history as runs

    print_frame(pl.DataFrame([{"org": r.org_id, "job": r.job, "trigger": r.trigger, "slot": r.scheduled_for,
                               "attempt": r.attempt, "status": r.status, "started_at": r.started_at,
                               "finished_at": r.finished_at, "error": r.error, "notebook": r.notebook}
                              for r in runs(_stores(), org, limit)],
                             schema={"org": pl.String, "job": pl.String, "trigger": pl.String,
                                     "slot": pl.Datetime("us", "UTC"), "attempt": pl.Int64, "status": pl.String,
                                     "started_at": pl.Datetime("us", "UTC"), "finished_at": pl.Datetime("us", "UTC"),
                                     "error": pl.String, "notebook": pl.String}), fmt=fmt)


def worker(interval: Annotated[float, typer.Option(min=1, help="Seconds between ticks.")] = 60,
           once: Annotated[bool, typer.Option("--once", help="One tick, then stop.")] = False) -> None:
    """Tick forever (a long-running scheduler for a container or a systemd service).

    Example: `workbench worker --interval 60`
    """
    from workbench.scheduler.core import tick as run_tick

    operator_only("worker")
    while True:
        started = time.monotonic()
        try:
            outcomes = run_tick(_stores())
            for o in outcomes:
                out.print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} {o.org_id} {o.job}: {o.status}"
                          + (f" ({o.error})" if o.error else ""), highlight=False, markup=False)
        except Exception as exc:  # a bad tick must not stop the worker; the next one tries again
            err.print(f"tick failed: {type(exc).__name__}: {exc}", highlight=False, markup=False)
        if once:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
