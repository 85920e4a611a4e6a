"""A stop in the order load balancers need: readiness off first, then stop accepting.

On SIGTERM (what Kubernetes, systemd and ``docker stop`` send) readiness answers 503 at
once, while the process goes on serving for ``shutdown_delay_seconds``: a load balancer
that polls readiness stops sending new requests meanwhile. Only then does the server
(uvicorn) get the signal: it stops accepting, lets in-flight requests and streams finish
for up to ``shutdown_grace_seconds`` (its ``timeout_graceful_shutdown``), and runs the
application's shutdown, which flushes usage and keys' last-used times.

uvicorn handles SIGTERM with a Python signal handler installed before the application
starts; this wraps it, and hands the signal on unchanged when no delay is set. A second
SIGTERM during the delay is handed on at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from openmaas.health import Health

logger = logging.getLogger("openmaas")


def drain_on_sigterm(health: Health, delay_s: float) -> Callable[[], None]:
    """Install the SIGTERM handler; returns the function that removes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # an embedded server (tests, notebooks) gets no signals
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return lambda: None  # no server listens for SIGTERM: the default ends the process
    loop = asyncio.get_running_loop()
    pending: list[asyncio.TimerHandle] = []

    def hand_on(signum: int, frame: FrameType | None) -> None:
        previous(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if health.stopping or delay_s <= 0:
            health.stopping = True
            for timer in pending:
                timer.cancel()
            hand_on(signum, frame)
            return
        health.stopping = True
        logger.warning("stopping: readiness is off; serving %.1f s more, then draining", delay_s)
        pending.append(loop.call_later(delay_s, hand_on, signum, None))

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore
