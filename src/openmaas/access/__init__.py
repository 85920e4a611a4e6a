"""Accounts, keys and who may do what."""

from openmaas.access.credentials import credential_from_headers
from openmaas.access.service import AccessService

__all__ = ["AccessService", "credential_from_headers"]
