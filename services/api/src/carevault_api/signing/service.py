"""api's access-token signing keys: generated at first start, kept in api's
database sealed under ``API_SECRETS_KEY_FILE`` (:mod:`carevault_api.secrets`),
rotated without downtime.

JWKS always publishes the ``current`` key (signing), the ``next`` key (signing
after the next rotation, so every verifier already knows it when it starts
being used) and ``retired`` keys until the tokens they signed have expired.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, import_key
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.models_identity import SigningKey
from carevault_api.secrets import SIGNING_KEY, Secrets
from carevault_api.signing import repository
from carevault_common.db import session_scope
from carevault_common.jose import ACCESS_TOKEN_ALGORITHMS, ACCESS_TOKEN_TYPE

logger = logging.getLogger("carevault.api.signing")
RELOAD_SECONDS = 60.0


def _generate(alg: str, now: datetime, status: str, secrets: Secrets) -> SigningKey:
    if alg not in ACCESS_TOKEN_ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {alg}")
    kid = uuid.uuid4().hex
    key = (
        ECKey.generate_key("P-256", parameters={"kid": kid}) if alg == "ES256" else OKPKey.generate_key("Ed25519", parameters={"kid": kid})
    )
    return SigningKey(
        kid=kid,
        alg=alg,
        private_jwk=secrets.seal(orjson.dumps(key.as_dict(private=True)).decode(), purpose=SIGNING_KEY, owner=kid),
        status=status,
        created_at=now,
        activated_at=now if status == "current" else None,
        retired_at=None,
    )


class SigningKeys:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        algorithm: str,
        rotate_after: timedelta,
        token_ttl: int,
        secrets: Secrets,
    ) -> None:
        self.sessions, self.algorithm, self.rotate_after, self.token_ttl = sessions, algorithm, rotate_after, token_ttl
        self.secrets = secrets
        self._rows: list[SigningKey] = []
        self._public = KeySet([])
        self._signer: tuple[str, str, Any] | None = None
        self._published: list[dict[str, Any]] = []
        self._loaded_at = 0.0

    async def ensure(self) -> None:
        """Load the keys; on first start (or with no signing key left) create a current and a next key.
        Keys stored unsealed (or under the previous sealing key) are resealed."""
        async with session_scope(self.sessions) as session:
            rows = await repository.all_keys(session)
            now = datetime.now(UTC)
            if not any(r.status == "current" for r in rows):
                await repository.insert(session, _generate(self.algorithm, now, "current", self.secrets))
            if not any(r.status == "next" for r in rows):
                await repository.insert(session, _generate(self.algorithm, now, "next", self.secrets))
            for row in rows:
                if self.secrets.needs_resealing(row.private_jwk):
                    clear = self.secrets.open(row.private_jwk, purpose=SIGNING_KEY, owner=row.kid)
                    await repository.set_private_jwk(session, row.kid, self.secrets.seal(clear, purpose=SIGNING_KEY, owner=row.kid))
        await self.reload()

    async def reload(self) -> None:
        async with session_scope(self.sessions) as session:
            rows = await repository.all_keys(session)
            current = [r for r in rows if r.status == "current"]
            if current and datetime.now(UTC) - _aware(max(r.activated_at or r.created_at for r in current)) > self.rotate_after:
                await self._rotate(session, rows)
                rows = await repository.all_keys(session)
        self._install(rows)

    def _install(self, rows: list[SigningKey]) -> None:
        keys = [import_key(orjson.loads(self.secrets.open(r.private_jwk, purpose=SIGNING_KEY, owner=r.kid))) for r in rows]
        self._public = KeySet([import_key(k.as_dict(private=False)) for k in keys])
        self._published = [{**k.as_dict(private=False), "alg": r.alg, "use": "sig", "kid": r.kid} for r, k in zip(rows, keys, strict=True)]
        current = [(r, k) for r, k in zip(rows, keys, strict=True) if r.status == "current"]
        if current:
            row, key = max(current, key=lambda rk: _aware(rk[0].activated_at or rk[0].created_at))
            self._signer = (row.kid, row.alg, key)
        self._rows = rows
        self._loaded_at = time.monotonic()

    async def rotate(self) -> str:
        """Make the next key current and create a new next key; returns the new current kid."""
        async with session_scope(self.sessions) as session:
            await self._rotate(session, await repository.all_keys(session))
        await self.reload()
        assert self._signer is not None
        return self._signer[0]

    async def _rotate(self, session: AsyncSession, rows: list[SigningKey]) -> None:
        now = datetime.now(UTC)
        nxt = next((r for r in rows if r.status == "next"), None)
        current = next((r for r in rows if r.status == "current"), None)
        if nxt is None:
            return
        if await repository.promote_next(session, nxt.kid, current.kid if current else None, now):
            await repository.insert(session, _generate(self.algorithm, now, "next", self.secrets))
            logger.info("signing key rotated", extra={"event": "signing-key-rotated", "kid": nxt.kid})
        await repository.drop_retired_before(session, now - timedelta(seconds=self.token_ttl * 2 + 60))

    async def maybe_reload(self, force: bool = False) -> None:
        if force or time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            await self.reload()

    @property
    def public_keys(self) -> KeySet:
        return self._public

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self._published)}

    def sign(self, claims: dict[str, Any]) -> str:
        if self._signer is None:
            raise RuntimeError("no signing key loaded")
        kid, alg, key = self._signer
        return jwt.encode({"alg": alg, "kid": kid, "typ": ACCESS_TOKEN_TYPE}, claims, key, algorithms=[alg])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
