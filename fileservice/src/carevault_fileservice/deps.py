"""Dependencies of the fileservice routes (Annotated aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import session_scope
from carevault_crypto import FileKey, InvalidKeyFormat
from carevault_fileservice.blobs.service import BlobService
from carevault_fileservice.errors import FileKeyRequired, InvalidFileKey


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with session_scope(request.app.state.sessions) as session:
        yield session


async def get_file_key(x_file_key: Annotated[str | None, Header()] = None) -> FileKey:
    """The key of this one file, sent by api per request; held in memory only."""
    if not x_file_key:
        raise FileKeyRequired()
    try:
        return FileKey.from_transport(x_file_key)
    except InvalidKeyFormat:
        raise InvalidFileKey() from None


async def get_blobs(request: Request) -> BlobService:
    service: BlobService = request.app.state.blobs
    return service


# scope="function": the transaction ends before a streamed response starts.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
FileKeyDep = Annotated[FileKey, Depends(get_file_key)]
BlobsDep = Annotated[BlobService, Depends(get_blobs)]
