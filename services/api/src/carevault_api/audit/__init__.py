"""The audit trail of api (docs/audit.md).

For the other domains of api: ``from carevault_api import audit`` then
``await audit.record(request, "signin.failure", outcome=401, tenant=..., subject=...)``.
Event names are in :mod:`carevault_api.audit.events`; an event that cannot be
stored raises :class:`AuditUnavailable` (503): let it propagate.
"""

from carevault_api.audit.events import EVENTS
from carevault_api.audit.permissions import can_erase, can_read_audit
from carevault_api.audit.service import AuditTrail, AuditUnavailable, record

__all__ = ["EVENTS", "AuditTrail", "AuditUnavailable", "can_erase", "can_read_audit", "record"]
