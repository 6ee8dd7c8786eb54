"""The records side of Binary content (api orchestrates, fileservice stores):

* ``prepare``: after the patient key is checked, a fresh file key and blob id,
  the file key wrapped under the patient keyring. Only the blob id is kept, as a
  pending upload (binaries/pending.py), until the Binary commits: api streams
  the content to fileservice, then writes the Binary (with the wrapped key) through
  the ordinary FHIR create/update, which checks the wrapped key again.
* ``open``: after the patient key is checked, the Binary's blob id, unwrapped file
  key, content type and size, for api to fetch and decrypt the content.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from carevault_common.errors import NotFound, ProblemError
from carevault_crypto import FileKey
from carevault_crypto.export import file_key_to_transport
from carevault_records.binaries import pending
from carevault_records.binaries.content import BinaryContent, InvalidBinaryContent, key_binding, read_content, unwrap_file_key
from carevault_records.erasure.service import refuse_if_erased
from carevault_records.errors import INTEGRITY_FAILURES, IntegrityFailure, ResourceGone
from carevault_records.keys.service import RequestKeyrings
from carevault_records.resources import codec, repository
from carevault_records.resources.service import ResourceService

logger = logging.getLogger("carevault.records.binaries")


@dataclass(frozen=True, slots=True)
class PreparedContent:
    blob_id: str
    file_key: str  # transport form: a secret, for fileservice only
    content: BinaryContent

    def to_json(self) -> dict[str, Any]:
        from carevault_records.binaries.content import content_extension

        return {"blobId": self.blob_id, "fileKey": self.file_key, "contentExtension": content_extension(self.content)}


def new_blob_id() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 random bits


class BinaryFiles:
    def __init__(self, resources: ResourceService) -> None:
        self.resources = resources

    async def prepare(self, keyrings: RequestKeyrings, patient_id: str, binary_id: str | None) -> PreparedContent:
        if binary_id is not None:
            head = await repository.get_head(keyrings.session, keyrings.tenant, "Binary", binary_id)
            if head is None:
                await refuse_if_erased(keyrings.session, keyrings.tenant, "Binary", binary_id)
                raise NotFound(f"Binary/{binary_id} does not exist; create it with POST (ids are assigned by the server).")
            if head.patient_id != patient_id:
                raise ProblemError("A resource cannot move to another patient.", status=422, code="patient-change")
        keyring = await keyrings.unlock(patient_id)
        blob_id = new_blob_id()
        file_key = FileKey.generate()
        wrapped = keyring.wrap_file_key(file_key, key_binding(blob_id))
        await pending.open_upload(keyrings.session, blob_id)
        return PreparedContent(blob_id, file_key_to_transport(file_key), BinaryContent(blob_id, 0, wrapped))

    async def open(self, keyrings: RequestKeyrings, binary_id: str, version_id: int | None) -> dict[str, Any]:
        session, tenant = keyrings.session, keyrings.tenant
        head = await repository.get_head(session, tenant, "Binary", binary_id)
        if head is None:
            await refuse_if_erased(session, tenant, "Binary", binary_id)
            raise NotFound(f"Binary/{binary_id} does not exist.")
        if version_id is None and head.deleted:
            raise ResourceGone(f"Binary/{binary_id} was deleted.")
        keyring = await self.resources.keyring_for(keyrings, "Binary", head.patient_id)
        assert keyring is not None
        stored = await repository.get_version(session, tenant, "Binary", binary_id, version_id or head.version_id)
        if stored is None:
            raise NotFound(f"Binary/{binary_id} has no version {version_id}.")
        if stored.deleted:
            raise ResourceGone(f"Version {stored.version_id} of Binary/{binary_id} is a deletion.")
        resource = codec.decode_version(tenant, stored, keyring, internal=True)
        content = read_content(resource)
        try:
            if content is None:
                raise InvalidBinaryContent
            file_key = unwrap_file_key(keyring, content)
        except InvalidBinaryContent:
            INTEGRITY_FAILURES.labels("Binary").inc()
            logger.error("integrity failure", extra={"event": "integrity-failure", "resource_type": "Binary", "resource_id": binary_id})
            raise IntegrityFailure(f"Binary/{binary_id} failed its integrity check.") from None
        return {
            "blobId": content.blob_id,
            "fileKey": file_key_to_transport(file_key),
            "size": content.size,
            "contentType": resource.get("contentType", "application/octet-stream"),
            "versionId": stored.version_id,
            "lastUpdated": resource["meta"]["lastUpdated"],
            "resource": codec.public(resource),
        }
