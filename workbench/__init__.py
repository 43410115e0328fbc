"""The workbench: ``import workbench as wb; ws = wb.open("acme")``.

Names are imported on first use, so that ``import workbench`` (and the CLI's ``--help``) stays
quick and does not load the query engine until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConfigError": "workbench.errors", "FormulaError": "workbench.errors", "IsolationError": "workbench.errors",
    "NotFoundError": "workbench.errors", "PipelineError": "workbench.errors",
    "QueryError": "workbench.errors", "TransientError": "workbench.errors",
    "ValidationError": "workbench.errors", "WorkbenchError": "workbench.errors",
    "Settings": "workbench.settings", "load_settings": "workbench.settings",
    "init": "workbench.stores", "create_org": "workbench.workspace",
    "Workspace": "workbench.workspace", "open": "workbench.workspace", "login": "workbench.workspace",
    "AuthenticationError": "workbench.errors", "PermissionDenied": "workbench.errors",
    "run_demo": "workbench.demo",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from workbench.demo import run_demo
    from workbench.errors import (
        AuthenticationError, ConfigError, FormulaError, IsolationError, NotFoundError, PermissionDenied,
        PipelineError, QueryError, TransientError, ValidationError, WorkbenchError,
    )
    from workbench.settings import Settings, load_settings
    from workbench.stores import init
    from workbench.workspace import Workspace, create_org, login, open


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
