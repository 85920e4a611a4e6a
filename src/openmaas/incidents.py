"""Failures whose details stay in the server log: the client gets a reference to quote.

A model's or an upstream server's own error text can name hosts, ports, file paths,
library internals or another tenant's data. Clients get a plain message of ours and a
short reference; the log line with the same reference keeps what went wrong.
"""

from __future__ import annotations

import logging
import secrets
from typing import TypeVar

from openmaas.domain.errors import OpenMaaSError

E = TypeVar("E", bound=OpenMaaSError)

logger = logging.getLogger("openmaas.incidents")


def reported(
    error: type[E],
    message: str,
    *,
    code: str,
    detail: object,
    headers: dict[str, str] | None = None,
) -> E:
    """``error(message)`` for the client; ``detail`` logged under a fresh reference."""
    reference = secrets.token_hex(6)
    logger.warning("%s [%s]: %s", message, reference, detail)
    return error(
        f"{message} (reference {reference}; the server log has the details)",
        code=code,
        details={"reference": reference},
        headers=headers,
    )
