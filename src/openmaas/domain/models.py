"""Registry nouns: models, versions, signatures and references to them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from openmaas.domain.errors import BadRequest

# Names appear in URLs (`/v2/models/{name}/infer`) and references (`name@alias`, `name/3`),
# so they may not contain '/', '@' or whitespace.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

# The tensor datatypes of the Open Inference Protocol.
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    CLUSTERING = "clustering"
    TEXT_GENERATION = "text-generation"
    EMBEDDINGS = "embeddings"
    OTHER = "other"


def validate_name(name: str, *, what: str = "model name") -> str:
    if not NAME_PATTERN.match(name):
        raise BadRequest(
            f"invalid {what} {name!r}: use letters, digits, '_', '.' or '-' (at most 128)",
            code="invalid_name",
        )
    return name


# Versions are numbered from 1 and stored in an INTEGER column: a bigger number is no
# version (a 400), never a database overflow.
MAX_VERSION = 2_147_483_647
_VERSION_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only: "²".isdigit() is True


def is_version_number(text: str) -> bool:
    """Whether ``text`` is written as a version number (plain ASCII digits)."""
    return _VERSION_NUMBER.fullmatch(text) is not None


def version_number(value: int | str) -> int:
    """A version number in range, from a number or its ASCII digits; else a 400."""
    if isinstance(value, int):
        number = value
    else:  # more than 10 digits is out of range anyway, and int() refuses 4,300 digits
        number = int(value) if is_version_number(value) and len(value) <= 10 else -1
    if not 1 <= number <= MAX_VERSION:
        shown = value if isinstance(value, str) and len(value) <= 40 else "out of range"
        raise BadRequest(
            f"invalid version {shown!r}: a number from 1 to {MAX_VERSION}, an alias or 'latest'",
            code="invalid_version",
        )
    return number


def version_selector(value: int | str) -> int | str:
    """What a client wrote for a version: a number in range, else the text (an alias)."""
    if isinstance(value, int):
        return version_number(value)
    return version_number(value) if is_version_number(value) else value


def validate_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias) or alias == "latest":
        raise BadRequest(
            f"invalid alias {alias!r}: start with a letter; letters, digits, '_' or '-'; "
            "'latest' is reserved",
            code="invalid_alias",
        )
    return alias


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        try:
            name = str(data["name"])
            datatype = str(data["datatype"]).upper()
            shape = tuple(int(d) for d in data["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(
                "a tensor spec needs 'name', 'datatype' and 'shape' (a list of integers)",
                code="invalid_signature",
            ) from exc
        if datatype not in DATATYPES:
            raise BadRequest(f"unknown datatype {datatype!r}", code="invalid_signature")
        return cls(name=name, datatype=datatype, shape=shape)


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Signature:
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise BadRequest("a signature is an object", code="invalid_signature")
        inputs = data.get("inputs") or []
        outputs = data.get("outputs") or []
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise BadRequest("signature inputs and outputs are lists", code="invalid_signature")
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in inputs),
            outputs=tuple(TensorSpec.from_dict(t) for t in outputs),
        )

    @property
    def empty(self) -> bool:
        return not self.inputs and not self.outputs


EMPTY_SIGNATURE = Signature()


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A way to name a version: ``name`` (latest), ``name/3`` or ``name@alias``."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str, version: str | int | None = None) -> ModelRef:
        """Parse a reference; an explicit ``version`` (number, alias or 'latest') wins."""
        name, ref_version, alias = text, None, None
        if "@" in text:
            name, alias = text.split("@", 1)
        elif "/" in text:
            name, number = text.split("/", 1)
            ref_version = number
        validate_name(name)
        selector = version if version not in (None, "") else ref_version
        if selector is not None:
            return cls._with_selector(name, selector)
        if alias is not None:
            return cls(name=name, alias=validate_alias(alias))
        return cls(name=name)

    @classmethod
    def _with_selector(cls, name: str, selector: str | int) -> ModelRef:
        if isinstance(selector, int) and not isinstance(selector, bool):
            number = selector
        else:
            text = str(selector).strip()
            if text.lower() in ("latest", ""):
                return cls(name=name)
            stripped = text[1:] if text[:1] in ("v", "V") and is_version_number(text[1:]) else text
            if not is_version_number(stripped):
                return cls(name=name, alias=validate_alias(text))
            return cls(name=name, version=version_number(stripped))
        return cls(name=name, version=version_number(number))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


@dataclass(slots=True)
class ModelVersion:
    model_name: str
    version: int
    runtime: str
    artifact_filename: str
    artifact_path: str
    artifact_sha256: str
    artifact_size: int
    signature: Signature
    metrics: dict[str, float]
    description: str
    allow_code: bool
    created_at: datetime
    options: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    deployed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "runtime": self.runtime,
            "artifact": {
                "filename": self.artifact_filename,
                "sha256": self.artifact_sha256,
                "size": self.artifact_size,
            },
            "signature": self.signature.to_dict(),
            "metrics": self.metrics,
            "description": self.description,
            "allow_code": self.allow_code,
            "options": self.options,
            "aliases": self.aliases,
            "deployed": self.deployed,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(slots=True)
class Model:
    name: str
    description: str
    task: str
    tags: list[str]
    owner: str | None
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = None
    version_count: int = 0
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "task": self.task,
            "tags": self.tags,
            "owner": self.owner,
            "latest_version": self.latest_version,
            "version_count": self.version_count,
            "aliases": self.aliases,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
