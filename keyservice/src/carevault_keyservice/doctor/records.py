"""Escrow records as JSON lines: what keyservice exports and the re-escrow uploads.

One JSON object per line::

    {"tenant": "clinic-a", "patient_id": "p-1", "key_version": 3,
     "doctor_key_id": "9f0c...", "package": "<standard base64 of the package>"}

``doctor_key_id`` is written by this tool and optional on input (the package names
its key anyway). Unknown fields are ignored on input, for forward compatibility.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from carevault_crypto.escrow import EscrowContext


class RecordError(ValueError):
    """A line that is not a valid escrow record; the message names the field."""


@dataclass(frozen=True, slots=True)
class EscrowRecord:
    context: EscrowContext
    package: bytes


def parse_record(line: str) -> EscrowRecord:
    try:
        document = json.loads(line)
    except ValueError:
        raise RecordError("not a JSON object") from None
    if not isinstance(document, dict):
        raise RecordError("not a JSON object")
    tenant, patient_id = document.get("tenant"), document.get("patient_id")
    key_version, package = document.get("key_version"), document.get("package")
    if not isinstance(tenant, str) or not isinstance(patient_id, str):
        raise RecordError("tenant and patient_id must be strings")
    if not isinstance(key_version, int) or isinstance(key_version, bool):
        raise RecordError("key_version must be an integer")
    if not isinstance(package, str):
        raise RecordError("package must be a base64 string")
    try:
        context = EscrowContext(tenant, patient_id, key_version)
        raw = base64.b64decode(package.encode("ascii"), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise RecordError(str(exc) or "invalid field") from None
    return EscrowRecord(context, raw)


def render_record(context: EscrowContext, doctor_key_id: str, package: bytes) -> str:
    document = {
        "tenant": context.tenant,
        "patient_id": context.patient_id,
        "key_version": context.key_version,
        "doctor_key_id": doctor_key_id,
        "package": base64.b64encode(package).decode("ascii"),
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def decode_package_text(text: str) -> bytes:
    """A package pasted as base64 text, standard or URL-safe, padding optional."""
    compact = "".join(text.split())
    if not compact:
        raise RecordError("empty package")
    standard = compact.replace("-", "+").replace("_", "/")
    standard += "=" * (-len(standard) % 4)
    try:
        return base64.b64decode(standard.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise RecordError("not base64") from None
