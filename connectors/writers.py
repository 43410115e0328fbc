"""The platform-writer registry: one explicit mapping of ad platforms to write-side factories.

A factory takes ``(platform, stores, org_id)`` and returns that organisation's
``PlatformWriter``. Until the real Meta, DV360 and The Trade Desk writers are registered, every
platform writes to the synthetic platform (``connectors.synthetic_platform``), which records
what it was asked; third-party writers come from the ``workbench.platform_writers`` entry points.
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


platform_writers = WriterRegistry()
for _platform in PLATFORMS:
    platform_writers.register(_platform, SyntheticPlatform.for_stores)
platform_writers.register_entry_points()
