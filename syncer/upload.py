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
import gc
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
        size = self.t.config.chunk_size
        pieces: list[bytes] = []
        held = 0
        async for piece in chunks:
            pieces.append(piece)
            held += len(piece)
            if held >= size:
                # One join per chunk (no slicing copies); the remainder starts the next one.
                data = b"".join(pieces)
                pieces, held = [data[size:]], held - size
                await self._patch(data[:size])
                del data
        rest = b"".join(pieces)
        if rest:
            await self._patch(rest)
        await self.t.request(
            "PUT",
            _with_digest(self.location, desc.digest),
            scopes=self.scopes,
            headers={"Content-Length": "0"},
            content=b"",
            ok=(201,),
        )

    async def _patch(self, data: bytes) -> None:
        attempts = self.t.config.retry.attempts
        for attempt in range(1, attempts + 1):
            end = self.offset + len(data) - 1
            try:
                resp = await self.t.request(
                    "PATCH",
                    self.location,
                    scopes=self.scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{self.offset}-{end}",
                        "Content-Length": str(len(data)),
                    },
                    content=data,
                    ok=(202,),
                    retry=False,
                )
                self.location = _location(resp)
                self.offset = end + 1
                # httpx keeps each finished request (and its chunk) in a reference cycle;
                # collect now, or a 1 GiB upload holds dozens of chunks until gc runs.
                del resp
                gc.collect()
                return
            except (TransportError, RegistryError) as exc:
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
                data = data[accepted - self.offset :]
                self.offset = accepted
                if not data:
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
