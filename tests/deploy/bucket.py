"""An S3-compatible bucket on loopback (moto's server) behind a TCP proxy a test can cut."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.proxy import TcpProxy
from tests.servers import free_port

BUCKET = "openmaas-artifacts"
PREFIX = "replicas"


@dataclass
class Bucket:
    proxy: TcpProxy  # between the replicas and the S3 server
    endpoint: str  # the proxy's URL
    direct: str  # the S3 server's own URL, for the test's checks

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.direct,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def keys(self, under: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{under}")
        return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture(scope="module")
def bucket() -> Iterator[Bucket]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with TcpProxy(host, port) as proxy:
            found = Bucket(proxy, f"http://127.0.0.1:{proxy.port}", f"http://{host}:{port}")
            found.client().create_bucket(Bucket=BUCKET)
            yield found
    finally:
        server.stop()
