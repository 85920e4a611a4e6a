"""Accounts, applications, keys, plans, and the gate every inference request passes."""

from openmaas.access.accounts import AccountService
from openmaas.access.applications import ApplicationService
from openmaas.access.audit import AuditLog
from openmaas.access.credentials import credential_from_headers
from openmaas.access.gate import AccessGate, Admission, Attribution, Reservation
from openmaas.access.limiter import Demand, Limiter
from openmaas.access.oidc import OidcClient
from openmaas.access.plans import PlanService
from openmaas.access.service import AccessService
from openmaas.access.sessions import SessionCodec
from openmaas.access.snapshot import SnapshotStore

__all__ = [
    "AccessGate",
    "AccessService",
    "AccountService",
    "Admission",
    "ApplicationService",
    "Attribution",
    "AuditLog",
    "Demand",
    "Limiter",
    "OidcClient",
    "PlanService",
    "Reservation",
    "SessionCodec",
    "SnapshotStore",
    "credential_from_headers",
]
