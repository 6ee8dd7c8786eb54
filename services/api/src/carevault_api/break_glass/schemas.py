"""Bodies of the break-glass endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]


class Attachment(BaseModel):
    """The written request document, as a FHIR Attachment carries a file: its media
    type and its bytes in base64 (the size limit is API_BREAK_GLASS_DOCUMENT_MAX_BYTES).
    A PDF or a scan: the document is served back with this type, so nothing a
    browser would run (HTML, SVG) is accepted."""

    model_config = ConfigDict(extra="forbid")

    contentType: Literal["application/pdf", "image/jpeg", "image/png", "image/tiff"]
    data: Annotated[str, Field(min_length=4, repr=False)]


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: Identifier
    patient_id: Identifier
    reason: Annotated[str, Field(min_length=10, max_length=2000, repr=False)]
    document: Attachment


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
