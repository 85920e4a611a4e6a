"""Deployments at run time and the inference path shared by every protocol."""

from openmaas.serving.service import ServingService

__all__ = ["ServingService"]
