"""Connectors: one module per source, all behind ``connectors.base.Connector``.

The registry (``connectors.registry.connectors``) lists them; built-ins are registered here in
plain sight, third-party ones through the ``workbench.connectors`` entry points.
"""

from connectors.csv_file import CsvConnector
from connectors.hubspot import HubSpotConnector
from connectors.registry import connectors
from connectors.synthetic import SyntheticConnector
from connectors.ttd import TtdConnector

connectors.register("synthetic", SyntheticConnector)
connectors.register("csv", CsvConnector)
connectors.register("hubspot", HubSpotConnector)
connectors.register("ttd", TtdConnector)
connectors.register_entry_points()

__all__ = ["connectors"]
