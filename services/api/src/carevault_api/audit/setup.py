"""Building the audit trail from the settings (api's lifespan)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.audit.service import AuditTrail
from carevault_api.config import Settings
from carevault_crypto.checkpoint import CheckpointSigner
from carevault_crypto.pseudonym import PseudonymKey

logger = logging.getLogger("carevault.api.audit")


def build_audit_trail(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> AuditTrail:
    if settings.audit_pseudonym_key_file is not None:
        pseudonyms = PseudonymKey.from_text(settings.audit_pseudonym_key_file.read_text(encoding="utf-8"))
    else:  # dev only (the settings refuse this elsewhere)
        logger.warning("no audit pseudonym key configured: an ephemeral one is used; pseudonyms change on restart (dev only)")
        pseudonyms = PseudonymKey.generate()
    signer = None
    if settings.audit_checkpoint_key_file is not None:
        signer = CheckpointSigner.from_text(settings.audit_checkpoint_key_file.read_text(encoding="utf-8"))
    else:
        logger.warning("no audit checkpoint key configured: the chain head is not signed (dev only)")
    return AuditTrail(
        sessions,
        pseudonyms,
        signer,
        retention=timedelta(days=settings.audit_retention_days),
        lock_timeout_ms=settings.audit_lock_timeout_ms,
    )


async def final_checkpoint(trail: AuditTrail) -> None:
    """Sign the head on the way out, so a stopped api leaves no unsigned tail."""
    try:
        await trail.checkpoint()
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("final audit checkpoint failed", extra={"error_type": type(exc).__name__})
