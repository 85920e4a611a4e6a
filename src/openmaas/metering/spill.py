"""Usage that could not be written, kept in files until the database answers again.

While the database is down, the usage recorder's buckets grow with every new minute,
key and model. Past ``usage_memory_buckets`` they are written here, to JSON-lines files
in ``<data dir>/usage-spill``, and memory starts again from nothing. The files together
may take ``usage_spill_bytes``; the usage that does not fit is dropped, and the requests
it counted are added to ``openmaas_usage_dropped_requests_total``.

When a flush succeeds again, each file is claimed (renamed with the claiming process'
id, so that one worker among several takes it), written in one transaction and deleted;
a file whose write fails is given back for the next try. A claim left behind by a
process that died is given back too.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

_SUFFIX = ".jsonl"
_CLAIMED = ".claimed-"


class UsageSpill:
    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def size(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.directory.iterdir() if path.is_file())

    def pending(self) -> bool:
        return self.directory.is_dir() and any(self.directory.iterdir())

    def write(self, rows: list[dict[str, Any]]) -> int:
        """Keep ``rows`` in a new file, as many as fit; the requests of those that do not."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        room = self.max_bytes - self.size()
        lines: list[bytes] = []
        dropped = 0
        for row in rows:
            line = json.dumps(row, default=_encode).encode() + b"\n"
            if len(line) <= room:
                lines.append(line)
                room -= len(line)
            else:
                dropped += int(row["requests"])
        if lines:
            name = f"{os.getpid()}-{time.time_ns()}{_SUFFIX}"
            partial = self.directory / f".{name}.partial"
            partial.write_bytes(b"".join(lines))
            partial.rename(self.directory / name)  # complete files only, for other workers
        return dropped

    def claim(self) -> list[tuple[Path, list[dict[str, Any]]]]:
        """The files no other process has claimed, claimed by this one, with their rows."""
        if not self.directory.is_dir():
            return []
        self._give_back_orphans()
        claimed = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            mine = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}")
            try:
                path.rename(mine)
            except FileNotFoundError:
                continue  # another worker claimed it first
            rows = [_decode(json.loads(line)) for line in mine.read_text().splitlines() if line]
            claimed.append((mine, rows))
        return claimed

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)

    @staticmethod
    def give_back(path: Path) -> None:
        path.rename(path.with_name(path.name.split(_CLAIMED)[0]))

    def _give_back_orphans(self) -> None:
        for path in self.directory.glob(f"*{_CLAIMED}*"):
            pid = int(path.name.rsplit("-", 1)[1])
            if pid != os.getpid() and not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    self.give_back(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Prices travel as exact decimal strings and come back as Decimal (never through a float).
_PRICES = ("price_per_request", "price_per_1k_input_tokens", "price_per_1k_output_tokens")


def _encode(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot keep {type(value).__name__} in a usage spill file")


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["minute"] = datetime.fromisoformat(row["minute"])
    row["day"] = date.fromisoformat(row["day"])
    for name in _PRICES:
        if row.get(name) is not None:
            row[name] = Decimal(row[name])
    return row
