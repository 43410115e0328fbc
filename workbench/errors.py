"""The workbench's exceptions.

    WorkbenchError                  every error the workbench raises on purpose
    ├── ConfigError                 settings or a configuration file is wrong
    ├── NotFoundError               an organisation, connection or table does not exist
    ├── ValidationError             user input (a file, a mapping, a value) is wrong
    │   └── FormulaError            a formula does not parse, bind or type-check (with position)
    ├── QueryError                  a SQL statement was refused or failed in the query engine
    ├── IsolationError              an operation would reach another organisation's data
    ├── AuthenticationError         no valid login or token (wrong password, expired or forged token)
    ├── PermissionDenied            the role of the request context does not allow the operation
    ├── PipelineError               a pipeline step failed (the previous state stays visible)
    │   └── TransientError          worth retrying (a lost commit race, a busy store)
    ├── DeliveryError               a notification could not be delivered (channel, target)
    │   ├── TransientDeliveryError  retry later (refused, timeout, 5xx, 429); also a TransientError
    │   └── PermanentDeliveryError  retrying cannot help (4xx, SMTP 5xx, unknown target)
    └── ApiError                    a platform API call failed (Meta, DV360, TTD, HubSpot, Salesforce)
        ├── TransientApiError       retried with back-off: 5xx, timeouts, malformed pages; also a
        │   │                       TransientError
        │   └── ThrottledError      the platform asked us to slow down and said for how long
        └── FinalApiError           retrying cannot help; the message says what to fix
            ├── AuthError           credentials rejected or expired beyond refresh
            ├── AccessError         the credentials lack a permission or an account
            ├── QuotaExceededError  a quota is spent until it resets (not retried in a loop)
            └── RequestError        the request itself is wrong (a bad field, a bad id)

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


class AuthenticationError(WorkbenchError):
    """No valid identity: a wrong password, an expired, revoked, tampered or foreign token.

    Messages say what to do without saying which part was wrong to an attacker (a wrong email
    and a wrong password read the same)."""


class PermissionDenied(WorkbenchError):
    """The role of the request context does not allow the operation."""


class PipelineError(WorkbenchError):
    """A pipeline step failed; nothing partial was committed."""


class TransientError(PipelineError):
    """A failure worth retrying."""


class FormulaError(ValidationError):
    """A formula is wrong. Carries the position so editors can underline it.

    ``str()`` gives ``line L, column C: message``, the formula line and a caret under the
    problem. ``metric`` names the metric whose formula is wrong when it is not the one typed.
    """

    def __init__(self, message: str, text: str = "", start: int | None = None, end: int | None = None,
                 *, metric: str | None = None, suggestions: tuple[str, ...] = ()) -> None:
        self.message = message
        self.text = text
        self.start = start
        self.end = end if end is not None and start is not None and end > start else (
            None if start is None else start + 1)
        self.metric = metric
        self.suggestions = suggestions
        super().__init__(self._render())

    @property
    def line(self) -> int | None:
        return None if self.start is None else self.text.count("\n", 0, self.start) + 1

    @property
    def column(self) -> int | None:
        if self.start is None:
            return None
        return self.start - (self.text.rfind("\n", 0, self.start) + 1) + 1

    def _render(self) -> str:
        where = f"in metric '{self.metric}': " if self.metric else ""
        if self.start is None or not self.text:
            return f"{where}{self.message}"
        line_start = self.text.rfind("\n", 0, self.start) + 1
        line_end = self.text.find("\n", self.start)
        line_end = len(self.text) if line_end < 0 else line_end
        source_line = self.text[line_start:line_end]
        col = self.start - line_start
        width = max(1, min(self.end or self.start + 1, line_end) - self.start)
        caret = " " * col + "^" * width
        return (f"{where}line {self.line}, column {self.column}: {self.message}\n"
                f"    {source_line}\n    {caret}")


class DeliveryError(WorkbenchError):
    """A notification could not be delivered. Messages never contain secrets (URLs, passwords).

    ``retry_after`` is the receiver's own back-off request in seconds (HTTP 429 ``Retry-After``).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError, TransientError):
    """Worth retrying: the receiver was down, slow, overloaded or asked us to wait."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: the receiver refused the message or the target is not configured."""


class ApiError(WorkbenchError):
    """A platform API call failed. ``platform`` names it; messages never carry tokens or secrets.

    ``retry_after`` is the platform's own wait in seconds where it gave one.
    """

    def __init__(self, message: str, *, platform: str = "", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.platform = platform
        self.status = status
        self.retry_after = retry_after


class TransientApiError(ApiError, TransientError):
    """Worth retrying with back-off: a 5xx, a timeout, a dropped connection, a malformed page."""


class ThrottledError(TransientApiError):
    """The platform asked us to slow down (429, Meta throttle codes, usage headers)."""


class FinalApiError(ApiError):
    """Retrying cannot help; the run stops and the message says what to fix."""


class AuthError(FinalApiError):
    """The credentials were rejected (or the refresh token no longer works)."""


class AccessError(FinalApiError):
    """The credentials work but lack a permission, or the account is unknown to them."""


class QuotaExceededError(FinalApiError):
    """A quota is spent until it resets (Salesforce's daily API requests, a long Meta block)."""


class RequestError(FinalApiError):
    """The platform refused the request itself (a bad field or value)."""
