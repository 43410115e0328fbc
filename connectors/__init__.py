"""Connectors: one module per source, all behind ``connectors.base.Connector``.

The registry (``connectors.registry.connectors``) lists them; built-ins are registered here in
plain sight, third-party ones through the ``workbench.connectors`` entry points.
"""

from connectors.csv_file import CsvConnector
from connectors.dv360 import DV360Connector
from connectors.hubspot import HubSpotConnector
from connectors.meta import MetaConnector
from connectors.registry import connectors
from connectors.salesforce import SalesforceConnector
from connectors.synthetic import SyntheticConnector
from connectors.ttd import TtdConnector

connectors.register("synthetic", SyntheticConnector)
connectors.register("csv", CsvConnector)
connectors.register("meta", MetaConnector)
connectors.register("dv360", DV360Connector)
connectors.register("ttd", TtdConnector)
connectors.register("hubspot", HubSpotConnector)
connectors.register("salesforce", SalesforceConnector)
connectors.register_entry_points()

__all__ = ["connectors"]
