"""Errors of the records service. All render as OperationOutcome under /fhir."""

from __future__ import annotations

from prometheus_client import Counter

from carevault_common.errors import ProblemError

INTEGRITY_FAILURES = Counter(
    "carevault_integrity_failures_total",
    "Stored ciphertexts that failed authentication (tampering or corruption).",
    ["resource_type"],
)


class PatientKeyRequired(ProblemError):
    status, code, title = 401, "patient-key-required", "This request needs the patient's key (X-Patient-Key)"


class InvalidPatientKey(ProblemError):
    status, code, title = 400, "invalid-patient-key", "X-Patient-Key must be 32 bytes in base64url without padding"


class WrongPatientKey(ProblemError):
    # One answer for every key that does not match, whatever the reason.
    status, code, title = 403, "wrong-patient-key", "The patient key does not open this patient's data"


class IntegrityFailure(ProblemError):
    """A stored blob failed authentication: nothing of it is returned."""

    status, code, title = 500, "integrity-failure", "Stored data failed its integrity check"


class ResourceGone(ProblemError):
    status, code, title = 410, "gone", "This resource was deleted"


class PatientErased(ProblemError):
    status, code, title = 410, "patient-erased", "This patient's data was erased"


class VersionConflict(ProblemError):
    status, code, title = 412, "version-conflict", "The resource changed since the version given in If-Match"


class UnknownPatient(ProblemError):
    status, code, title = 422, "unknown-patient", "The patient this resource belongs to does not exist in this tenant"


class PatientOutOfScope(ProblemError):
    """api authorized this request for other patients than the one it touches."""

    status, code, title = 403, "patient-out-of-scope", "Not authorized for this patient"
