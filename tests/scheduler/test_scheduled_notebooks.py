"""The notebooks of scheduled/ run by papermill through ``run_notebook``: each one on a small
demo home (acme, five days of synthetic Meta data), its executed copy under runs/, its summary
table, and what it changed in the stores; failures, a dead kernel and bad arguments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nbformat
import pytest

from workbench.errors import ValidationError
from workbench.scheduler import notebooks
from workbench.scheduler.notebooks import NOTEBOOKS, run_notebook

pytestmark = pytest.mark.slow
NOW = dt.datetime(2026, 11, 20, 8, 15, 30, tzinfo=dt.UTC)
RULE = {"name": "any_spend", "title": "Any spend", "condition": "spend[yesterday] > 0",
        "actions": [{"type": "notify", "channels": ["inapp:analyst"], "message": "{campaign_name} spent"}]}


def outputs(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def summary(path: Path) -> str:
    """The text of the notebook's last table (the summary: a cell's last expression)."""
    results = [o for o in outputs(path) if o["output_type"] == "execute_result"]
    assert results, f"{path} shows no table"
    return results[-1]["data"]["text/plain"]


def printed(path: Path) -> str:
    return "".join(o.get("text", "") for o in outputs(path) if o["output_type"] == "stream")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A home with acme, a synthetic connection and one rule, and the four jobs run in order;
    the stores are read between runs to see what each one changed."""
    from workbench.oltp import repo
    from workbench.settings import load_settings
    from workbench.stores import close_all, init
    from workbench.workspace import Workspace

    settings = load_settings(home=tmp_path_factory.mktemp("scheduled") / "home", progress=False)
    stores = init(settings)
    repo.create_org(stores.db, "acme", "Acme", "USD", "UTC")
    ws = Workspace(stores, "acme")
    ws.add_connection("synthetic", settings={"platforms": ["meta"], "crms": [], "as_of": "2026-11-20"})
    ws.rules.define(RULE)

    def rows(table: str) -> int:
        return int(ws.status()["tables"].filter(table=table)["rows"][0])

    seen: dict = {"runs": {}}
    # a date object on purpose: papermill would write it as the code 2026-11-15 (a number)
    seen["runs"]["ingest"] = run_notebook(settings, "ingest", "acme",
                                          {"start": dt.date(2026, 11, 15), "end": "2026-11-19"}, "run1", now=NOW)
    seen["after_ingest"] = {"bronze": rows("bronze.raw_records"), "silver": rows("silver.ad_performance_daily"),
                            "batches": [(b.status, b.window_start, b.window_end)
                                        for b in repo.list_batches(stores.db, "acme")]}
    seen["runs"]["transform"] = run_notebook(settings, "transform", "acme", {}, "run2", now=NOW)
    seen["after_transform"] = {"silver": rows("silver.ad_performance_daily"), "gold": rows("gold.campaign_daily"),
                               "batches": [b.status for b in repo.list_batches(stores.db, "acme")]}
    seen["runs"]["evaluate_rules"] = run_notebook(settings, "evaluate_rules", "acme",
                                                  {"as_of": "2026-11-20"}, "run3", now=NOW)
    seen["history"] = ws.rules.history("any_spend")
    seen["runs"]["dispatch_notifications"] = run_notebook(settings, "dispatch_notifications", None, {}, "run4",
                                                          now=NOW)
    from workbench.notify import inbox

    seen["inbox"] = inbox(stores.db, "acme", "analyst")
    seen.update(settings=settings, ws=ws)
    yield seen
    close_all()


def test_every_scheduled_notebook_has_a_runner_and_a_parameters_cell_and_no_outputs():
    on_disk = sorted(Path(NOTEBOOKS["ingest"]).parent.glob("*.ipynb"))
    assert on_disk == sorted(NOTEBOOKS.values()), "every notebook in scheduled/ is a job (and tested here)"
    for path in on_disk:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Scheduled job")
        assert [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])], f"{path.name}: no parameters cell"
        assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)], \
            f"{path.name} is saved with outputs"
        assert {"org", "home"} <= set(notebooks.notebook_parameters(path.stem))


def test_ingest_lands_one_batch_without_transforming_it(demo):
    run = demo["runs"]["ingest"]
    assert run.ok and run.error is None and run.seconds > 0
    settings = demo["settings"]
    assert run.path == settings.runs_dir / "acme" / "ingest" / "2026-11-20" / "081530-run1.ipynb"
    assert run.path.is_file()
    after = demo["after_ingest"]
    assert after["batches"] == [("landed", dt.date(2026, 11, 15), dt.date(2026, 11, 19))]
    assert after["bronze"] > 0 and after["silver"] == 0
    table = summary(run.path)
    assert "connection" in table and "records" in table and "synthetic" in table and "2026-11-15" in table
    assert str(after["bronze"]) in table  # the records the summary reports are the ones in bronze
    assert "ingesting every active connection for acme, window 2026-11-15 .. 2026-11-19" in printed(run.path)


