"""What a ModelRoute adds to V2 inference: the same model called directly and through a route.

The route matches a header, splits by weight between two rules and has a fallback, so
the request pays for matching, the weighted draw and the retry wrapper.

Run from the repository root: ``.venv/bin/python -m benchmarks.routing_cost``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx

from benchmarks.loadgen import median_table, wrk
from benchmarks.v2_sklearn import AUTH, BODY, provision, start_openmaas
from openmaas.demo.training import train_binary_classifier

ROUTE = {
    "apiVersion": "networking.matrixinfer.ai/v1alpha1",
    "kind": "ModelRoute",
    "metadata": {"name": "classifier-route"},
    "spec": {
        "routes": [
            {
                "match": {"headers": {"user-type": "premium"}},
                "destination": {"modelServerRef": {"name": "binary_classifier"}},
                "weight": 50,
                "timeout": "10s",
                "retries": 1,
            },
            {
                "match": {"headers": {"user-type": "premium"}},
                "destination": {"modelServerRef": {"name": "binary_classifier/1"}},
                "weight": 50,
            },
        ],
        "fallback": {"modelServerRef": {"name": "binary_classifier"}},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-routing-"))
    model_file, _ = train_binary_classifier(work)
    server, url = start_openmaas(work / "openmaas")
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        provision(url, model_file, 1)
        httpx.post(f"{url}/routes", json=ROUTE, headers=AUTH).raise_for_status()
        premium = {**AUTH, "user-type": "premium"}
        rows = [
            ("direct", f"{url}/v2/models/binary_classifier/infer", AUTH),
            ("through the route", f"{url}/v2/models/classifier-route/infer", premium),
        ]
        for concurrency in (1, 32):
            for _ in range(args.rounds):
                for name, target, headers in rows:
                    result = wrk(
                        target, BODY, concurrency=concurrency, seconds=args.seconds, headers=headers
                    )
                    results.setdefault((name, concurrency), []).append(result)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(median_table(results, first="request"))


if __name__ == "__main__":
    main()
