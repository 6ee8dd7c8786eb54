"""Where a Binary's content is, and the key that opens it: a carevault extension
in ``Binary.meta``, stored inside the sealed record body only.

A stored Binary version carries, in ``meta.extension``::

    {"url": CONTENT_EXTENSION, "extension": [
        {"url": "blob", "valueString": <opaque blob id in fileservice>},
        {"url": "size", "valueString": <plaintext size in bytes>},
        {"url": "key",  "valueBase64Binary": <the file key wrapped under the patient keyring>}]}

The file key is wrapped with ``PatientKeyring.wrap_file_key`` bound to the blob
id, so a wrapped key opens only under this patient's key and only for this blob.
The extension never leaves records through the FHIR routes (:func:`strip_content`);
records checks it on every write (:func:`check_content`), so a forged or copied
one is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from carevault_common.errors import ProblemError
from carevault_crypto import DecryptionError, FileKey, PatientKeyring

CONTENT_EXTENSION: Final = "https://carevault.dev/fhir/StructureDefinition/binary-content"
_BLOB_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")


class InvalidBinaryContent(ProblemError):
    status, code, title = 422, "invalid-binary-content", "Binary content is stored through the Binary endpoint only"


@dataclass(frozen=True, slots=True)
class BinaryContent:
    blob_id: str
    size: int
    wrapped_key: bytes


def key_binding(blob_id: str) -> bytes:
    """The associated data of a wrapped file key: the blob it opens."""
    return b"carevault/binary-blob/v1:" + blob_id.encode("ascii")


def content_extension(content: BinaryContent) -> dict[str, Any]:
    return {
        "url": CONTENT_EXTENSION,
        "extension": [
            {"url": "blob", "valueString": content.blob_id},
            {"url": "size", "valueString": str(content.size)},
            {"url": "key", "valueBase64Binary": base64.b64encode(content.wrapped_key).decode("ascii")},
        ],
    }


def _content_extensions(resource: dict[str, Any]) -> list[Any]:
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("extension"), list):
        return []
    return [e for e in meta["extension"] if isinstance(e, dict) and e.get("url") == CONTENT_EXTENSION]


def read_content(resource: dict[str, Any]) -> BinaryContent | None:
    """The content reference of a Binary, None if it has none or a malformed one."""
    found = _content_extensions(resource)
    if len(found) != 1:
        return None
    values: dict[str, Any] = {}
    for part in found[0].get("extension", []):
        if isinstance(part, dict):
            values[str(part.get("url"))] = part.get("valueString", part.get("valueBase64Binary"))
    blob_id, size, key = values.get("blob"), values.get("size"), values.get("key")
    if (
        not isinstance(blob_id, str)
        or not _BLOB_ID.fullmatch(blob_id)
        or not isinstance(size, str)
        or not (size.isascii() and size.isdigit())
    ):
        return None
    if not isinstance(key, str):
        return None
    try:
        wrapped = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    return BinaryContent(blob_id, int(size), wrapped)


def strip_content(resource: dict[str, Any]) -> dict[str, Any]:
    """The Binary as clients see it: without the content extension."""
    if not _content_extensions(resource):
        return resource
    meta = {**resource["meta"], "extension": [e for e in resource["meta"]["extension"] if e not in _content_extensions(resource)]}
    if not meta["extension"]:
        del meta["extension"]
    if meta:
        return {**resource, "meta": meta}
    return {k: v for k, v in resource.items() if k != "meta"}


def check_content(keyring: PatientKeyring, resource: dict[str, Any]) -> BinaryContent:
    """Refuse a Binary whose content is inline or whose content reference does not
    open under this patient's keyring (forged, copied from another patient)."""
    if "data" in resource:
        raise InvalidBinaryContent("Binary.data is not stored in records; the api stores it in fileservice.")
    content = read_content(resource)
    if content is None:
        raise InvalidBinaryContent("A Binary must carry its content reference, set by the api.")
    unwrap_file_key(keyring, content)
    return content


def unwrap_file_key(keyring: PatientKeyring, content: BinaryContent) -> FileKey:
    try:
        return keyring.unwrap_file_key(content.wrapped_key, key_binding(content.blob_id))
    except DecryptionError:
        raise InvalidBinaryContent("The Binary content reference does not belong to this patient.") from None
