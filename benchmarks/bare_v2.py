"""The floor for a V2 model server in Python: raw ASGI, orjson and ``predict``, nothing else.

No authentication, no metrics, no validation beyond what parsing needs: what serving a
scikit-learn model over the Open Inference Protocol costs at the least.
``python benchmarks/bare_v2.py PORT MODEL.joblib``.
"""

from __future__ import annotations

import sys
from typing import Any

import joblib
import numpy as np
import orjson
import uvicorn

_JSON = [(b"content-type", b"application/json")]


def create_app(model: Any, name: str) -> Any:
    path = f"/v2/models/{name}/infer"
    ready = f"/v2/models/{name}/ready"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == ready:
            status, payload = 200, b'{"name":"' + name.encode() + b'","ready":true}'
        elif scope["path"] != path:
            status, payload = 404, b'{"error":"not found"}'
        else:
            request = orjson.loads(body)
            tensor = request["inputs"][0]
            rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
            result = model.predict(rows)
            output = {"name": "output-0", "shape": list(result.shape), "datatype": "INT64"}
            output["data"] = result.tolist()
            status, payload = 200, orjson.dumps({"model_name": name, "outputs": [output]})
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": payload})

    return app


if __name__ == "__main__":
    port, model_file = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        create_app(joblib.load(model_file), "binary_classifier"),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
