"""Usage metering, usage queries and billing."""

from openmaas.metering.billing import Billing
from openmaas.metering.invoices import Invoices
from openmaas.metering.recorder import UsageEvent, UsageRecorder
from openmaas.metering.usage import UsageQueries

__all__ = ["Billing", "Invoices", "UsageEvent", "UsageQueries", "UsageRecorder"]
