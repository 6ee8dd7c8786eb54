"""Structured JSON logs with the request id and trace id of the current request,
and THE redaction filter of the platform.

Log records carry ids, codes and numbers, never personal data. As a second line of
defence, everything that leaves a process as telemetry goes through the one filter
defined here: log messages and extra fields (:class:`JsonFormatter`), span names and
attributes (:mod:`carevault_common.telemetry`'s exporter wrapper) and error reports
(its Sentry ``before_send``).

* :func:`redact` masks, in text, what looks like a bearer/DPoP/Basic token or a JWT,
  a 32-byte key (patient keys, base64url, base64 or hex), a credential in a query
  string, an e-mail address, a phone number (international or local formats), a
  postal address (a street line, a postcode with its town), an identifier (IBAN,
  long digit runs such as social-security numbers).
* :func:`redact_value` applies :func:`redact` to every string of a structure, and
  masks whatever sits under a key that names personal content (``name``,
  ``family``, ``telecom``, ``address``, ``text``, ``note``...): names and free text
  have no pattern, so they are recognised by where they are, not by what they are.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

request_id_var: ContextVar[str] = ContextVar("carevault_request_id", default="")
trace_id_var: ContextVar[str] = ContextVar("carevault_trace_id", default="")

_STREET_TYPES = (
    r"rue|avenue|av|boulevard|bd|blvd|chemin|all[ée]e|impasse|place|pl|quai|route|rte|cours|square|sq|"
    r"street|st|road|rd|lane|ln|drive|dr|way|court|ct|terrace|crescent|close|strasse|stra[ßs]e|weg|platz|calle|via|piazza"
)
_REDACTIONS = [
    (re.compile(r"(?i)\b(bearer|dpop|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)\b(access_token|refresh_token|id_token|client_secret|client_assertion|password|code)=[^&\s\"']+"), r"\1=[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-token]"),
    # 32-byte keys: base64url (43 chars, the X-Patient-Key form), base64 (43/44), hex (64).
    (re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_+/=-])"), "[redacted-key]"),
    (re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9+/]{43}=?(?![A-Za-z0-9_+/=-])"), "[redacted-key]"),
    # A file key in transport form (base64url of 0x01 | 32 bytes: 44 characters).
    (re.compile(r"(?<![A-Za-z0-9_+/-])AQ[A-Za-z0-9_-]{42}(?![A-Za-z0-9_+/=-])"), "[redacted-key]"),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), "[redacted-key]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[redacted-email]"),
    # IBAN (an identifier of a person's account).
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), "[redacted-id]"),
    # Postal addresses: a street line ("12 bis, rue de la Paix", "221B Baker Street"),
    # then a postcode with its town ("75002 Paris", "SW1A 1AA London").
    (
        re.compile(rf"(?i)\b\d{{1,5}}\s?[a-z]?(?:\s?(?:bis|ter))?,?\s+(?:{_STREET_TYPES})\b\.?(?:[ \t]+[^\s,;\"'{{}}\[\]]+){{0,6}}"),
        "[redacted-address]",
    ),
    (
        re.compile(
            r"\b(?:[A-Z][\w'-]*[ \t]+){1,4}(?:Street|St|Road|Rd|Lane|Avenue|Ave|Drive|Way|Court|Boulevard|Terrace|Crescent|Place|Square)\b"
        ),
        "[redacted-address]",
    ),
    (
        re.compile(
            r"(?i)\b(?:rue|avenue|boulevard|all[ée]e|impasse|chemin|quai|place|cours)\s+(?:de\s+la\s+|de\s+l'|du\s+|des\s+|de\s+|d')?[A-ZÀ-Ý][\w'À-ÿ-]*(?:[ \t]+[A-ZÀ-Ý][\w'À-ÿ-]*){0,3}"
        ),
        "[redacted-address]",
    ),
    (re.compile(r"\b\d{5}[ \t]+[A-ZÀ-Ý][\w'À-ÿ-]+(?:[ \t-][A-ZÀ-Ý][\w'À-ÿ-]+)*"), "[redacted-address]"),
    (re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b"), "[redacted-address]"),
    # Phone numbers (international or local) and long digit runs (social-security and
    # other identifiers); dotted quads (network addresses) are not phones.
    (re.compile(r"(?<![\w.:])(?!\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))\+?\(?\d[\d ().-]{7,}\d(?![\w])"), "[redacted-phone]"),
    (re.compile(r"\b\d{3}[ .-]\d{4}\b"), "[redacted-phone]"),
]

# Keys whose values are personal content whatever they look like (FHIR element names
# of people, contact points, addresses and free text, and their usual spellings).
_SENSITIVE_KEY = re.compile(
    r"(?i)^(?:.*[._-])?(?:name|names|family|given|prefix|suffix|telecom|phone|email|e-mail|address|line|city|district|postalcode|"
    r"postal_code|zip|birthdate|birth_date|dob|identifier|ssn|nir|text|div|note|notes|comment|description|display|narrative|"
    r"valuestring|value_string|authorization|cookie|x-patient-key|patient_key|password|secret|token)$"
)
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class Verbatim(str):
    """A string the code built from public, non-personal material (a signature, a key
    id, a timestamp) that must reach the log byte for byte: the filter would mangle
    random-looking text that happens to look like a postcode or a phone number."""

    __slots__ = ()


def redact_value(value: Any, key: str = "") -> Any:
    """:func:`redact` over a structure: strings are redacted, values under a key
    naming personal content are masked whole; numbers, booleans and None pass,
    and so does a :class:`Verbatim` string."""
    if isinstance(value, Verbatim):
        return str(value)
    if key and _SENSITIVE_KEY.match(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, key) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if rid := request_id_var.get():
            entry["request_id"] = rid
        if tid := trace_id_var.get():
            entry["trace_id"] = tid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = redact_value(value, key)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages and tracebacks can carry request content.
            entry["error_type"] = record.exc_info[0].__name__
            entry["stack"] = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(record.exc_info[2])]
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO", log_file: Path | None = None) -> None:
    handlers: list[logging.Handler]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_file, encoding="utf-8")]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    formatter = JsonFormatter(service)
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Uvicorn's access log prints raw paths and query strings (ids, search values);
    # our own middleware logs the route template instead.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
