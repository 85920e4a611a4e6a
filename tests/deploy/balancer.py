"""A load balancer for the multi-replica tests: follows readiness, sends to ready replicas."""

from __future__ import annotations

import threading
import time
from typing import Generic, Protocol, TypeVar

import httpx


class Backend(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...


B = TypeVar("B", bound=Backend)


class Balancer(Generic[B]):
    """What a load balancer does: polls readiness, sends to the replicas that are ready."""

    def __init__(self, replicas: list[B]) -> None:
        self.replicas = replicas
        self.ready = {r.name: True for r in replicas}
        self.first_unready: dict[str, float] = {}
        self.first_refused: dict[str, float] = {}
        self.watching = False  # set when the stop begins
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                for replica in self.replicas:
                    refused = False
                    try:
                        ok = client.get(f"{replica.url}/readyz").status_code == 200
                    except httpx.TransportError as error:
                        ok = False
                        refused = isinstance(error, httpx.ConnectError)
                    now = time.monotonic()
                    if not ok and self.watching:
                        self.first_unready.setdefault(replica.name, now)
                    if refused and self.watching:
                        self.first_refused.setdefault(replica.name, now)
                    self.ready[replica.name] = ok
                time.sleep(0.1)

    def pick(self, turn: int) -> B:
        deadline = time.monotonic() + 10
        while not (ready := [r for r in self.replicas if self.ready[r.name]]):
            # A probe slowed down by a busy machine: wait for the next round.
            assert time.monotonic() < deadline, "no replica is ready"
            time.sleep(0.05)
        return ready[turn % len(ready)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
