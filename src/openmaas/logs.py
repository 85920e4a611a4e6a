"""Log lines with a UTC timestamp, as text or as one JSON object a line.

``openmaas serve`` hands ``log_config`` to uvicorn, which applies it in every worker:
the server's own lines, the access log (when on) and OpenMaaS' loggers all go through
the root logger's one handler, so they share one format. ``OPENMAAS_LOG_FORMAT=json``
suits a log collector (each line: ``time``, ``level``, ``logger``, ``message`` and, for
an error, ``exception``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


def _utc(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-31T12:00:00.123Z INFO uvicorn.error: message``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a traceback stays inside its line (``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_config(level: str, log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    name = f"{formatter.__module__}.{formatter.__qualname__}"
    # uvicorn's own loggers hand their lines to the root's handler.
    uvicorn_loggers = {
        logger: {"handlers": [], "propagate": True, "level": level.upper()}
        for logger in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": name}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": uvicorn_loggers,
    }
