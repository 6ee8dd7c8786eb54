"""api's typed client for fileservice: blobs under opaque ids, each call with the
file's key (``X-File-Key``, a secret: never logged)."""

from __future__ import annotations

from collections.abc import AsyncIterable

import aiohttp
import orjson

from carevault_common.clients import ServiceClient
from carevault_common.errors import problem_from_peer


class FileserviceClient(ServiceClient):
    async def put_blob(self, blob_id: str, file_key: str, body: AsyncIterable[bytes] | bytes, length: int | None = None) -> int:
        """Store ``body`` encrypted under ``file_key``; returns the plaintext size."""
        headers = {"x-file-key": file_key, "content-type": "application/octet-stream"}
        if length is not None:
            headers["content-length"] = str(length)
        async with self.stream("PUT", f"/blobs/{blob_id}", body=body, headers=headers) as resp:
            payload = await resp.read()
        if resp.status != 201:
            raise problem_from_peer(resp.status, payload, self.peer)
        return int(orjson.loads(payload)["size"])

    async def open_blob(self, blob_id: str, file_key: str, byte_range: str | None = None) -> aiohttp.ClientResponse:
        """The decrypted content, body unread; the caller must ``release()`` it."""
        headers = {"x-file-key": file_key}
        if byte_range:
            headers["range"] = byte_range
        return await self.open("GET", f"/blobs/{blob_id}", headers=headers)

    async def read_blob(self, blob_id: str, file_key: str) -> bytes:
        """The whole content, for small blobs only (the caller checked the size)."""
        resp = await self.request("GET", f"/blobs/{blob_id}", headers={"x-file-key": file_key})
        if resp.status != 200:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        return resp.body

    async def delete_blob(self, blob_id: str) -> None:
        resp = await self.request("DELETE", f"/blobs/{blob_id}")
        if resp.status != 204:
            raise problem_from_peer(resp.status, resp.body, self.peer)
