"""Helpers of the platform connector tests: fast retry settings and a workspace to ingest into."""

from __future__ import annotations

from typing import Any

#: retry settings for tests: tiny back-off, a timeout the fakes' "slow" fault exceeds
FAST: dict[str, Any] = {"backoff_seconds": 0.01, "backoff_max_seconds": 0.05,
                        "timeout_seconds": 0.5, "max_attempts": 8, "requests_per_second": 0}


def workspace(stores: Any, org: str = "acme", currency: str = "USD", timezone: str = "UTC") -> Any:
    """A workspace of a new organisation in ``stores``."""
    from workbench.oltp import repo
    from workbench.workspace import Workspace

    repo.create_org(stores.db, org, org.title(), currency, timezone, exist_ok=True)
    return Workspace(stores, org)


def connect(ws: Any, platform: str, fake: Any, credentials: dict[str, str], lookback_days: int | None = None,
            **settings: Any) -> Any:
    """Register the ``platform`` connection of ``ws`` against the running ``fake``."""
    return ws.connection(platform, settings={"base_url": fake.url, **FAST, **settings},
                         credentials=credentials, lookback_days=lookback_days)
