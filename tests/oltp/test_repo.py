import datetime as dt
import sqlite3

import pytest

from workbench.errors import ConfigError, NotFoundError, ValidationError
from workbench.oltp import repo
from workbench.oltp.db import Oltp


@pytest.fixture
def db(tmp_path):
    d = Oltp(f"sqlite:///{tmp_path / 'w.db'}")
    d.migrate()
    yield d
    d.dispose()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"slug": "Acme"}, "lowercase letters"),
    ({"slug": "acme", "currency": "usd"}, "3-letter ISO code"),
    ({"slug": "acme", "timezone": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
])
def test_org_validation(db, kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        repo.create_org(db, **{"name": "Acme", **kwargs})


def test_org_create_get_and_duplicates(db):
    repo.create_org(db, "acme", "Acme", "EUR", "Europe/Paris")
    assert repo.get_org(db, "acme").currency == "EUR"
    with pytest.raises(ValidationError, match="already exists"):
        repo.create_org(db, "acme", "Acme")
    assert repo.create_org(db, "acme", "Other", exist_ok=True).name == "Acme"
    with pytest.raises(NotFoundError, match="'nope' does not exist \\(known: acme\\)"):
        repo.get_org(db, "nope")


def test_credentials_are_encrypted_at_rest(db, tmp_path):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    repo.create_org(db, "acme", "Acme")
    conn = repo.upsert_connection(db, key, "acme", "meta", "meta", {"account": "1"}, 28,
                                  credentials={"access_token": "EAAB-super-secret"})
    raw = sqlite3.connect(tmp_path / "w.db").execute("SELECT credentials_encrypted FROM connections").fetchone()[0]
    assert "super-secret" not in raw
    assert repo.decrypt_credentials(key, conn.credentials_encrypted) == {"access_token": "EAAB-super-secret"}
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        repo.decrypt_credentials(Fernet.generate_key(), conn.credentials_encrypted)


def test_connection_platform_cannot_change(db):
    repo.create_org(db, "acme", "Acme")
    repo.upsert_connection(db, b"k" * 44, "acme", "main", "synthetic", {}, 3)
    with pytest.raises(ValidationError, match="is a synthetic connection, not csv"):
        repo.upsert_connection(db, b"k" * 44, "acme", "main", "csv", {}, 0)


def test_events_are_sequenced_per_org(db):
    repo.create_org(db, "acme", "Acme")
    repo.create_org(db, "globex", "Globex")
    for kind in ("ingest.done", "silver.ready", "gold.ready"):
        repo.append_event(db, "acme", kind, {})
    repo.append_event(db, "globex", "ingest.done", {})
    assert [(e.seq, e.kind) for e in repo.events(db, "acme")] == [
        (1, "ingest.done"), (2, "silver.ready"), (3, "gold.ready")]
    assert [e.seq for e in repo.events(db, "globex")] == [1]
    assert [e.seq for e in repo.events(db, "acme", after_seq=2)] == [3]


def test_job_run_records_success_and_failure(db):
    repo.create_org(db, "acme", "Acme")
    with repo.job_run(db, "acme", "ingest", {"source": "x"}) as run:
        run.summary = {"rows": 3}
    with pytest.raises(RuntimeError):
        with repo.job_run(db, "acme", "transform", {}):
            raise RuntimeError("disk full")
    runs = {r.job: r for r in repo.last_runs(db, "acme")}
    assert runs["ingest"].status == "succeeded" and runs["ingest"].summary == {"rows": 3}
    assert runs["transform"].status == "failed" and "disk full" in runs["transform"].error
    assert runs["transform"].finished_at is not None


def test_pending_batches_by_status_and_range(db):
    from workbench.oltp.models import Batch

    repo.create_org(db, "acme", "Acme")
    conn = repo.upsert_connection(db, b"k" * 44, "acme", "s", "synthetic", {}, 3)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for i, (s, e) in enumerate([(1, 10), (11, 20)]):
        repo.record_batch(db, Batch(id=f"b{i}", org_id="acme", connection_id=conn.id, source="synthetic",
                                    window_start=dt.date(2026, 10, s), window_end=dt.date(2026, 10, e),
                                    extracted_at=now + dt.timedelta(minutes=i), rows_in=1, streams={}))
    assert [b.id for b in repo.pending_batches(db, "acme")] == ["b0", "b1"]
    repo.mark_batch_transformed(db, "acme", "b0", 1, 0)
    assert [b.id for b in repo.pending_batches(db, "acme")] == ["b1"]
    assert [b.id for b in repo.pending_batches(db, "acme", dt.date(2026, 10, 5), dt.date(2026, 10, 6))] == ["b0", "b1"]
    with pytest.raises(NotFoundError):
        repo.mark_batch_transformed(db, "globex", "b1", 1, 0)
