"""The workbench's exceptions.

    WorkbenchError                  every error the workbench raises on purpose
    ├── ConfigError                 settings or a configuration file is wrong
    ├── NotFoundError               an organisation, connection or table does not exist
    ├── ValidationError             user input (a file, a mapping, a value) is wrong
    ├── QueryError                  a SQL statement was refused or failed in the query engine
    ├── IsolationError              an operation would reach another organisation's data
    └── PipelineError               a pipeline step failed (the previous state stays visible)
        └── TransientError          worth retrying (a lost commit race, a busy store)

Messages are written for the person who has to act: they say what is wrong and what to do.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of all workbench errors."""


class ConfigError(WorkbenchError):
    """Settings or a configuration file is wrong."""


class NotFoundError(WorkbenchError):
    """An organisation, connection or table does not exist."""


class ValidationError(WorkbenchError):
    """User input is wrong; the message says what to fix."""


class QueryError(WorkbenchError):
    """A SQL statement was refused or failed in the query engine."""


class IsolationError(WorkbenchError):
    """An operation would reach another organisation's data."""


class PipelineError(WorkbenchError):
    """A pipeline step failed; nothing partial was committed."""


class TransientError(PipelineError):
    """A failure worth retrying."""
