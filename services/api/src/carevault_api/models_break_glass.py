"""The table of the break-glass domain (carevault_api.break_glass): where each
request's written document is, and the key that opens it.

keyservice holds the request itself (its workflow state and the document's
SHA-256); api holds the document, encrypted by fileservice under a file key of its
own, that key sealed under API_SECRETS_KEY_FILE (carevault_api.secrets). A copy of
api's database alone opens no document; fileservice's store alone neither.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from carevault_api.models import Base


class BreakGlassDocument(Base):
    __tablename__ = "break_glass_documents"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_id: Mapped[str] = mapped_column(String(64))
    sealed_file_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
