"""The platform connector base: default windows, per-stream state, gaps, credential checks."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import pytest

from connectors.base import ConnectionConfig, CredentialField, Gap, StreamSpec, Window, describe_days
from connectors.http import Auth
from connectors.platform import Coverage, PlatformConnector, chunks
from workbench.errors import ValidationError

D = dt.date


class Tiny(PlatformConnector):
    name = "tiny"
    streams: ClassVar[tuple[StreamSpec, ...]] = (StreamSpec("tiny.daily", "rows"),)
    default_base_url = "http://127.0.0.1:9"
    credential_fields = (CredentialField("token", "Token"), CredentialField("note", "Note", False, False))
    required_settings = ("account_ids",)

    def make_auth(self) -> Auth:
        return Auth(self.config.credentials["token"])

    def read(self, window):
        return iter(())

    def accounts(self):
        return []


def tiny(state=None, lookback=7, **settings) -> Tiny:
    return Tiny(ConnectionConfig("acme", "c1", settings={"account_ids": ["a"], **settings},
                                 credentials={"token": "t0ken"}, state=state or {}, lookback_days=lookback))


def test_a_first_run_reads_the_lookback_or_from_start_date():
    today = D(2026, 11, 25)
    assert tiny().resolve_window(None, today) == Window(D(2026, 11, 19), today)
    assert tiny(start_date="2026-10-01").resolve_window(None, today) == Window(D(2026, 10, 1), today)


def test_later_runs_cover_everything_since_the_last_window_plus_the_lookback():
    today = D(2026, 11, 25)
    # ran yesterday: re-read the look-back
    assert tiny({"last_window_end": "2026-11-24"}).resolve_window(None, today).start == D(2026, 11, 19)
    # last ran a month ago: everything since then
    assert tiny({"last_window_end": "2026-10-20"}).resolve_window(None, today).start == D(2026, 10, 21)
    # an explicit window wins
    w = Window(D(2026, 1, 1), D(2026, 1, 2))
    assert tiny({"last_window_end": "2026-10-20"}).resolve_window(w, today) == w


def test_state_is_kept_per_stream():
    state = tiny({"streams": {"old.stream": {"last_window_end": "2026-01-01"}}}).next_state(
        Window(D(2026, 11, 1), D(2026, 11, 5)))
    assert state == {"last_window_end": "2026-11-05", "streams": {
        "old.stream": {"last_window_end": "2026-01-01"}, "tiny.daily": {"last_window_end": "2026-11-05"}}}


def test_missing_credentials_and_settings_say_how_to_add_them():
    with pytest.raises(ValidationError, match=r"no token: add them with workbench connections add"):
        Tiny(ConnectionConfig("acme", "c1", settings={"account_ids": ["a"]}))
    with pytest.raises(ValidationError, match=r"needs the setting\(s\) account_ids"):
        Tiny(ConnectionConfig("acme", "c1", credentials={"token": "x"}))


def test_gaps_are_days_without_rows_after_an_accounts_first_delivery_day():
    cov = Coverage()
    for day in (3, 4, 6, 9):
        cov.add("a1", D(2026, 11, day))
    for day in range(1, 11):
        cov.add("a2", D(2026, 11, day))
    cov.add("a3", D(2026, 10, 1))  # outside the window: no delivery in it, no gap
    gaps = cov.gaps(Window(D(2026, 11, 1), D(2026, 11, 10)))
    assert gaps == [Gap("a1", (D(2026, 11, 5), D(2026, 11, 7), D(2026, 11, 8), D(2026, 11, 10)))]
    assert gaps[0].describe() == "account a1: no rows for 2026-11-05, 2026-11-07..08, 2026-11-10"


def test_describe_days_spans_months_and_chunks_cover_a_window_exactly():
    assert describe_days([D(2026, 10, 31), D(2026, 11, 1)]) == "2026-10-31..2026-11-01"
    parts = list(chunks(Window(D(2026, 11, 1), D(2026, 11, 17)), 7))
    assert [(p.start.day, p.end.day) for p in parts] == [(1, 7), (8, 14), (15, 17)]
    assert list(chunks(Window(D(2026, 11, 1), D(2026, 11, 1)), 0)) == [Window(D(2026, 11, 1), D(2026, 11, 1))]