def test_transform_fills_silver_and_gold(demo):
    run = demo["runs"]["transform"]
    assert run.ok, run.error
    after = demo["after_transform"]
    assert after["batches"] == ["transformed"]
    assert after["silver"] > 0 and after["gold"] > 0
    table = summary(run.path)
    for step in ("batches", "silver rows", "quarantined", "gold.campaign_daily", "gold.performance_daily"):
        assert step in table
    assert str(demo["after_ingest"]["bronze"]) in table and str(after["gold"]) in table
    assert "1 batch(es)" in printed(run.path)


def test_evaluate_rules_records_the_evaluation(demo):
    run = demo["runs"]["evaluate_rules"]
    assert run.ok, run.error
    history = demo["history"]
    assert history.height == 1
    row = history.row(0, named=True)
    assert row["as_of"] == dt.date(2026, 11, 20) and row["outcome"] == "ok" and row["fired"] > 0
    table = summary(run.path)
    assert "any_spend" in table and "ok" in table and "2026-11-20" in table
    assert "evaluating every enabled rule of acme" in printed(run.path)  # rules="all": the pack's stay off
    assert "1 rule(s) evaluated" in printed(run.path)


def test_dispatch_for_every_organisation_delivers_to_the_inbox(demo):
    run = demo["runs"]["dispatch_notifications"]
    assert run.ok, run.error
    assert run.path.parent == demo["settings"].runs_dir / "all" / "dispatch_notifications" / "2026-11-20"
    assert len(demo["inbox"]) == 1 and "spent" in demo["inbox"][0].body
    table = summary(run.path)
    assert "sent" in table and "all" in table
    assert "sent 1, retried 0, failed 0, dead 0, skipped 0" in printed(run.path)


def test_a_failing_step_is_a_failed_run_with_the_error_and_the_notebook(demo):
    run = run_notebook(demo["settings"], "evaluate_rules", "acme", {"rules": "any_spend,no_such_rule"}, "run5",
                       now=NOW)
    assert not run.ok
    assert run.error is not None and run.error.startswith("NotFoundError: no rule 'no_such_rule'; rules: ")
    assert "any_spend" in run.error  # the message lists what exists
    errors = [o for o in outputs(run.path) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["NotFoundError"] and errors[0]["traceback"]
    # the unknown name stopped the job before anything ran: still the one evaluation of the fixture
    assert demo["ws"].rules.history("any_spend").height == 1


def test_a_kernel_that_dies_is_a_failed_run(tmp_path, monkeypatch, settings):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("org = None\nhome = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('started')"),
        nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "dies.ipynb")
    monkeypatch.setitem(NOTEBOOKS, "dispatch_notifications", tmp_path / "dies.ipynb")
    run = run_notebook(settings, "dispatch_notifications", None, {}, "dead", now=NOW)
    assert not run.ok and run.error is not None and run.error.startswith("DeadKernelError: the kernel died")
    assert "started" in printed(run.path)  # what ran before it died is kept


def test_a_cell_that_runs_too_long_is_a_failed_run_the_scheduler_retries(tmp_path, monkeypatch):
    from workbench.scheduler.core import transient
    from workbench.settings import load_settings

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("org = None\nhome = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import time\ntime.sleep(30)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "hangs.ipynb")
    monkeypatch.setitem(NOTEBOOKS, "dispatch_notifications", tmp_path / "hangs.ipynb")
    quick = load_settings(home=tmp_path / "home", progress=False, job_timeout_seconds=1)
    run = run_notebook(quick, "dispatch_notifications", None, {}, "hung", now=NOW)
    assert not run.ok and (run.error or "").startswith("CellTimeoutError: a cell ran longer than 1 s")
    assert transient(run.error)


@pytest.mark.parametrize(("job", "org", "parameters", "message"), [
    ("ingets", "acme", {}, "unknown job 'ingets'; jobs: ingest, transform, evaluate_rules, dispatch_notifications"),
    ("ingest", "acme", {"sources": "meta"}, "unknown parameter(s) sources for ingest; its parameters: end, source, start"),
    ("transform", "acme", {"home": "/elsewhere"}, "home cannot be given as parameters"),
    ("evaluate_rules", None, {}, "the evaluate_rules job runs for one organisation: give the org"),
    ("transform", "acme", {"start": object()}, "parameter start="),
])
def test_bad_arguments_are_refused_before_a_kernel_starts(settings, job, org, parameters, message):
    with pytest.raises(ValidationError) as err:
        run_notebook(settings, job, org, parameters, "bad", now=NOW)
    assert message in str(err.value)
    assert not settings.runs_dir.exists()


def test_a_missing_notebook_says_where_it_was_looked_for(tmp_path, monkeypatch):
    from workbench.errors import ConfigError

    monkeypatch.setitem(NOTEBOOKS, "transform", tmp_path / "transform.ipynb")
    with pytest.raises(ConfigError, match="the scheduled notebook .*transform.ipynb is missing"):
        notebooks.notebook_path("transform")
