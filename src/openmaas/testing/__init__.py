"""Fakes that ship with OpenMaaS, for tests and benchmarks: real servers on loopback."""

from openmaas.testing.fake_openai import FakeOpenAI
from openmaas.testing.loopback import LoopbackServer

__all__ = ["FakeOpenAI", "LoopbackServer"]
