"""One settings object for the whole workbench.

Values come, in increasing priority, from defaults, an optional TOML config file
(``WORKBENCH_CONFIG`` or ``$WORKBENCH_HOME/workbench.toml``) and ``WORKBENCH_*`` environment
variables. Every embedded store lives under ``home``; nothing is written outside it.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workbench.errors import ConfigError


class Settings(BaseSettings):
    """Workbench settings; each field is also ``WORKBENCH_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / ".workbench",
                       description="Folder holding every embedded store (OLTP file, catalog, warehouse, runs).")
    oltp_url: str | None = Field(None, description="SQLAlchemy URL of the OLTP store; default SQLite file under home.")
    catalog_uri: str | None = Field(None, description="SQLAlchemy URL of the Iceberg SQL catalog; default SQLite file under home.")
    warehouse: str | None = Field(None, description="Iceberg warehouse location (a folder or s3://bucket/prefix); default home/warehouse.")
    s3_endpoint: str | None = Field(None, description="S3 endpoint URL for an s3:// warehouse (MinIO, moto, ...).")
    s3_access_key_id: str | None = Field(None, description="S3 access key id for an s3:// warehouse.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key for an s3:// warehouse.")
    s3_region: str = Field("us-east-1", description="S3 region for an s3:// warehouse.")
    engine: Literal["chdb"] = Field("chdb", description="Query engine for gold: the embedded ClickHouse engine (chDB).")
    secret_key: SecretStr | None = Field(None, description="Key encrypting stored credentials; default a key file under home.")
    commit_retries: int = Field(5, ge=1, description="Attempts for an Iceberg commit that loses a concurrent race.")
    progress: bool = Field(True, description="Show progress bars for long steps.")

    # -- notifications (workbench.notify) --------------------------------------------------
    smtp_host: str | None = Field(None, description="SMTP server for email notifications; email is not sent until this is set.")
    smtp_port: int | None = Field(None, ge=1, le=65535, description="SMTP port; default 25 (tls none), 587 (starttls) or 465 (tls).")
    smtp_tls: Literal["none", "starttls", "tls"] = Field("starttls", description="SMTP transport security: none, STARTTLS upgrade, or TLS from the first byte (SMTPS).")
    smtp_username: str | None = Field(None, description="SMTP login user; no AUTH when unset.")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password.")
    smtp_from: str = Field("workbench@localhost", description="From address of notification email, e.g. 'Workbench <alerts@example.com>'.")
    smtp_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the SMTP server before the attempt counts as failed (and is retried).")
    smtp_ca_file: Path | None = Field(None, description="CA bundle to verify the SMTP server's certificate; default the system's.")
    notify_max_attempts: int = Field(8, ge=1, description="Delivery attempts of a notification before it is marked dead.")
    notify_backoff_seconds: float = Field(30.0, gt=0, description="First retry delay; doubled per attempt, with jitter.")
    notify_backoff_max_seconds: float = Field(3600.0, gt=0, description="Longest retry delay.")
    notify_lease_seconds: float = Field(300.0, gt=0, description="A notification claimed longer ago than this by a dispatcher that died is claimed again.")
    notify_http_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a Slack or webhook receiver before the attempt counts as failed.")

    # -- control plane (workbench.auth, workbench.ratelimit) --------------------------------
    auth: Literal["local", "required"] = Field("local", description="'local': without a token a workspace acts as the local operator (an admin), for single-user installs; 'required': every workspace needs a login or an API token (shared installs, apps).")
    redis_url: str | None = Field(None, description="Redis for rate limits (and locks) shared across processes, e.g. redis://127.0.0.1:6379/0; in-process limits when unset.")
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] = Field("HS256", description="The one algorithm access tokens are signed and accepted with.")
    jwt_issuer: str = Field("workbench", description="Issuer (iss) of access tokens, checked on every token.")
    jwt_audience: str = Field("workbench", description="Audience (aud) of access tokens, checked on every token.")
    jwt_ttl_minutes: int = Field(60, ge=1, description="Lifetime of an access token issued at login.")
    jwt_keys_file: Path | None = Field(None, description="JSON file of signing keys by key id (kid) with the active one; default a generated HMAC key file under home.")
    job_timeout_seconds: float = Field(3600.0, gt=0, description="Longest a cell of a scheduled notebook may run before the run fails (and is retried).")
    rate_limits_file: Path | None = Field(None, description="YAML file of rate-limit plans (per user, per organisation, login attempts); default the built-in plans.")

    @field_validator("home", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Path:
        return Path(value).expanduser().resolve()

    @property
    def oltp_url_resolved(self) -> str:
        return self.oltp_url or f"sqlite:///{self.home / 'workbench.db'}"

    @property
    def catalog_uri_resolved(self) -> str:
        return self.catalog_uri or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def warehouse_resolved(self) -> str:
        return self.warehouse or (self.home / "warehouse").as_uri()

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @cached_property
    def credentials_key(self) -> bytes:
        """The Fernet key for stored credentials (created once under home when not configured)."""
        if self.secret_key is not None:
            from base64 import urlsafe_b64encode
            from hashlib import sha256

            return urlsafe_b64encode(sha256(self.secret_key.get_secret_value().encode()).digest())
        path = self.home / "secret.key"
        if not path.exists():
            from cryptography.fernet import Fernet

            self.ensure_home()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return path.read_bytes().strip()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the config file, the environment and explicit ``overrides`` (highest)."""
    file_values: dict[str, Any] = {}
    home = overrides.get("home") or os.environ.get("WORKBENCH_HOME")
    config_path = os.environ.get("WORKBENCH_CONFIG")
    candidate = Path(config_path) if config_path else (Path(home) if home else Path.cwd() / ".workbench") / "workbench.toml"
    if candidate.exists():
        try:
            file_values = tomllib.loads(candidate.read_text()).get("workbench", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {candidate} is not valid TOML: {exc}") from None
    elif config_path:
        raise ConfigError(f"WORKBENCH_CONFIG points at {config_path}, which does not exist")
    try:
        env_values = {k: v for k, v in Settings().model_dump().items()
                      if os.environ.get(f"WORKBENCH_{k.upper()}") is not None}
        return Settings(**{**file_values, **env_values, **overrides})
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def new_id() -> str:
    """A random identifier for batches, runs and connections."""
    return secrets.token_hex(8)
