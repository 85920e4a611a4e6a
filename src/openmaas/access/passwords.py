"""Password hashing with argon2id, a few hashes at a time.

Each argon2id hash (the library's default profile, RFC 9106's second recommendation)
takes 64 MiB of memory for its run. Run in the default pool of 40 threads, a burst of
wrong passwords hashed 40 at once and held about 2.5 GiB; ``PasswordHashing`` lets a set
number run at once (``password_hashing_concurrency``) and the others wait their turn.
"""

from __future__ import annotations

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class PasswordHashing:
    """Hashing off the event loop, at most ``concurrency`` hashes at once."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._slots: anyio.CapacityLimiter | None = None  # made in the event loop

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.concurrency)
        return self._slots

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(hash_password, password, limiter=self._limiter())

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await anyio.to_thread.run_sync(
            verify_password, password_hash, password, limiter=self._limiter()
        )
