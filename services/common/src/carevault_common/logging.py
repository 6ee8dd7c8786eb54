"""Structured JSON logs with the request id and trace id of the current request.

Log records carry ids, codes and numbers, never personal data; as a second line
of defence every message and extra field goes through :func:`redact`, which
masks what looks like a key, a token, an e-mail address or a phone number.
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

_REDACTIONS = [
    (re.compile(r"(?i)\b(bearer|dpop)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # 32-byte keys as base64url (43 chars) or hex (64 chars); JWTs and other long tokens.
    (re.compile(r"\b[A-Za-z0-9_-]{43}\b"), "[redacted-key]"),
    # A file key in transport form (base64url of 0x01 | 32 bytes: 44 characters).
    (re.compile(r"\bAQ[A-Za-z0-9_-]{42}\b"), "[redacted-key]"),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), "[redacted-key]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-token]"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[redacted-email]"),
    # Phone numbers, international or local; dotted quads (addresses) are not phones.
    (re.compile(r"(?<![\w.:])(?!\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))\+?\d[\d ().-]{7,}\d(?![\w])"), "[redacted-phone]"),
]

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


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
                entry[key] = redact(value) if isinstance(value, str) else value
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
