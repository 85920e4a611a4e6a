from __future__ import annotations

import pytest

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import ModelRef, Signature


@pytest.mark.parametrize(
    ("text", "version", "expected"),
    [
        ("m", None, ModelRef("m")),
        ("m/3", None, ModelRef("m", version=3)),
        ("m@champion", None, ModelRef("m", alias="champion")),
        ("m", "2", ModelRef("m", version=2)),
        ("m", "v2", ModelRef("m", version=2)),
        ("m", 4, ModelRef("m", version=4)),
        ("m", "latest", ModelRef("m")),
        ("m", "staging", ModelRef("m", alias="staging")),
        ("m@champion", "5", ModelRef("m", version=5)),
    ],
)
def test_references_parse(text: str, version: object, expected: ModelRef) -> None:
    assert ModelRef.parse(text, version) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "a b", "m/0", "m/-1", "m@", "m@1x", "@a", "/3"])
def test_bad_references(text: str) -> None:
    with pytest.raises(BadRequest):
        ModelRef.parse(text)


def test_reference_round_trip() -> None:
    for text in ("m", "m/3", "m@prod"):
        assert str(ModelRef.parse(text)) == text


def test_signature_round_trip_and_validation() -> None:
    data = {
        "inputs": [{"name": "x", "datatype": "fp32", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}],
    }
    signature = Signature.from_dict(data)
    assert signature.inputs[0].datatype == "FP32"
    assert Signature.from_dict(signature.to_dict()) == signature
    for bad in ({"inputs": "x"}, {"inputs": [{"name": "x"}]}, [1], {"outputs": [{"shape": 1}]}):
        with pytest.raises(BadRequest):
            Signature.from_dict(bad)  # type: ignore[arg-type]
