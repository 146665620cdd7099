"""Blob upload sessions: monolithic PUT, or chunked PATCHes that resume after a break.

Small blobs go up in one streamed PUT. Blobs above the registry's
`chunk_upload_threshold` (and any blob whose registry refuses a monolithic PUT)
go up in chunks: a broken PATCH is not replayed blindly, since the registry may
have stored part of it; we ask the session how far it got (`GET` the upload
URL, `Range: 0-N`) and send only the rest. One chunk is buffered at a time, so
memory stays bounded by `chunk_size`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import httpx
import structlog

from syncer.errors import RegistryError, TransportError
from syncer.models import Descriptor
from syncer.transport import Transport

log = structlog.get_logger("syncer.upload")

Source = Callable[[], AsyncIterator[bytes]]
# Statuses with which registries say "no monolithic upload here".
MONOLITHIC_REFUSED = frozenset({400, 405, 413, 416, 501})


class UploadSession:
    def __init__(self, transport: Transport, repository: str, scopes: frozenset[str]) -> None:
        self.t = transport
        self.repository = repository
        self.scopes = scopes
        self.location = ""
        self.offset = 0

    async def start(self) -> None:
        resp = await self.t.request(
            "POST", f"/v2/{self.repository}/blobs/uploads/", scopes=self.scopes, ok=(202,)
        )
        self.location = _location(resp)
        self.offset = 0

    async def put_whole(self, desc: Descriptor, chunks: AsyncIterator[bytes]) -> None:
        await self.t.request(
            "PUT",
            _with_digest(self.location, desc.digest),
            scopes=self.scopes,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            content=chunks,
            ok=(201,),
        )

    async def put_chunked(self, desc: Descriptor, chunks: AsyncIterator[bytes]) -> None:
        source = _Source(chunks)
        while self.offset < desc.size:
            length = min(self.t.config.chunk_size, desc.size - self.offset)
            await self._patch(_Chunk(source, length))
        await source.finish()
        await self.t.request(
            "PUT",
            _with_digest(self.location, desc.digest),
            scopes=self.scopes,
            headers={"Content-Length": "0"},
            content=b"",
            ok=(201,),
        )

    async def _patch(self, chunk: _Chunk) -> None:
        attempts = self.t.config.retry.attempts
        start = self.offset
        for attempt in range(1, attempts + 1):
            end = start + chunk.length - 1
            try:
                resp = await self.t.request(
                    "PATCH",
                    self.location,
                    scopes=self.scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{self.offset}-{end}",
                        "Content-Length": str(end + 1 - self.offset),
                    },
                    content=chunk.body(skip=self.offset - start),
                    ok=(202,),
                    retry=False,
                )
                self.location = _location(resp)
                self.offset = end + 1
                return
            except (TransportError, RegistryError) as exc:
                if chunk.source_error is not None:
                    raise chunk.source_error from None  # the source failed, not the upload
                if isinstance(exc, RegistryError) and (exc.status or 0) < 500:
                    raise
                if attempt == attempts:
                    raise
                accepted = await self._accepted()
                log.warning(
                    "chunk upload broke, resuming",
                    repository=self.repository,
                    offset=accepted,
                    attempt=attempt,
                )
                if accepted < self.offset or accepted > end + 1:
                    raise TransportError(
                        f"upload session at {self.t.registry} reports offset {accepted}, "
                        f"expected {self.offset}..{end + 1}"
                    ) from None
                self.offset = accepted
                if accepted == end + 1:
                    return

    async def _accepted(self) -> int:
        """How many bytes the session holds (`Range: 0-N` means N+1)."""
        resp = await self.t.request("GET", self.location, scopes=self.scopes, ok=(204,))
        self.location = _location(resp)
        rng = resp.headers.get("range", "")
        _, _, last = rng.partition("-")
        return int(last) + 1 if last.isdigit() else 0

    async def cancel(self) -> None:
        if not self.location:
            return
        # An abandoned session expires on its own; cancelling is only tidiness.
        with contextlib.suppress(RegistryError, TransportError):
            await self.t.request("DELETE", self.location, scopes=self.scopes, ok=(200, 204, 404))


async def upload_blob(
    t: Transport, repository: str, desc: Descriptor, source: Source, scopes: frozenset[str]
) -> None:
    """Upload one blob from `source` (which may be opened a second time on fallback)."""
    session = UploadSession(t, repository, scopes)
    await session.start()
    if desc.size > t.config.chunk_upload_threshold:
        await session.put_chunked(desc, source())
        return
    attempts = t.config.retry.attempts
    for attempt in range(1, attempts + 1):
        try:
            await session.put_whole(desc, source())
            return
        except TransportError:
            # A streamed body cannot be replayed by the transport: restart the
            # whole (small) upload with a fresh source and a fresh session.
            if attempt == attempts:
                raise
            log.warning("upload broke, restarting", registry=t.registry, digest=desc.digest)
        except RegistryError as exc:
            if exc.status not in MONOLITHIC_REFUSED:
                raise
            log.info("monolithic upload refused, using chunks", registry=t.registry)
            await session.cancel()
            await session.start()
            await session.put_chunked(desc, source())
            return
        await session.cancel()
        await session.start()


class _Source:
    """A blob's byte stream, handed out in pieces of at most a requested size."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")

    async def take(self, n: int) -> memoryview:
        while not self._rest:
            try:
                self._rest = memoryview(await anext(self._chunks))
            except StopAsyncIteration:
                raise TransportError("blob source ended before its declared size") from None
        piece, self._rest = self._rest[:n], self._rest[n:]
        return piece

    async def finish(self) -> None:
        """Drain the end: the source verifies the digest when it runs out."""
        async for extra in self._chunks:
            if extra:
                raise TransportError("blob source is longer than its declared size")


class _Chunk:
    """The next `length` bytes of the source, read while they are being sent and kept
    until the registry has them, so a broken PATCH resends only what it lost while the
    download and the upload overlap."""

    def __init__(self, source: _Source, length: int) -> None:
        self.source = source
        self.length = length
        self.held: list[memoryview] = []
        self.pulled = 0
        self.source_error: BaseException | None = None

    async def body(self, skip: int) -> AsyncIterator[bytes]:
        for piece in self.held:
            if skip >= len(piece):
                skip -= len(piece)
                continue
            yield piece[skip:]  # type: ignore[misc]
            skip = 0
        while self.pulled < self.length:
            try:
                piece = await self.source.take(self.length - self.pulled)
            except BaseException as exc:
                self.source_error = exc
                raise
            self.held.append(piece)
            self.pulled += len(piece)
            yield piece  # type: ignore[misc]


def _location(resp: httpx.Response) -> str:
    location = resp.headers.get("location")
    if not location:
        raise RegistryError(
            "upload answered without a Location header",
            status=resp.status_code,
            method=resp.request.method,
            url=str(resp.request.url),
        )
    return str(resp.request.url.join(location))


def _with_digest(url: str, digest: str) -> str:
    # Location carries the session state in its query: append, never replace it.
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}digest={quote(digest, safe=':')}"
