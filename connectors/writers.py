"""The platform-writer registry: one explicit mapping of ad platforms to write-side factories.

A factory takes ``(platform, stores, org_id)`` and returns that organisation's
``PlatformWriter``. The built-in factory routes by the organisation's connections: when it has
an active connection of the platform's own connector (``meta``, ``dv360``, ``ttd``), writes go to
the platform through it; otherwise to the synthetic platform (``connectors.synthetic_platform``),
which records what it was asked. Third-party writers come from the
``workbench.platform_writers`` entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from connectors.base import PlatformWriter
from connectors.synthetic_platform import PLATFORMS, SyntheticPlatform

if TYPE_CHECKING:
    from workbench.stores import Stores

WriterFactory = Callable[[str, "Stores", str], PlatformWriter]


class WriterRegistry:
    """Platform names to writer factories."""

    def __init__(self) -> None:
        self._factories: dict[str, WriterFactory] = {}

    def register(self, platform: str, factory: WriterFactory) -> None:
        self._factories[platform] = factory

    def register_entry_points(self) -> None:
        for ep in entry_points(group="workbench.platform_writers"):
            self.register(ep.name, ep.load())

    def get(self, platform: str, stores: Stores, org_id: str) -> PlatformWriter:
        """The writer of ``platform`` for ``org_id``."""
        try:
            factory = self._factories[platform]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise KeyError(f"no writer for platform '{platform}'; platforms with one: {known}") from None
        return factory(platform, stores, org_id)

    def platforms(self) -> list[str]:
        return sorted(self._factories)

    def factory(self, platform: str) -> WriterFactory:
        """The factory registered for ``platform`` (for listings; ``get`` calls it)."""
        return self._factories[platform]


def connection_or_synthetic(platform: str, stores: Stores, org_id: str) -> PlatformWriter:
    """The writer of the organisation's first active ``platform`` connection (by name) that can
    write, or its synthetic platform when it has none."""
    from connectors.platform import PlatformConnector, WriteJournal
    from connectors.registry import connectors
    from workbench.medallion.pipeline import open_connector
    from workbench.oltp import repo

    candidates = [c for c in repo.list_connections(stores.db, org_id)
                  if c.platform == platform and c.status == "active"]
    if not candidates or platform not in connectors.names():
        return SyntheticPlatform.for_stores(platform, stores, org_id)
    org = repo.get_org(stores.db, org_id)
    connector = open_connector(stores.settings, stores.db, org, candidates[0])
    if not isinstance(connector, PlatformConnector) or "write" not in connector.capabilities:
        return SyntheticPlatform.for_stores(platform, stores, org_id)
    return connector.writer(WriteJournal(stores.db, org_id, platform))


platform_writers = WriterRegistry()
for _platform in PLATFORMS:
    platform_writers.register(_platform, connection_or_synthetic)
platform_writers.register_entry_points()
