"""A model directory or package named by a location file, as artifacts do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def location_file(directory: Path, **settings: Any) -> Path:
    path = directory / "location.json"
    path.write_text(json.dumps(settings))
    return path
