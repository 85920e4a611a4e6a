"""The README's Python example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from tests.conftest import ADMIN_KEY, Platform

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_registering_example(platform: Platform) -> None:
    text = README.read_text()
    block = re.search(r"## Registering a model\s+```python\n(.*?)```", text, re.S)
    assert block is not None
    code = block.group(1).replace("http://127.0.0.1:8000", platform.url)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {"X": features, "y": (features.sum(axis=1) > 0).astype(int), "key": ADMIN_KEY})
    promised = re.findall(r"print\([^#]*\)\s+# (\d+)", code)
    assert printed.getvalue().split() == promised == ["1", "1"]
