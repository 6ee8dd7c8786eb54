"""``Idempotency-Key`` on POST: the same key and body within 24 hours get the
first answer and apply nothing twice; the same key with another body is refused.

The record is written in the same transaction as the write it protects, so a
crash leaves either both or neither.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import savepoint
from carevault_common.errors import Conflict, ProblemError
from carevault_records.idempotency import repository

WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 128
# From api, for a Binary create: the SHA-256 (hex) of its content and elements, which
# stands for the body (that names a new blob each time). On a replay, the answer
# carries REPLAY_HEADER so that api deletes the content it stored meanwhile.
CONTENT_DIGEST_HEADER = "x-carevault-content-digest"
REPLAY_HEADER = "x-carevault-idempotent-replay"
_DIGEST = re.compile(r"[0-9a-f]{64}")


class IdempotencyKeyReused(ProblemError):
    status, code, title = 422, "idempotency-key-reused", "This Idempotency-Key was used with another request"


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    response: dict[str, Any]


def request_hash(tenant: str, key: str, method: str, path: str, body: bytes) -> str:
    # Salted with tenant and key so that the stored hash cannot be matched
    # against a guessed body without knowing both.
    digest = hashlib.sha256()
    for part in (tenant.encode(), key.encode(), method.encode(), path.encode()):
        digest.update(len(part).to_bytes(4, "big") + part)
    digest.update(body)
    return digest.hexdigest()


def digest_body(digest: str) -> bytes:
    if not _DIGEST.fullmatch(digest):
        raise ProblemError("The content digest must be 64 hex digits.", code="invalid-content-digest")
    return b"content-digest:" + digest.encode("ascii")


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ProblemError("Idempotency-Key must be 1 to 128 printable ASCII characters.", code="invalid-idempotency-key")
    return key


async def find_replay(session: AsyncSession, tenant: str, key: str, fingerprint: str) -> Replay | None:
    record = await repository.get(session, tenant, key, datetime.now(UTC) - WINDOW)
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return Replay(record.status, orjson.loads(record.response))


async def known(session: AsyncSession, tenant: str, key: str) -> bool:
    """Whether the key was used within the window (whatever the request)."""
    return await repository.get(session, tenant, check_key(key), datetime.now(UTC) - WINDOW) is not None


async def remember(session: AsyncSession, tenant: str, key: str, fingerprint: str, status: int, response: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    try:
        async with savepoint(session):
            await repository.put(
                session,
                tenant=tenant,
                key=key,
                request_hash=fingerprint,
                status=status,
                response=orjson.dumps(response).decode(),
                now=now,
                expired_before=now - WINDOW,
            )
    except IntegrityError:
        raise Conflict("A request with this Idempotency-Key is in progress; retry shortly.") from None
