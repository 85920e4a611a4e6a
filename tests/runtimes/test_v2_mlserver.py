"""The remote V2 runtime against a real MLServer serving a scikit-learn model.

MLServer lives in a virtual environment of its own (``make peers``: ``.peers/mlserver``);
the model is trained and saved by that environment's Python, so that its scikit-learn
reads it. The gateway reaches MLServer through a ``*.v2.json`` endpoint file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Platform
from tests.servers import free_port, unavailable
from tests.serving.helpers import deploy, register

ROOT = Path(__file__).resolve().parents[2]
MLSERVER_ENV = Path(os.environ.get("OPENMAAS_TEST_MLSERVER_ENV", ROOT / ".peers" / "mlserver"))
ROWS = [[0.9, 0.9, 0.1], [0.1, 0.1, 0.9]]

TRAIN = """
import sys
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(4)
x = rng.uniform(0.0, 1.0, size=(1000, 3))
y = (x @ np.array([1.0, 2.0, -1.5]) > 0.75).astype(np.int64)
joblib.dump(LogisticRegression().fit(x, y), sys.argv[1])
"""


@dataclass
class MLServer:
    """An MLServer process serving ``classifier``; ``stop`` and ``start`` it at will."""

    directory: Path
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        log = (self.directory / "mlserver.log").open("ab")
        self.process = subprocess.Popen(
            [str(MLSERVER_ENV / "bin" / "mlserver"), "start", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                output = (self.directory / "mlserver.log").read_text()[-3000:]
                pytest.fail(f"MLServer exited: {output}")
            try:
                if httpx.get(f"{self.url}/v2/models/classifier/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "MLServer did not become ready in 120 s"
            time.sleep(0.5)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # Its own session: the workers it forked go with it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    python = MLSERVER_ENV / "bin" / "python"
    if not (MLSERVER_ENV / "bin" / "mlserver").exists():
        unavailable("MLServer", f"nothing installed at {MLSERVER_ENV}: run `make peers`")
    directory = tmp_path_factory.mktemp("mlserver")
    model_dir = directory / "classifier"
    model_dir.mkdir()
    subprocess.run([str(python), "-c", TRAIN, str(model_dir / "model.joblib")], check=True)
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "classifier",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}],
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
            }
        )
    )
    server = MLServer(directory, free_port())
    (directory / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": server.http_port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_predict_and_v2_through_a_real_mlserver(
    platform: Platform, mlserver: MLServer, tmp_path: Path, unique_name: str
) -> None:
    endpoint_file = tmp_path / "classifier.v2.json"
    endpoint_file.write_text(
        json.dumps({"base_url": mlserver.url, "model": "classifier", "timeout": 10})
    )
    register(platform.admin, unique_name, endpoint_file)
    deploy(platform.admin, unique_name, endpoint_name=unique_name)

    def predict() -> httpx.Response:
        return platform.admin.post("/predict", json={"model_name": unique_name, "input": ROWS})

    predicted = predict()
    assert predicted.status_code == 200, predicted.text
    assert [int(row[0]) for row in predicted.json()["prediction"]] == [1, 0]

    # The signature came from MLServer's model metadata.
    metadata = platform.admin.get(f"/v2/models/{unique_name}").json()
    assert [tensor["name"] for tensor in metadata["inputs"]] == ["input"]

    v2 = platform.admin.post(
        f"/v2/models/{unique_name}/infer",
        json={"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": ROWS}]},
    )
    assert v2.status_code == 200, v2.text
    output = v2.json()["outputs"][0]
    assert output["name"] == "predict" and output["data"] == [1, 0]

    # MLServer goes away mid-run: 503, never a 500 or a hang.
    mlserver.stop()
    for _ in range(3):
        down = predict()
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "upstream_unavailable"

    # It comes back on the same port: the same deployment answers again.
    mlserver.start()
    deadline = time.monotonic() + 30
    while (back := predict()).status_code != 200:
        assert back.status_code == 503 and time.monotonic() < deadline, back.text
        time.sleep(0.5)
    assert [int(row[0]) for row in back.json()["prediction"]] == [1, 0]
