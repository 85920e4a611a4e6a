"""A Python client for the OpenMaaS management API."""

from openmaas.client.http import Client, ClientError

__all__ = ["Client", "ClientError"]
