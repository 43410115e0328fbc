"""The connector registry: one explicit mapping of names to connector classes.

Built-in connectors are registered here in plain sight; third-party ones come from the
``workbench.connectors`` entry-point group.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from connectors.base import Connector


class ConnectorRegistry:
    """Names to connector classes."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Connector]] = {}

    def register(self, name: str, cls: type[Connector]) -> None:
        self._classes[name] = cls

    def register_entry_points(self) -> None:
        for ep in entry_points(group="workbench.connectors"):
            self.register(ep.name, ep.load())

    def get(self, name: str) -> type[Connector]:
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise KeyError(f"unknown connector '{name}'; installed connectors: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._classes)


connectors = ConnectorRegistry()
