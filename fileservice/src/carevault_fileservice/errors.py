"""Errors of fileservice (problem details; api turns them into OperationOutcomes)."""

from __future__ import annotations

from prometheus_client import Counter

from carevault_common.errors import ProblemError

INTEGRITY_FAILURES = Counter(
    "carevault_blob_integrity_failures_total",
    "Stored blobs that failed authentication (tampering, corruption, truncation, or a key that does not open them).",
    ["when"],
)


class FileKeyRequired(ProblemError):
    status, code, title = 400, "file-key-required", "X-File-Key is required"


class InvalidFileKey(ProblemError):
    status, code, title = 400, "invalid-file-key", "X-File-Key is not a valid file key"


class InvalidBlobId(ProblemError):
    status, code, title = 400, "invalid-blob-id", "Blob ids are 16 to 64 characters of [A-Za-z0-9_-]"


class BlobExists(ProblemError):
    status, code, title = 409, "blob-exists", "A blob with this id exists; blob ids are never reused"


class BlobIntegrityFailure(ProblemError):
    """A stored blob failed authentication before anything of it was sent."""

    status, code, title = 500, "integrity-failure", "Stored data failed its integrity check"


class RangeNotSatisfiable(ProblemError):
    status, code, title = 416, "range-not-satisfiable", "The requested range is not satisfiable"


class MidStreamIntegrityFailure(Exception):
    """A segment failed authentication after the response headers were sent.

    Deliberately not a :class:`ProblemError`: nothing can be rendered any more.
    The server aborts the connection (no final chunk, fewer bytes than the
    Content-Length), so the client sees a failed transfer, never a complete one.
    """
