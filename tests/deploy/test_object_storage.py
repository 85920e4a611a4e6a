"""Two replicas on PostgreSQL, Redis and an S3-compatible bucket, each with an empty data
directory of its own: what one registers the other serves, the bucket may go away, and a
replica stopped under load loses no request and no usage record.

The bucket is moto's S3 server on loopback, behind a TCP proxy the test can cut; the
replicas are ``openmaas serve`` processes, as a container would run them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from openmaas.testing import FakeOpenAI
from tests.accounts import Factory, await_key_everywhere
from tests.conftest import ADMIN_KEY, make_settings
from tests.deploy.balancer import Balancer
from tests.deploy.bucket import BUCKET, PREFIX, Bucket
from tests.models import classifier, skops_file
from tests.servers import (
    drop_redis_prefix,
    free_port,
    postgres_database,
    redis_or_skip,
    running,
    unique_redis_prefix,
    wait_ready,
)
from tests.serving.helpers import deploy, register

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROW = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def test_a_local_store_moves_to_the_bucket_with_one_command(bucket: Bucket, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with (
        running(create_app(make_settings(data_dir))) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as admin,
    ):
        for seed in range(2):
            path = skops_file(tmp_path, classifier(seed=seed), f"moved{seed}.skops")
            register(admin, "moved", path)
    target = f"s3://{BUCKET}/migrated"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENMAAS_", "AWS_"))},
        **S3_ENV,
        "OPENMAAS_DATA_DIR": str(data_dir),
        "OPENMAAS_S3_ENDPOINT_URL": bucket.direct,
    }
    command = [sys.executable, "-m", "openmaas.cli", "artifacts", "migrate", "--to", target]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 copied, 0 already there, 0 failed" in done.stdout, done.stdout
    assert f"OPENMAAS_ARTIFACT_URL={target}" in done.stdout
    listing = bucket.client().list_objects_v2(Bucket=BUCKET, Prefix="migrated/")
    keys = sorted(item["Key"] for item in listing["Contents"])
    assert keys == ["migrated/moved/1/moved0.skops", "migrated/moved/2/moved1.skops"]
    for key in keys:
        body = bucket.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body == (data_dir / "artifacts" / key.removeprefix("migrated/")).read_bytes()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert "0 copied, 2 already there, 0 failed" in again.stdout, again.stdout

    # The platform now runs from the bucket: the old folder can go.
    shutil.rmtree(data_dir / "artifacts")
    settings = make_settings(
        data_dir,
        artifact_url=target,
        s3_endpoint_url=bucket.direct,
        s3_region="us-east-1",
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    with (
        running(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as admin,
    ):
        deploy(admin, "moved", endpoint_name="moved", version="1")
        answer = admin.post("/predict/moved", json={"input": [[1, 2, 3]]})
        assert answer.status_code == 200, answer.text


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    client: httpx.Client


@dataclass
class Cluster:
    a: Replica
    b: Replica
    database_url: str
    bucket: Bucket
    fake: FakeOpenAI
    make: Factory
    models: dict[str, str] = field(default_factory=dict)


def _serve(name: str, env: dict[str, str], data_dir: Path, **settings: str) -> Replica:
    port = free_port()
    values = {**env, "OPENMAAS_DATA_DIR": str(data_dir)}
    values.update({f"OPENMAAS_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo", "--port", str(port)]
    process = subprocess.Popen(
        command, env=values, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    # Generous: a replica's first upload or load imports scikit-learn, which takes half a
    # minute in a fresh process on a busy two-core machine.
    client = httpx.Client(base_url=url, headers=HEADERS, timeout=180)
    return Replica(name, process, url, data_dir, client)


@pytest.fixture(scope="module")
def cluster(bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = redis_or_skip()
    prefix = unique_redis_prefix()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENMAAS_", "AWS_"))}
    with postgres_database() as database_url, FakeOpenAI(stall_seconds=2.5) as fake:
        env = {
            **base,
            **S3_ENV,
            "OPENMAAS_DATABASE_URL": database_url,
            "OPENMAAS_REDIS_URL": redis_url,
            "OPENMAAS_REDIS_PREFIX": prefix,
            "OPENMAAS_ARTIFACT_URL": f"s3://{BUCKET}/{PREFIX}",
            "OPENMAAS_S3_ENDPOINT_URL": bucket.endpoint,
            "OPENMAAS_ARTIFACT_STORE_TIMEOUT_SECONDS": "3",
            "OPENMAAS_ADMIN_KEY": ADMIN_KEY,
            "OPENMAAS_SESSION_SECRET": secrets.token_hex(24),
            "OPENMAAS_ACCESS_REFRESH_SECONDS": "0.5",
            # Only the final flush at a stop writes usage: that is what is tested.
            "OPENMAAS_USAGE_FLUSH_SECONDS": "3600",
            "OPENMAAS_LOG_LEVEL": "warning",
        }
        # Both start at once on an empty database: one migrates, the other waits for it.
        a = _serve(
            "a",
            env,
            tmp_path_factory.mktemp("replica-a"),
            shutdown_delay_seconds="1",
            shutdown_grace_seconds="20",
        )
        b = _serve(
            "b",
            env,
            tmp_path_factory.mktemp("replica-b"),
            shutdown_delay_seconds="0",
            shutdown_grace_seconds="1",
        )
        make = Factory(a.url, a.client)
        try:
            for replica in (a, b):
                wait_ready(replica.process, replica.url, timeout=180)
            yield Cluster(a, b, database_url, bucket, fake, make)
        finally:
            make.close()
            for replica in (a, b):
                replica.client.close()
                if replica.process.poll() is None:
                    replica.process.kill()
                    replica.process.communicate(timeout=30)
            drop_redis_prefix(prefix)


def _register_classifier(cluster: Cluster, name: str, directory: Path, **fields: str) -> Path:
    path = skops_file(directory, classifier(), f"{name}.skops")
    register(cluster.a.client, name, path)
    deploy(cluster.a.client, name, endpoint_name=name, **fields)
    return path


def _wait_loaded(replica: Replica, name: str, timeout: float = 180) -> None:
    """Until the replica has the model loaded (a first import of its runtime's libraries
    in a fresh process can take long on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = replica.client.get(f"/v2/models/{name}/ready")
        if answer.status_code == 200 and answer.json()["state"] == "loaded":
            return
        assert time.monotonic() < deadline, f"{name} on replica {replica.name}: {answer.text}"
        time.sleep(0.2)


def _wait_known(replica: Replica, name: str) -> None:
    """Until the replica has picked up the deployment made on the other one (about 1 s)."""
    deadline = time.monotonic() + 10
    while replica.client.get(f"/v2/models/{name}/ready").status_code == 404:
        assert time.monotonic() < deadline, f"{name} did not reach replica {replica.name}"
        time.sleep(0.1)


def _revisions(database_url: str) -> list[str]:
    async def query() -> list[str]:
        import asyncpg

        connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return [row[0] for row in await connection.fetch("SELECT * FROM alembic_version")]
        finally:
            await connection.close()

    return asyncio.run(query())


def test_replicas_started_together_migrate_once(cluster: Cluster) -> None:
    from openmaas.store.database import head_revisions

    assert set(_revisions(cluster.database_url)) == head_revisions()
    assert len(_revisions(cluster.database_url)) == 1
    for replica in (cluster.a, cluster.b):
        ready = replica.client.get("/readyz").json()
        assert ready["status"] == "ready", ready


def test_registered_on_one_replica_served_by_the_other(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.a, cluster.b
    path = _register_classifier(cluster, "shared_classifier", tmp_path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert cluster.bucket.keys("shared_classifier/") == [
        f"{PREFIX}/shared_classifier/1/shared_classifier.skops"
    ]
    remote = tmp_path / "chat.openai.json"
    remote.write_text(json.dumps({"base_url": cluster.fake.url, "model": "echo", "timeout": 10}))
    register(a.client, "shared_chat", remote)
    deploy(a.client, "shared_chat", endpoint_name="shared_chat")
    _wait_loaded(b, "shared_classifier")
    _wait_loaded(b, "shared_chat")

    predicted = b.client.post(
        "/predict", json={"model_name": "shared_classifier", "input": [[1, 2, 3]]}
    )
    assert predicted.status_code == 200, predicted.text
    inferred = b.client.post("/v2/models/shared_classifier/infer", json=ROW)
    assert inferred.status_code == 200, inferred.text
    assert (
        inferred.json()["outputs"][0]["data"]
        == a.client.post("/v2/models/shared_classifier/infer", json=ROW).json()["outputs"][0][
            "data"
        ]
    )
    chat = b.client.post(
        "/v1/chat/completions",
        json={"model": "shared_chat", "messages": [{"role": "user", "content": "hi there"}]},
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == "You said: hi there"
    # B fetched the artifact into its cache, keyed by SHA-256; neither keeps a local store.
    cached = b.data_dir / "artifact-cache" / sha[:2] / sha / "shared_classifier.skops"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    # A kept what it uploaded: it never downloads its own uploads.
    kept = a.data_dir / "artifact-cache" / sha[:2] / sha / "shared_classifier.skops"
    assert kept.read_bytes() == path.read_bytes()
    assert not (a.data_dir / "artifacts").exists() and not (b.data_dir / "artifacts").exists()
    state = b.client.get("/v2/models/shared_classifier/ready").json()
    assert state == {"name": "shared_classifier", "ready": True, "state": "loaded"}


def _predict(replica: Replica, name: str) -> httpx.Response:
    return replica.client.post("/predict", json={"model_name": name, "input": [[1, 2, 3]]})


def test_bucket_away_503_for_models_not_cached_cached_ones_keep_serving(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b, bucket = cluster.a, cluster.b, cluster.bucket
    _register_classifier(cluster, "kept_classifier", tmp_path)
    _wait_loaded(b, "kept_classifier")
    # Deployed lazily: replica B has not fetched it when the bucket goes away.
    _register_classifier(cluster, "lazy_classifier", tmp_path, warm=False)
    _wait_known(b, "lazy_classifier")
    bucket.proxy.down()
    try:
        refused = _predict(b, "lazy_classifier")
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "artifact_store_unavailable"
        assert "lazy_classifier" in refused.json()["message"]
        assert int(refused.headers["Retry-After"]) > 0
        state = b.client.get("/v2/models/lazy_classifier/ready")
        assert state.status_code == 503 and "failed" in state.json()["error"]
        assert _predict(b, "kept_classifier").status_code == 200
        assert b.client.post("/v2/models/kept_classifier/infer", json=ROW).status_code == 200
        # An upload needs the bucket: refused whole, nothing registered.
        path = skops_file(tmp_path, classifier(), "late.skops")
        assert a.client.post("/models", json={"name": "late_classifier"}).status_code == 201
        with path.open("rb") as handle:
            upload = a.client.post(
                "/models/late_classifier/versions", files={"artifact": (path.name, handle)}
            )
        assert upload.status_code == 503, upload.text
        assert upload.json()["code"] == "artifact_store_unavailable"
        assert a.client.get("/models/late_classifier/versions").json()["versions"] == []
        # Readiness does not hang on the bucket: models load from it on demand.
        assert b.client.get("/readyz").status_code == 200
    finally:
        bucket.proxy.up()
    assert _predict(b, "lazy_classifier").status_code == 200
    assert b.client.get("/v2/models/lazy_classifier/ready").json()["state"] == "loaded"


def test_a_corrupt_download_is_fetched_again_and_a_corrupt_object_never_loads(
    cluster: Cluster, tmp_path: Path
) -> None:
    b, bucket = cluster.b, cluster.bucket
    _register_classifier(cluster, "flipped_classifier", tmp_path, warm=False)
    _wait_known(b, "flipped_classifier")
    bucket.proxy.corrupt_next_body()
    answer = _predict(b, "flipped_classifier")
    assert answer.status_code == 200, answer.text
    assert not bucket.proxy._corrupt, "no download passed the proxy"

    path = _register_classifier(cluster, "rotten_classifier", tmp_path, warm=False)
    _wait_known(b, "rotten_classifier")
    key = f"{PREFIX}/rotten_classifier/1/{path.name}"
    good = path.read_bytes()
    bucket.client().put_object(Bucket=BUCKET, Key=key, Body=good[:-10] + b"0123456789")
    refused = _predict(b, "rotten_classifier")
    assert refused.status_code == 502, refused.text
    assert refused.json()["code"] == "artifact_corrupt"
    assert b.client.get("/v2/models/rotten_classifier/ready").status_code == 503
    bucket.client().put_object(Bucket=BUCKET, Key=key, Body=good[:100])  # truncated
    assert _predict(b, "rotten_classifier").json()["code"] == "artifact_corrupt"
    bucket.client().put_object(Bucket=BUCKET, Key=key, Body=good)
    assert _predict(b, "rotten_classifier").status_code == 200


def test_deleting_versions_and_models_removes_their_objects(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, bucket = cluster.a, cluster.bucket
    for seed in range(2):
        register(a.client, "doomed", skops_file(tmp_path, classifier(seed=seed), f"d{seed}.skops"))
    assert len(bucket.keys("doomed/")) == 2
    assert a.client.delete("/models/doomed/versions/1").status_code == 204
    assert bucket.keys("doomed/") == [f"{PREFIX}/doomed/2/d1.skops"]
    assert a.client.delete("/models/doomed").status_code == 204
    assert bucket.keys("doomed/") == []


async def _usage_of(database_url: str, application_id: int) -> int:
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        total = await connection.fetchval(
            "SELECT COALESCE(SUM(requests), 0) FROM usage WHERE application_id = $1",
            application_id,
        )
        return int(total)
    finally:
        await connection.close()


def test_a_replica_stopped_under_load_loses_no_request_and_no_usage(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = cluster.a, cluster.b
    _register_classifier(cluster, "busy_classifier", tmp_path)
    stall = tmp_path / "stall.openai.json"
    stall.write_text(json.dumps({"base_url": cluster.fake.url, "model": "stall", "timeout": 30}))
    register(a.client, "slow_chat", stall)
    deploy(a.client, "slow_chat", endpoint_name="slow_chat", timeout_s=60)
    for replica in (a, b):
        _wait_loaded(replica, "busy_classifier")
        _wait_loaded(replica, "slow_chat")
    plan = cluster.make.plan(models=["busy_classifier", "slow_chat"], requests_per_minute=100_000)
    _developer, application_id, key = cluster.make.key_for(plan)
    await_key_everywhere([a.url, b.url], key)
    caller = {"Authorization": f"Bearer {key}"}
    balancer = Balancer([a, b])
    results: list[int] = []
    stop_load = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(headers=caller, timeout=60) as client:
            turn = worker
            while not stop_load.is_set():
                replica = balancer.pick(turn)
                turn += 1
                try:
                    response = client.post(
                        f"{replica.url}/predict",
                        json={"model_name": "busy_classifier", "input": [[1, 2, 3]]},
                    )
                except httpx.ConnectError:
                    # Refused before the balancer's next probe saw it: the request never
                    # reached a server, so a balancer sends it to the next replica.
                    continue
                results.append(response.status_code)

    def stream(replica: Replica, into: list[str]) -> None:
        body = {
            "model": "slow_chat",
            "stream": True,
            "messages": [{"role": "user", "content": "take your time"}],
        }
        with (
            httpx.Client(headers=caller, timeout=60) as client,
            client.stream("POST", f"{replica.url}/v1/chat/completions", json=body) as answer,
        ):
            try:
                into.extend(line for line in answer.iter_lines() if line)
            except httpx.TransportError as error:
                into.append(f"cut: {error!r}")

    workers = [threading.Thread(target=load, args=(n,)) for n in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    on_a: list[str] = []
    streaming = threading.Thread(target=stream, args=(a, on_a))
    streaming.start()
    time.sleep(0.5)  # the stream has begun: its first chunk, then a 2.5 s pause
    stopped_at = time.monotonic()
    balancer.watching = True
    a.process.send_signal(signal.SIGTERM)
    output, _ = a.process.communicate(timeout=60)
    exited_after = time.monotonic() - stopped_at
    time.sleep(1.0)
    stop_load.set()
    for worker in workers:
        worker.join(timeout=60)
    streaming.join(timeout=60)
    balancer.close()

    assert a.process.returncode in (0, -signal.SIGTERM), output
    assert results and set(results) == {200}, sorted(set(results))
    assert on_a[-1] == "data: [DONE]", on_a  # the in-flight stream finished whole
    # Readiness turned 503 first; the replica stopped accepting a second later.
    assert "a" in balancer.first_unready and "a" in balancer.first_refused
    assert balancer.first_refused["a"] > balancer.first_unready["a"]
    assert exited_after < 20, exited_after

    # B's grace period is 1 s: a stream still paused past it is cut, and still metered.
    on_b: list[str] = []
    streaming = threading.Thread(target=stream, args=(b, on_b))
    streaming.start()
    time.sleep(0.5)
    b.process.send_signal(signal.SIGTERM)
    output, _ = b.process.communicate(timeout=60)
    streaming.join(timeout=60)
    assert b.process.returncode in (0, -signal.SIGTERM), output
    assert on_b and on_b[-1] != "data: [DONE]", on_b

    sent = len(results) + 2  # the load and the two streams, on either replica
    assert asyncio.run(_usage_of(cluster.database_url, application_id)) == sent
