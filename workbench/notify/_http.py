"""POST to a receiver and sort its failures into transient and permanent ones (Slack, webhooks)."""

from __future__ import annotations

import datetime as dt
import email.utils

import httpx

from workbench.errors import PermanentDeliveryError, TransientDeliveryError

USER_AGENT = "workbench-notify/0.1"


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def post(http: httpx.Client, url: str, content: bytes, headers: dict[str, str], what: str) -> httpx.Response:
    """POST ``content``; return the 2xx response or raise a delivery error naming ``what``, never ``url``."""
    try:
        response = http.post(url, content=content,
                             headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    except httpx.TimeoutException:
        raise TransientDeliveryError(f"{what}: no answer within the timeout "
                                     "(WORKBENCH_NOTIFY_HTTP_TIMEOUT)") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise PermanentDeliveryError(f"{what}: the configured URL is not valid") from None
    except httpx.TransportError as exc:
        # the text of a transport error is the OS's ("[Errno 111] Connection refused"), not the URL
        raise TransientDeliveryError(f"{what}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    detail = " ".join(response.text.split())[:200]
    message = f"{what}: HTTP {status}" + (f" ({detail})" if detail else "")
    if status == 429:
        raise TransientDeliveryError(message, retry_after=retry_after(response.headers.get("Retry-After")))
    if status == 408 or status >= 500:
        raise TransientDeliveryError(message)
    if 300 <= status < 400:
        raise PermanentDeliveryError(f"{what}: HTTP {status} redirect; configure the final URL")
    raise PermanentDeliveryError(message)
