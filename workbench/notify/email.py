"""Email over SMTP (``smtplib``), configured by the ``WORKBENCH_SMTP_*`` settings.

Targets are addresses. Each message carries a Message-ID derived from the notification's
idempotency key (``<sha256(key)[:32]@from-domain>``) and ``X-Workbench-Idempotency-Key``, so a
redelivery after a crash is the same message to a receiver that dedupes on them.

SMTP replies sort themselves: 4xx (and a dropped connection, a refusal, a timeout) is worth a
retry; 5xx is final (a wrong address, a rejected login).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import ClassVar

from workbench.errors import PermanentDeliveryError, TransientDeliveryError, ValidationError
from workbench.notify.base import Channel, DeliveryContext
from workbench.notify.payload import one_line, render_html, render_text
from workbench.oltp.models import Notification
from workbench.settings import Settings

ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$|^[^@\s<>,;]+@localhost$")
PORTS = {"none": 25, "starttls": 587, "tls": 465}


def message_id(idempotency_key: str, from_address: str) -> str:
    """The Message-ID of every delivery of one notification."""
    addresses = getaddresses([from_address])
    domain = addresses[0][1].rpartition("@")[2] if addresses and "@" in addresses[0][1] else "workbench.local"
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(notification: Notification, from_address: str) -> EmailMessage:
    p = notification.payload
    msg = EmailMessage()
    msg["Subject"] = one_line(p["title"], 200)
    msg["From"] = from_address
    msg["To"] = Address(addr_spec=notification.target.strip())
    created = notification.created_at
    msg["Date"] = format_datetime(created if created.tzinfo else created.replace(tzinfo=dt.UTC))
    msg["Message-ID"] = message_id(notification.idempotency_key, from_address)
    msg["X-Workbench-Idempotency-Key"] = notification.idempotency_key
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(p))
    msg.add_alternative(render_html(p), subtype="html")
    return msg


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)


def _connect(settings: Settings) -> smtplib.SMTP:
    assert settings.smtp_host is not None
    port = settings.smtp_port or PORTS[settings.smtp_tls]
    if settings.smtp_tls == "tls":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, port, timeout=settings.smtp_timeout,
                                              context=_ssl_context(settings))
    else:
        smtp = smtplib.SMTP(settings.smtp_host, port, timeout=settings.smtp_timeout)
    try:
        if settings.smtp_tls == "starttls":
            smtp.starttls(context=_ssl_context(settings))
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_username, password)
    except BaseException:
        smtp.close()
        raise
    return smtp


def _reply(code: int, text: bytes | str) -> str:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"SMTP {code} {' '.join(detail.split())[:200]}".strip()


class EmailChannel(Channel):
    target_hint: ClassVar[str] = "email addresses"

    @classmethod
    def check_target(cls, target: str) -> None:
        if not ADDRESS.match(target.strip()):
            raise ValidationError(f"'{target}' is not an email address")

    def deliver(self, notification: Notification, context: DeliveryContext) -> None:
        s = context.settings
        if not s.smtp_host:
            raise PermanentDeliveryError("email is not configured: set WORKBENCH_SMTP_HOST (and WORKBENCH_SMTP_FROM), "
                                         "then `workbench notify requeue`")
        if s.smtp_password is not None:
            context.secrets.add(s.smtp_password.get_secret_value())
        what = f"email to {notification.target}"
        msg = build_message(notification, s.smtp_from)
        try:
            with _connect(s) as smtp:
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            error = TransientDeliveryError if 400 <= code < 500 else PermanentDeliveryError
            raise error(f"{what}: recipient refused: {_reply(code, text)}") from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentDeliveryError(f"{what}: the SMTP server does not offer "
                                         f"{'STARTTLS' if s.smtp_tls == 'starttls' else 'AUTH'}; "
                                         "check WORKBENCH_SMTP_TLS and WORKBENCH_SMTP_USERNAME") from None
        except smtplib.SMTPResponseException as exc:
            error = TransientDeliveryError if 400 <= exc.smtp_code < 500 else PermanentDeliveryError
            raise error(f"{what}: {_reply(exc.smtp_code, exc.smtp_error)}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentDeliveryError(f"{what}: the SMTP server's certificate is not trusted "
                                         f"({exc.verify_message}); set WORKBENCH_SMTP_CA_FILE") from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, TLS handshake
            raise TransientDeliveryError(f"{what}: {type(exc).__name__}: {exc}") from None
