"""Reading a key from a request: Bearer, X-API-Key, or HTTP Basic (key as user or password)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping

KEY_PREFIX = "om_"


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    """The presented key, or None when the request carries none (or an unreadable one)."""
    raw: list[tuple[bytes, bytes]] | None = getattr(headers, "raw", None)
    if raw is not None:
        # Starlette's headers: one pass over the raw pairs (ASGI names are lower case)
        # instead of a scan and a decode of every header per name looked up.
        api_key: str | None = None
        authorization: str | None = None
        for name, given in raw:
            if name == b"authorization":
                authorization = authorization or given.decode("latin-1")
            elif name == b"x-api-key":
                api_key = api_key or given.decode("latin-1")
    else:
        api_key = headers.get("x-api-key")
        authorization = headers.get("authorization")
    if api_key:
        return api_key.strip() or None
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        # 3scale's "HTTP Basic" puts the key in the user part; other clients in the password.
        return (user if user.startswith(KEY_PREFIX) or not password else password) or None
    return None


def new_key() -> tuple[str, str, str]:
    """A fresh key: (the key shown once, its visible prefix, the hash stored)."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return key, f"{KEY_PREFIX}{prefix}", hash_key(key)


def hash_key(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is safe; passwords use argon2.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
