"""``/blobs/{id}``: PUT (encrypt and store a stream), GET (decrypt, with Range),
DELETE. api only; every call carries the file's key in ``X-File-Key``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response, StreamingResponse

from carevault_common.app import json_response
from carevault_common.db import forget_deleted_pages
from carevault_common.errors import ProblemError
from carevault_common.mtls import require_callers
from carevault_fileservice.blobs.service import BlobContent
from carevault_fileservice.deps import BlobsDep, FileKeyDep, SessionDep

router = APIRouter(prefix="/blobs", dependencies=[Depends(require_callers("api"))])


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise ProblemError("Invalid Content-Length.", code="invalid-content-length")
    return int(value)


@router.put("/{blob_id}")
async def put_blob(blob_id: str, request: Request, session: SessionDep, file_key: FileKeyDep, blobs: BlobsDep) -> Response:
    stored = await blobs.put(session, blob_id, file_key, request.stream(), _declared_length(request))
    return json_response({"id": stored.blob_id, "size": stored.size, "storedSize": stored.stored_size}, status_code=201)


async def _body(content: BlobContent) -> AsyncIterator[bytes]:
    for chunk in content.prefetched:
        yield chunk
    async for chunk in content.body:
        yield chunk


@router.get("/{blob_id}")
async def get_blob(
    blob_id: str, session: SessionDep, file_key: FileKeyDep, blobs: BlobsDep, range: Annotated[str | None, Header()] = None
) -> Response:
    content = await blobs.open(session, blob_id, file_key, range)
    return StreamingResponse(_body(content), status_code=content.status, headers=content.headers, media_type="application/octet-stream")


@router.delete("/{blob_id}")
async def delete_blob(blob_id: str, request: Request, session: SessionDep, blobs: BlobsDep) -> Response:
    await blobs.delete(session, blob_id)
    # Erasure: no earlier page image of the row stays in SQLite's write-ahead log.
    await forget_deleted_pages(request.app.state.engine)
    return Response(status_code=204)
