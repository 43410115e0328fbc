"""Signing keys of access tokens, by key id (``kid``), with one active key.

The key file (``WORKBENCH_JWT_KEYS_FILE``, default ``home/jwt_keys.json``, mode 600) holds
``{"active": KID, "keys": {KID: {"alg": ..., "secret": ...} | {"alg": ..., "private_key": PEM,
"public_key": PEM}}}``. New tokens are signed with the active key; every key in the file still
verifies, so rotating (``workbench auth rotate-key``) never logs anyone out, and retiring a key
(``--retire KID``) ends the tokens it signed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from workbench.errors import ConfigError
from workbench.settings import Settings


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    signing: Any  # the HMAC secret (bytes) or a private key (PEM text)
    verifying: Any  # the HMAC secret or a public key (PEM text)


def keys_path(settings: Settings) -> Path:
    return settings.jwt_keys_file or settings.home / "jwt_keys.json"


def _new_key(alg: str) -> dict[str, str]:
    if alg.startswith("HS"):
        return {"alg": alg, "secret": secrets.token_urlsafe(64)}
    private: Any
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ConfigError(f"unsupported jwt_algorithm {alg}")
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {"alg": alg, "private_key": pem, "public_key": public}


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def _read(settings: Settings) -> dict[str, Any]:
    path = keys_path(settings)
    if not path.exists():
        if settings.jwt_keys_file is not None:
            raise ConfigError(f"the JWT key file {path} does not exist (WORKBENCH_JWT_KEYS_FILE)")
        kid = _kid()
        _write(path, {"active": kid, "keys": {kid: _new_key(settings.jwt_algorithm)}})
    try:
        doc = json.loads(path.read_text())
        doc["keys"][doc["active"]]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"the JWT key file {path} is not a valid key file (active key id and keys)") from None
    return doc


def _kid() -> str:
    return f"k{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"


def _key(kid: str, entry: dict[str, Any]) -> SigningKey:
    if "secret" in entry:
        secret = entry["secret"].encode()
        return SigningKey(kid, entry["alg"], secret, secret)
    return SigningKey(kid, entry["alg"], entry.get("private_key"), entry["public_key"])


def active_key(settings: Settings) -> SigningKey:
    doc = _read(settings)
    key = _key(doc["active"], doc["keys"][doc["active"]])
    if key.alg != settings.jwt_algorithm:
        raise ConfigError(f"the active JWT key {key.kid} is {key.alg} but jwt_algorithm is "
                          f"{settings.jwt_algorithm}: rotate to a key of that algorithm (workbench auth rotate-key)")
    return key


def verifying_key(settings: Settings, kid: str) -> SigningKey | None:
    entry = _read(settings)["keys"].get(kid)
    return None if entry is None else _key(kid, entry)


def rotate(settings: Settings, retire: str | None = None) -> str:
    """Add a new active key (of ``jwt_algorithm``) and return its id; with ``retire``, remove that
    key instead (tokens it signed stop working). The active key cannot be retired."""
    doc = _read(settings)
    if retire is not None:
        if retire == doc["active"]:
            raise ConfigError(f"{retire} is the active key: rotate first, then retire it")
        if retire not in doc["keys"]:
            raise ConfigError(f"no key {retire}; keys: {', '.join(doc['keys'])}")
        del doc["keys"][retire]
        _write(keys_path(settings), doc)
        return retire
    kid = _kid()
    doc["keys"][kid] = _new_key(settings.jwt_algorithm)
    doc["active"] = kid
    _write(keys_path(settings), doc)
    return kid


def key_ids(settings: Settings) -> tuple[str, list[str]]:
    doc = _read(settings)
    return doc["active"], list(doc["keys"])
