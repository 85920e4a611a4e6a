"""Signed session cookies for the web pages, CSRF tokens, and short-lived signed state.

A session is a signed, timestamped cookie (itsdangerous) holding the user id and a CSRF
token; nothing is stored server-side, so every worker reads it without I/O. The cookie is
HttpOnly and SameSite=Lax, so other sites' forms and scripts cannot send it on a POST;
cookie-authenticated writes must also echo the CSRF token (header ``X-CSRF-Token`` or a
form field), which a page of another origin cannot read.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from openmaas.settings import Settings

SESSION_COOKIE = "openmaas_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SECRET_FILE = "session-secret"


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    csrf_token: str
    issued_at: float


def session_secret(settings: Settings) -> str:
    """The configured secret, or one created once and kept in the data directory."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = settings.data_dir / _SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: when several workers start at once, exactly one writes the secret.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    for _ in range(50):
        secret = Path(path).read_text().strip()
        if secret:
            return secret
        time.sleep(0.01)  # the writer has created the file but not written it yet
    raise RuntimeError(f"empty session secret in {path}")


class SessionCodec:
    def __init__(self, secret: str, *, max_age: int) -> None:
        self.max_age = max_age
        self._sessions = URLSafeTimedSerializer(secret, salt="openmaas.session")
        self._states = URLSafeTimedSerializer(secret, salt="openmaas.state")

    def issue(self, user_id: int) -> tuple[str, Session]:
        session = Session(user_id, secrets.token_urlsafe(24), time.time())
        value = self._sessions.dumps([session.user_id, session.csrf_token, session.issued_at])
        return value, session

    def read(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            user_id, csrf_token, issued_at = self._sessions.loads(value, max_age=self.max_age)
            return Session(int(user_id), str(csrf_token), float(issued_at))
        except (BadSignature, ValueError, TypeError):
            return None

    def dump_state(self, data: dict[str, Any]) -> str:
        return self._states.dumps(data)

    def load_state(self, value: str | None, *, max_age: int) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            data = self._states.loads(value, max_age=max_age)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None


def csrf_matches(session: Session, token: str | None) -> bool:
    if not token:
        return False
    # As bytes: compare_digest raises on str with characters beyond ASCII.
    sent = str(token).encode("utf-8", "surrogateescape")
    return hmac.compare_digest(session.csrf_token.encode(), sent)
