"""Content negotiation (FHIR R4 http.html#mime-type): what a client asks for with
``Accept`` or the ``_format`` parameter, which overrides it.

This server speaks FHIR JSON only (:func:`accepts_fhir_json`): a request that accepts
none of it (XML, Turtle, HTML alone) is refused with 406 before anything is done, not
answered in a format the client did not ask for. ``application/json``, the older
``application/json+fhir`` and wildcards are accepted; parameters such as
``fhirVersion=4.0`` are ignored.

Which representation of a Binary a read asks for: the raw content, or the FHIR
Binary resource (JSON with base64 ``data``).

* The raw content when ``Accept`` is absent, names the stored type (``type/subtype``
  or ``type/*``) or only ``*/*``.
* The resource when ``Accept`` names ``application/fhir+json`` (or the older
  ``application/json+fhir``) with a higher quality than the stored type, or with
  ``_format=json``. An explicit FHIR type wins over a wildcard; a tie between two
  explicit types goes to the stored type.
* Nothing acceptable: 406.
"""

from __future__ import annotations

import re
from enum import Enum

FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json+fhir"})
_FORMAT_JSON = frozenset({"json", "application/json", *FHIR_JSON_TYPES})
_ACCEPTS_JSON = frozenset({"application/json", "application/*", "*/*", *FHIR_JSON_TYPES})


class Representation(Enum):
    RAW = "raw"
    RESOURCE = "resource"


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    return ranges


# RFC 9110 §8.3.1: type "/" subtype *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] )
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*"'
_MEDIA_TYPE = re.compile(rf"{_TCHARS}/{_TCHARS}(?:[ \t]*;[ \t]*(?:{_TCHARS}=(?:{_TCHARS}|{_QUOTED}))?)*")
MAX_MEDIA_TYPE_LENGTH = 255


def is_media_type(value: str) -> bool:
    """Whether ``value`` is a well-formed media type, in ASCII (a Binary's: it is sent
    back as the Content-Type header of its downloads)."""
    return len(value) <= MAX_MEDIA_TYPE_LENGTH and value.isascii() and _MEDIA_TYPE.fullmatch(value) is not None


def base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def accepts_fhir_json(accept: str | None, format_param: str | None = None) -> bool:
    """Whether a FHIR JSON answer is acceptable to the client (else: 406)."""
    if format_param is not None:
        return base_type(format_param) in _FORMAT_JSON
    if accept is None or not accept.strip():
        return True
    return any(quality > 0 and media in _ACCEPTS_JSON for media, quality in _media_ranges(accept))


def choose(accept: str | None, content_type: str, format_param: str | None = None) -> Representation | None:
    if format_param is not None:
        return Representation.RESOURCE if base_type(format_param) in _FORMAT_JSON else None
    if not accept or not accept.strip():
        return Representation.RAW
    stored = base_type(content_type)
    major = stored.split("/", 1)[0]
    raw_exact = raw_wild = fhir = 0.0
    for media, quality in _media_ranges(accept):
        if media == stored or media == f"{major}/*":
            raw_exact = max(raw_exact, quality)
        elif media == "*/*":
            raw_wild = max(raw_wild, quality)
        if media in FHIR_JSON_TYPES and stored not in FHIR_JSON_TYPES:
            fhir = max(fhir, quality)
    if raw_exact > 0 and raw_exact >= fhir:
        return Representation.RAW
    if fhir > 0:
        return Representation.RESOURCE
    if raw_wild > 0:
        return Representation.RAW
    return None
