"""Contexts that every key derivation and ciphertext is bound to.

:class:`PatientContext` (tenant, patient id) binds the key verifier, the KEK that
wraps the patient's master key, and the sub-keys derived from that master key.
:class:`RecordContext` (tenant, patient id, record id, version, resource type) is
the associated data of every record blob, so a ciphertext cannot be replayed under
another tenant, patient, record, version or resource type.

``encode()`` is the canonical, unambiguous encoding: a domain label followed by
every field length-prefixed (4-byte big-endian length, UTF-8 text; the version is
an 8-byte big-endian unsigned integer). It is part of the on-disk format: changing
it breaks every existing blob (the test vectors catch that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from carevault_crypto._encoding import encode_parts

__all__ = ["PatientContext", "RecordContext"]

_PATIENT_LABEL: Final = b"carevault/patient-context/v1"
_RECORD_LABEL: Final = b"carevault/record-context/v1"
_MAX_VERSION: Final = 2**64 - 1


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    value.encode("utf-8")  # rejects lone surrogates (UnicodeEncodeError is a ValueError)


@dataclass(frozen=True, slots=True)
class PatientContext:
    """Who a patient key / keyring belongs to."""

    tenant: str
    patient_id: str

    def __post_init__(self) -> None:
        _check_text("tenant", self.tenant)
        _check_text("patient_id", self.patient_id)

    def encode(self) -> bytes:
        """Canonical length-prefixed encoding (HKDF info / associated data)."""
        return encode_parts(_PATIENT_LABEL, self.tenant.encode("utf-8"), self.patient_id.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class RecordContext:
    """Everything a record ciphertext is bound to."""

    tenant: str
    patient_id: str
    record_id: str
    version: int
    resource_type: str

    def __post_init__(self) -> None:
        _check_text("tenant", self.tenant)
        _check_text("patient_id", self.patient_id)
        _check_text("record_id", self.record_id)
        _check_text("resource_type", self.resource_type)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or not 0 <= self.version <= _MAX_VERSION:
            raise ValueError("version must be an int in [0, 2**64)")

    @property
    def patient(self) -> PatientContext:
        """The patient part of this context."""
        return PatientContext(self.tenant, self.patient_id)

    def encode(self) -> bytes:
        """Canonical length-prefixed encoding (associated data)."""
        return encode_parts(
            _RECORD_LABEL,
            self.tenant.encode("utf-8"),
            self.patient_id.encode("utf-8"),
            self.record_id.encode("utf-8"),
            self.version.to_bytes(8, "big"),
            self.resource_type.encode("utf-8"),
        )
