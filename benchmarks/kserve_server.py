"""KServe's Python model server serving binary_classifier, for the V2 benchmark.

Runs in KServe's own virtual environment (never ours):
``/path/to/kserve-venv/bin/python benchmarks/kserve_server.py PORT MODEL.joblib``.
A ``kserve.Model`` subclass as KServe's documentation writes one: load in ``load``,
answer V2 in ``predict``; one worker, gRPC and per-request logging off.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import joblib
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class BinaryClassifier(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.estimator: Any = None
        self.load()

    def load(self) -> bool:
        self.estimator = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:
        rows = payload.inputs[0].as_numpy()
        result = self.estimator.predict(rows)
        output = InferOutput(name="output-0", shape=list(result.shape), datatype="INT64")
        output.set_data_from_numpy(result, binary_data=False)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[output],
            response_id=payload.id or str(uuid.uuid4()),
        )


if __name__ == "__main__":
    port, model_file = int(sys.argv[1]), sys.argv[2]
    # Per-request logging off, as OpenMaaS has it by default: the comparison is of serving.
    server = ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).disabled = True
    server.start([BinaryClassifier("binary_classifier", model_file)])
