"""The storage interface of fileservice. Backends store opaque bytes under opaque
ids; they know nothing of encryption, tenants or patients."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

# Bytes handed to the backend per read or write call: big enough that thread hops
# and requests are few, small enough that memory stays bounded per request.
IO_CHUNK = 1024 * 1024


class StoredObjectMissing(Exception):
    """The stored object does not exist (or vanished)."""


class BlobWriter(abc.ABC):
    """One upload. Call :meth:`commit` to make it visible, or :meth:`abort`."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> int:
        """Make the blob durable and visible under its id; returns its stored size."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard everything written; safe to call more than once, or after commit failed."""


class BlobStore(abc.ABC):
    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Prepare the backend (directories, clients) and clean up after a crash."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release clients."""

    @abc.abstractmethod
    def writer(self, blob_id: str) -> BlobWriter:
        """A new upload for ``blob_id`` (not visible until committed)."""

    @abc.abstractmethod
    def read(self, blob_id: str, start: int, end: int, chunk_size: int = IO_CHUNK) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the stored object, in chunks of at most ``chunk_size``
        (a backend may return shorter ones). Raises :class:`StoredObjectMissing` if
        there is no such object."""

    @abc.abstractmethod
    async def size(self, blob_id: str) -> int | None:
        """Stored size in bytes, or None if there is no such object."""

    @abc.abstractmethod
    async def delete(self, blob_id: str) -> None:
        """Remove the object; no error if it does not exist."""

    @abc.abstractmethod
    async def ready(self) -> bool:
        """Whether the backend answers (readiness)."""
