"""Bulk re-escrow to a new hosting-doctor key, as a platform admin with a second
factor runs it (docs/operations.md, "Rotate"): export the packages sealed to an old
doctor key (for the doctor's offline tool), upload what the tool rewrapped, read the
coverage counts per doctor key. keyservice takes these calls from api only.

Every export and upload is an audit event in the admin's tenant, with counts and
doctor key ids only (never a package): ``admin.escrow.export`` before the first line
leaves, ``admin.escrow.upload.attempt`` before keyservice is asked, then
``admin.escrow.upload`` with what it stored; a refusal is ``admin.escrow.refused``.
If an event cannot be stored, nothing is exported or sent (fail closed).

An upload is checked whole before anything is sent, then sent in one call, which
keyservice stores in one transaction: a bad line stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from carevault_api import audit
from carevault_api.auth.principal import Principal
from carevault_api.authorization.matrix import Permission
from carevault_api.authorization.service import check
from carevault_api.clients.keyservice import KeyserviceClient
from carevault_common.errors import PayloadTooLarge, ProblemError

#: keyservice takes at most this many packages per upload (one transaction).
MAX_PACKAGES = 10_000
EXPORT_PAGE = 1000
DOCTOR_KEY_ID = r"^[0-9a-f]{32}$"
UPLOAD_TIMEOUT_SECONDS = 300.0


class InvalidEscrowUpload(ProblemError):
    status, code, title = 422, "invalid-escrow-upload", "An uploaded escrow line is not valid"


class UploadLine(BaseModel):
    """One line of ``carevault-doctor re-escrow``'s output (its constraints are keyservice's)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tenant: Annotated[str, Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
    patient_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
    key_version: Annotated[int, Field(ge=1)]
    doctor_key_id: Annotated[str, Field(pattern=DOCTOR_KEY_ID)]
    package: Annotated[str, Field(min_length=1, max_length=8192, pattern=r"^[A-Za-z0-9+/]+={0,2}$")]


@dataclass(frozen=True, slots=True)
class Export:
    """An export about to be streamed: its size when it started, and its lines."""

    packages: int
    lines: AsyncIterator[bytes]


class EscrowAdmin:
    def __init__(self, keys: KeyserviceClient, upload_max_bytes: int) -> None:
        self.keys, self.upload_max_bytes = keys, upload_max_bytes

    @staticmethod
    async def _record(
        request: Request, principal: Principal, event: str, outcome: int | None, **details: str | int | bool | list[str]
    ) -> None:
        await audit.record(request, event, outcome=outcome, principal=principal, details=details)

    @asynccontextmanager
    async def _refusals(self, request: Request, principal: Principal, step: str) -> AsyncIterator[None]:
        """Any refusal of the step is recorded (``admin.escrow.refused``), then raised."""
        try:
            yield
        except audit.AuditUnavailable:
            raise
        except ProblemError as refused:
            await self._record(request, principal, "admin.escrow.refused", refused.status, step=step, problem=refused.code)
            raise

    async def coverage(self, principal: Principal) -> dict[str, Any]:
        check(principal, Permission.ESCROW_MANAGE)
        return await self.keys.escrow_coverage()

    async def export(self, request: Request, principal: Principal, doctor_key_id: str) -> Export:
        async with self._refusals(request, principal, "export"):
            check(principal, Permission.ESCROW_MANAGE)
            covered = await self.keys.escrow_coverage()
            packages = next((k["packages"] for k in covered["doctor_keys"] if k["doctor_key_id"] == doctor_key_id), 0)
            first, next_after = await self.keys.export_page(doctor_key_id, 0, EXPORT_PAGE)
        await self._record(request, principal, "admin.escrow.export", 200, doctor_key_id=doctor_key_id, packages=int(packages))
        return Export(int(packages), self._lines(doctor_key_id, first, next_after))

    async def _lines(self, doctor_key_id: str, page: list[dict[str, Any]], next_after: int | None) -> AsyncIterator[bytes]:
        """JSON lines, as the doctor tool reads them, page after page. A failure after
        the first page cuts the stream (the client sees an incomplete response)."""
        while True:
            yield b"".join(orjson.dumps(package) + b"\n" for package in page)
            if next_after is None or not page:
                return
            page, next_after = await self.keys.export_page(doctor_key_id, next_after, EXPORT_PAGE)

    async def upload(
        self, request: Request, principal: Principal, body: AsyncIterable[bytes], declared_length: int | None
    ) -> dict[str, int]:
        async with self._refusals(request, principal, "upload"):
            check(principal, Permission.ESCROW_MANAGE)
            packages = self._parse(await self._read(body, declared_length))
            doctor_keys = sorted({p["doctor_key_id"] for p in packages})
            await self._record(request, principal, "admin.escrow.upload.attempt", None, packages=len(packages), doctor_keys=doctor_keys)
            result = await self.keys.upload_packages(packages, UPLOAD_TIMEOUT_SECONDS)
        await self._record(request, principal, "admin.escrow.upload", 200, packages=len(packages), doctor_keys=doctor_keys, **result)
        return result

    async def _read(self, body: AsyncIterable[bytes], declared_length: int | None) -> bytes:
        limit = self.upload_max_bytes
        too_large = PayloadTooLarge(f"An escrow upload is limited to {limit} bytes; split the file (each part is one upload).")
        if declared_length is not None and declared_length > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(content: bytes) -> list[dict[str, Any]]:
        """Every non-blank line, checked; the first bad one refuses the whole upload.
        Problems name the line and the field, never its content."""
        packages: list[dict[str, Any]] = []
        for number, line in enumerate(content.split(b"\n"), start=1):
            if not line.strip():
                continue
            if len(packages) == MAX_PACKAGES:
                raise PayloadTooLarge(f"An escrow upload holds at most {MAX_PACKAGES} packages; split the file.")
            try:
                item = UploadLine.model_validate(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise InvalidEscrowUpload(f"Line {number} is not a JSON object.") from None
            except ValidationError as exc:
                fields = sorted({".".join(str(part) for part in error["loc"]) or "line" for error in exc.errors()})
                raise InvalidEscrowUpload(f"Line {number}: invalid or missing {', '.join(fields)}.") from None
            packages.append(item.model_dump())
        if not packages:
            raise InvalidEscrowUpload("The upload holds no package.")
        return packages
