"""Run the notebooks of ``scheduled/`` with papermill; every executed copy is kept under ``runs/``.

    run = run_notebook(settings, "ingest", "acme", {"start": "2026-11-01", "end": "2026-11-03"}, run_id)
    run.ok, run.error, run.path   # runs/acme/ingest/2026-11-20/081500-<run_id>.ipynb

The executed notebook is the run's record: its cells show what the step did and its last table
the summary; a failed step leaves the traceback in the cell that raised.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import workbench
from workbench.errors import ConfigError, ValidationError
from workbench.settings import Settings

SCHEDULED_DIR = Path(workbench.__file__).resolve().parent.parent / "scheduled"
#: job -> its notebook
NOTEBOOKS: dict[str, Path] = {job: SCHEDULED_DIR / f"{job}.ipynb"
                              for job in ("ingest", "transform", "evaluate_rules", "dispatch_notifications")}
#: jobs that may run for every organisation at once (``org=None``)
ALL_ORGS_JOBS = frozenset({"dispatch_notifications"})
#: parameters the runner sets itself
RESERVED = frozenset({"org", "home"})


@dataclass(frozen=True)
class NotebookRun:
    """One execution: the executed notebook, whether it succeeded, the error and the duration."""

    path: Path
    ok: bool
    error: str | None
    seconds: float


def notebook_path(job: str) -> Path:
    """The notebook of ``job``; ``ValidationError`` for an unknown job, ``ConfigError`` when missing."""
    if job not in NOTEBOOKS:
        raise ValidationError(f"unknown job '{job}'; jobs: {', '.join(NOTEBOOKS)}")
    path = NOTEBOOKS[job]
    if not path.is_file():
        raise ConfigError(f"the scheduled notebook {path} is missing: the workbench must run from its source "
                          f"tree (scheduled/ next to the workbench package); reinstall it with pip install -e")
    return path


def notebook_parameters(job: str) -> dict[str, str]:
    """The parameters of ``job``'s notebook (its ``parameters`` cell) and their defaults, as code."""
    import papermill as pm

    return {name: str(p["default"]) for name, p in pm.inspect_notebook(str(notebook_path(job))).items()}


def output_path(settings: Settings, job: str, org: str | None, run_id: str, now: dt.datetime) -> Path:
    """Where the executed notebook of a run is kept."""
    return settings.runs_dir / (org or "all") / job / f"{now:%Y-%m-%d}" / f"{now:%H%M%S}-{run_id}.ipynb"


def _value(name: str, value: Any) -> Any:
    # papermill writes values it does not know as raw code: a date would become 2026 - 11 - 1
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, bool, int, float, list, dict)):
        return value
    raise ValidationError(f"parameter {name}={value!r}: give a string, number, boolean, list, dict or None")


def check_parameters(job: str, org: str | None, parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``run_notebook`` passes (org and home excluded), checked against the notebook."""
    allowed = notebook_parameters(job)
    if org is None and job not in ALL_ORGS_JOBS:
        raise ValidationError(f"the {job} job runs for one organisation: give the org")
    reserved = sorted(RESERVED & set(parameters))
    if reserved:
        raise ValidationError(f"{', '.join(reserved)} cannot be given as parameters (the runner sets the "
                              f"organisation and the home); parameters of {job}: "
                              f"{', '.join(sorted(set(allowed) - RESERVED)) or 'none'}")
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown parameter(s) {', '.join(unknown)} for {job}; its parameters: "
                              f"{', '.join(sorted(set(allowed) - RESERVED)) or 'none'}")
    return {name: _value(name, value) for name, value in parameters.items()}


def run_notebook(settings: Settings, job: str, org: str | None, parameters: dict[str, Any], run_id: str,
                 *, now: dt.datetime | None = None) -> NotebookRun:
    """Execute ``job``'s notebook for ``org`` (None: every organisation, dispatch only) in a fresh
    kernel and keep the executed copy under ``settings.runs_dir``.

    A cell that raises gives ``ok=False`` with ``error`` "<exception>: <message>" (the notebook is
    written with the traceback); bad arguments raise ``ValidationError`` before anything runs.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    source = notebook_path(job)
    values = check_parameters(job, org, parameters)
    # folders by UTC day, whatever clock the caller gives (a naive ``now`` is taken as UTC)
    when = dt.datetime.now(dt.UTC) if now is None else now.astimezone(dt.UTC) if now.tzinfo else now
    out = output_path(settings, job, org, run_id, when)
    out.parent.mkdir(parents=True, exist_ok=True)
    values.update(org=org, home=str(settings.home))
    started = time.monotonic()
    error: str | None = None
    # a scratch working directory: whatever a notebook writes relative to cwd does not litter the scheduler's
    with tempfile.TemporaryDirectory(prefix=f"wb-{job}-") as cwd:
        try:
            pm.execute_notebook(str(source), str(out), parameters=values, kernel_name="python3",
                                progress_bar=False, log_output=False, cwd=cwd,
                                execution_timeout=settings.job_timeout_seconds)
        except pm.PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
        except CellTimeoutError:  # a hung platform call, a stuck query: the scheduler retries it
            error = (f"CellTimeoutError: a cell ran longer than {settings.job_timeout_seconds:g} s "
                     "(WORKBENCH_JOB_TIMEOUT_SECONDS)")
        except DeadKernelError as exc:  # killed (out of memory, a signal): papermill saved what ran so far
            error = f"DeadKernelError: the kernel died mid-run (killed, or out of memory?): {exc}"
    return NotebookRun(out, error is None, error, time.monotonic() - started)
