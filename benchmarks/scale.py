"""Does cost grow with the number of models? 10,000 registered, 1,000 deployed, 50 in memory.

Two OpenMaaS servers run side by side:

* **baseline**: one model (``binary_classifier``), deployed once;
* **crowded**: 10,000 registered models, each with a version and its own artifact, 1,000
  of them deployed (not loaded in advance) under a model cache budget that holds 50.

Both get the same shape of load at once: a background wrk at concurrency 8, and a
foreground wrk on one hot model at concurrency 1 and 32. On the crowded server the
background traffic is spread over 100 deployed models by a Zipf law (s = 1.1), so the
cache loads and evicts models while the hot model is measured; on the baseline it goes
to its one model. The script also reports the time of a cold model's first request
(load included) and the crowded server's resident memory at each stage.

Run from the repository root: ``.venv/bin/python -m benchmarks.scale``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.loadgen import (
    median_table,
    serve_openmaas,
    wrk,
    wrk_lua,
)
from benchmarks.v2_sklearn import AUTH, BODY
from openmaas.demo.training import train_binary_classifier

HOT = "m00000"
MODEL_BYTES = 1024 * 1024  # the cache counts a small model as at least 1 MiB


def start_openmaas(directory: Path, cache_models: int) -> tuple[subprocess.Popen[bytes], str]:
    return serve_openmaas(
        directory, {"OPENMAAS_MODEL_CACHE_BYTES": str(cache_models * MODEL_BYTES)}
    )


def resident_mib(process: subprocess.Popen[bytes]) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def register(url: str, artifact: Path, names: list[str], threads: int = 8) -> None:
    """Each name becomes a model with one version carrying its own copy of the artifact."""
    data = artifact.read_bytes()
    local = threading.local()

    def one(name: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers=AUTH, timeout=120)
        client: httpx.Client = local.client
        client.post("/models", json={"name": name, "task": "classification"}).raise_for_status()
        files = {"artifact": (f"{name}.skops", data)}
        client.post(f"/models/{name}/versions", files=files).raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(one, names), 1):
            if done % 1000 == 0:
                print(f"  registered {done:,}", file=sys.stderr)


def deploy(url: str, names: list[str], *, warm: bool) -> None:
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as admin:
        for name in names:
            body = {"model_name": name, "endpoint_name": name, "warm": warm}
            admin.post("/deployments/deploy", json=body).raise_for_status()


def zipf_script(names: list[str], exponent: float) -> str:
    """A wrk script whose every request picks its model by a Zipf law over ``names``."""
    weights = [1 / rank**exponent for rank in range(1, len(names) + 1)]
    total, running, cdf = sum(weights), 0.0, []
    for weight in weights:
        running += weight
        cdf.append(running / total)
    return "\n".join(
        [
            'wrk.method = "POST"',
            f"wrk.body = {json.dumps(json.dumps(BODY))}",
            'wrk.headers["Content-Type"] = "application/json"',
            *(f'wrk.headers["{k}"] = "{v}"' for k, v in AUTH.items()),
            "local names = {" + ", ".join(f'"{n}"' for n in names) + "}",
            "local cdf = {" + ", ".join(f"{c:.6f}" for c in cdf) + "}",
            "request = function()",
            "  local r, lo, hi = math.random(), 1, #cdf",
            "  while lo < hi do",
            "    local mid = math.floor((lo + hi) / 2)",
            "    if cdf[mid] < r then lo = mid + 1 else hi = mid end",
            "  end",
            '  return wrk.format(nil, "/v2/models/" .. names[lo] .. "/infer")',
            "end",
        ]
    )


def cold_loads(url: str, names: list[str]) -> list[float]:
    """Seconds to answer the first request of models never loaded before."""
    seconds = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        for name in names:
            started = time.perf_counter()
            client.post(f"/v2/models/{name}/infer", json=BODY).raise_for_status()
            seconds.append(time.perf_counter() - started)
    return seconds


def cache_counters(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=30).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("openmaas_model_loads_total", "openmaas_model_evictions_total"):
            if line.startswith(name):
                found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registered", type=int, default=10_000)
    parser.add_argument("--deployed", type=int, default=1_000)
    parser.add_argument("--spread", type=int, default=100, help="models the traffic reaches")
    parser.add_argument("--cache-models", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-scale-"))
    artifact, _ = train_binary_classifier(work)
    names = [f"m{index:05d}" for index in range(args.registered)]
    baseline, base_url = start_openmaas(work / "baseline", args.cache_models)
    crowded, crowded_url = start_openmaas(work / "crowded", args.cache_models)
    memory = {"crowded, started": resident_mib(crowded)}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        register(base_url, artifact, [HOT])
        deploy(base_url, [HOT], warm=True)
        started = time.perf_counter()
        register(crowded_url, artifact, names)
        elapsed = time.perf_counter() - started
        print(f"registered {len(names):,} in {elapsed:.0f} s", file=sys.stderr)
        memory[f"crowded, {len(names):,} registered"] = resident_mib(crowded)
        deploy(crowded_url, names[: args.deployed], warm=False)
        memory[f"crowded, {args.deployed:,} deployed, none loaded"] = resident_mib(crowded)
        cold = cold_loads(crowded_url, names[args.deployed - 10 : args.deployed])
        background = {
            "baseline": zipf_script([HOT], 1.0),
            "crowded": zipf_script(names[: args.spread], 1.1),
        }
        before = cache_counters(crowded_url)
        for _ in range(args.rounds):
            for concurrency in (1, 32):
                for label, url in (("baseline", base_url), ("crowded", crowded_url)):
                    with concurrent.futures.ThreadPoolExecutor(1) as pool:
                        noise = pool.submit(
                            wrk_lua,
                            url,
                            background[label],
                            concurrency=8,
                            seconds=args.seconds + 2,
                        )
                        time.sleep(1)
                        hot = wrk(
                            f"{url}/v2/models/{HOT}/infer",
                            BODY,
                            concurrency=concurrency,
                            seconds=args.seconds,
                            headers=AUTH,
                        )
                        spread = noise.result()
                    row = f"{label}: hot model"
                    results.setdefault((row, concurrency), []).append(hot)
                    name = f"{label}: background ({'1 model' if label == 'baseline' else 'Zipf'})"
                    results.setdefault((name, 8), []).append(spread)
        after = cache_counters(crowded_url)
        memory[f"crowded, after the runs ({args.cache_models} models cached)"] = resident_mib(
            crowded
        )
        memory["baseline, after the runs"] = resident_mib(baseline)
    finally:
        for process in (baseline, crowded):
            process.terminate()
            process.wait(timeout=60)
    print(median_table(results, first="server: traffic"))
    print()
    print(
        f"cold first request (load included), {len(cold)} models: median "
        f"{statistics.median(cold) * 1000:.0f} ms, max {max(cold) * 1000:.0f} ms"
    )
    loads = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    print(f"cache during the runs: {json.dumps(loads)}")
    print()
    print("| server, stage | resident memory MiB |")
    print("|---|---|")
    for stage, mib in memory.items():
        print(f"| {stage} | {mib:.0f} |")


if __name__ == "__main__":
    main()
