"""A step killed with SIGKILL part-way leaves the previous state visible, and a rerun completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import workbench as wb
from workbench.oltp import repo
from workbench.settings import load_settings
from workbench.stores import close_all

pytestmark = pytest.mark.slow


def _run_until(home: Path, point: str, *args: str) -> None:
    """Run `workbench ARGS` in a child process, wait until it reaches ``point``, kill -9 it."""
    signal_file = home / f"{point}.reached"
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_FAULT_PAUSE": point,
           "WORKBENCH_FAULT_SIGNAL": str(signal_file), "WORKBENCH_PROGRESS": "false"}
    child = subprocess.Popen([sys.executable, "-m", "workbench", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not signal_file.exists():
        if child.poll() is not None:
            raise AssertionError(f"child exited early: {child.stdout.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("child never reached the fault point")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL


def _cli(home: Path, *args: str) -> str:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_PROGRESS": "false"}
    done = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _snapshot(ws) -> dict[str, pl.DataFrame]:
    out = {}
    for table in ("silver.ad_performance_daily", "gold.performance_daily", "silver.quarantine"):
        df = ws.table(table)
        out[table] = df.drop([c for c in ("quarantined_at", "source_batch_id", "batch_id", "extracted_at",
                                          "connection_id") if c in df.columns])
    return out


def test_transform_killed_after_silver_then_rerun(tmp_path):
    home = tmp_path / "home"
    _cli(home, "orgs", "add", "acme", "--name", "Acme")
    _cli(home, "ingest", "--org", "acme", "--source", "synthetic", "--from", "2026-10-01", "--to", "2026-10-10")
    _run_until(home, "transform.after_silver", "transform", "--org", "acme")

    settings = load_settings(home=home)
    ws = wb.open("acme", settings=settings)
    batches = repo.list_batches(ws.stores.db, "acme")
    assert [b.status for b in batches] == ["landed"], "the killed run did not mark the batch done"
    assert ws.table("gold.performance_daily").height == 0, "gold still shows the previous (empty) state"
    runs = repo.last_runs(ws.stores.db, "acme")
    assert runs[0].job == "transform" and runs[0].status == "running" and runs[0].finished_at is None
    close_all()

    _cli(home, "transform", "--org", "acme")
    ws = wb.open("acme", settings=settings)
    after_rerun = _snapshot(ws)
    batch = repo.list_batches(ws.stores.db, "acme")[0]
    assert batch.status == "transformed"
    assert batch.rows_in == batch.rows_silver + batch.rows_quarantined
    close_all()

    # the same data transformed once, without a kill, gives the same tables
    clean = tmp_path / "clean"
    _cli(clean, "orgs", "add", "acme", "--name", "Acme")
    _cli(clean, "ingest", "--org", "acme", "--source", "synthetic", "--from", "2026-10-01", "--to", "2026-10-10")
    _cli(clean, "transform", "--org", "acme")
    reference = _snapshot(wb.open("acme", settings=load_settings(home=clean)))
    for table, frame in reference.items():
        assert after_rerun[table].sort(frame.columns).equals(frame.sort(frame.columns)), table
    close_all()


def test_ingest_killed_after_bronze_lands_nothing_downstream(tmp_path):
    home = tmp_path / "home"
    _cli(home, "orgs", "add", "acme", "--name", "Acme")
    _run_until(home, "ingest.after_bronze", "ingest", "--org", "acme", "--source", "synthetic",
               "--from", "2026-10-01", "--to", "2026-10-03")
    settings = load_settings(home=home)
    ws = wb.open("acme", settings=settings)
    assert repo.list_batches(ws.stores.db, "acme") == []
    close_all()
    _cli(home, "ingest", "--org", "acme", "--source", "synthetic", "--from", "2026-10-01", "--to", "2026-10-03")
    _cli(home, "transform", "--org", "acme")
    ws = wb.open("acme", settings=settings)
    batches = repo.list_batches(ws.stores.db, "acme")
    assert len(batches) == 1
    silver = ws.table("silver.ad_performance_daily")
    assert set(silver["source_batch_id"]) == {batches[0].id}, "the orphaned bronze rows never reach silver"
    assert batches[0].rows_in == batches[0].rows_silver + batches[0].rows_quarantined
    close_all()
