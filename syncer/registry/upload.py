"""Blob upload sessions: a monolithic PUT, one streamed PATCH, or chunked PATCHes.

Small blobs go up in one streamed PUT (POST + PUT). Blobs above the registry's
`chunk_upload_threshold` (and any blob whose registry refuses a monolithic PUT) go up
as `docker push` sends a layer: one PATCH streaming the whole blob, then the closing
`PUT ?digest=` (POST + PATCH + PUT), which every registry speaking the distribution
API accepts. Only a registry configured with `chunk_size` (or one refusing the single
PATCH, as a proxy with a body-size limit does with 413) gets chunks of that size.

Whether the repository holds the blob already is asked first, one of two ways (`Probe`,
chosen by the client): a HEAD, or the upload's own POST asking the registry to mount the
blob from that same repository (`?mount=D&from=<same repo>`), which a registry holding it
there answers 201 with nothing sent, and one that does not with the upload (202), as the
spec has it: one request instead of a HEAD and a POST. A registry that refuses that
question outright gets the HEAD and a plain POST.

A broken PATCH is not replayed blindly, since the registry may have stored part of
it: the transport sends it once (`retry=False`), and we ask the session how far it
got (`GET` the upload URL, `Range: 0-N`) and send only the rest in a new PATCH. The
bytes a resumed PATCH may need are held: the whole chunk in chunked mode, the last
`RESUME_WINDOW` bytes of the stream otherwise, so memory stays bounded either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import httpx
import structlog

from syncer.errors import NotFound, RateLimited, RegistryError, TransportError
from syncer.registry.oci import Descriptor
from syncer.registry.transport.request import RETRY_STATUSES, ReplayableBody
from syncer.registry.transport.session import RegistrySession

log = structlog.get_logger("syncer.registry.upload")

# Opens a blob's bytes from the start (a fresh download): called again for each fresh start.
BlobBytes = Callable[[], AsyncIterator[bytes]]
# Statuses with which registries say "no monolithic upload here".
MONOLITHIC_REFUSED = frozenset({400, 405, 413, 416, 501})
# Statuses with which a registry, or a proxy in front of it (a body-size limit), refuses
# one PATCH of a whole big blob before storing any of it: go on in chunks.
STREAM_REFUSED = frozenset({400, 405, 411, 413, 501})
# Chunks for a registry that refused the single PATCH and names no `chunk_size`.
FALLBACK_CHUNK = 16 * 1024 * 1024
# The tail of a streamed PATCH kept for a resume: what a cut connection can have lost
# in socket buffers. A registry reporting an offset further back gets a fresh start.
RESUME_WINDOW = 4 * 1024 * 1024


class Probe(enum.Enum):
    """How an upload first learns whether the repository holds the blob (module doc)."""

    HEAD = "head"
    MOUNT = "mount"


@dataclass(frozen=True)
class UploadJob:
    """One blob for `repository`; `open_bytes()` opens its bytes, again per fresh start."""

    t: RegistrySession
    repository: str
    desc: Descriptor
    open_bytes: BlobBytes
    scopes: frozenset[str]
    probe: Probe = Probe.HEAD

    async def opened(self) -> UploadSession:
        """A new upload session for this blob, started."""
        session = UploadSession(self.t, self.repository, self.scopes)
        await session.start()
        return session


async def blob_held(
    t: RegistrySession, repository: str, digest: str, scopes: frozenset[str]
) -> bool:
    """Whether `repository` holds `digest` (a HEAD)."""
    try:
        await t.request("HEAD", f"/v2/{repository}/blobs/{digest}", scopes=scopes)
    except NotFound:
        return False
    return True


class SessionLost(TransportError):
    """The registry no longer has our upload session (expired, or dropped because a broken
    PATCH left it at an offset it would not resume from): the upload must start over."""


class _FeedEnded(TransportError):
    """The blob's bytes ran out (before, or exactly at, the declared size)."""


class StreamRefused(RegistryError):
    """The registry refused one PATCH of the whole blob: chunks it is."""


class UploadSession:
    def __init__(self, session: RegistrySession, repository: str, scopes: frozenset[str]) -> None:
        self.t = session
        self.repository = repository
        self.scopes = scopes
        self.location = ""
        self.offset = 0

    async def start(self, mount: str | None = None) -> bool:
        """Open a session. With `mount` (a digest) the registry is first asked to link that
        blob from this same repository: True when it holds it already (no session)."""
        path = f"/v2/{self.repository}/blobs/uploads/"
        if mount is not None:
            path += "?" + urlencode({"mount": mount, "from": self.repository})
        resp = await self.t.request(
            "POST", path, scopes=self.scopes, ok=(201, 202) if mount else (202,)
        )
        if resp.status_code == 201:
            return True
        self.location = _location(resp)
        self.offset = 0
        return False

    async def put_whole(self, desc: Descriptor, chunks: AsyncIterator[bytes]) -> None:
        await self.t.request(
            "PUT",
            _with_digest(self.location, desc.digest),
            scopes=self.scopes,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            content=chunks,
            ok=(201,),
        )

    async def put_chunked(
        self, desc: Descriptor, chunks: AsyncIterator[bytes], chunk_size: int | None
    ) -> None:
        """PATCHes of `chunk_size` bytes, or (None) one PATCH of the whole blob."""
        feed = _ByteFeed(chunks)
        try:
            while self.offset < desc.size:
                if chunk_size is None:
                    await self._patch(_Chunk(feed, desc.size - self.offset, window=RESUME_WINDOW))
                else:
                    await self._patch(_Chunk(feed, min(chunk_size, desc.size - self.offset)))
            await feed.finish()
        finally:
            await feed.abandon()
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
                    content=_Resendable(chunk, skip=self.offset - start),
                    ok=(202,),
                    retry=False,
                )
                self.location = _location(resp)
                self.offset = end + 1
                return
            except (TransportError, RegistryError) as exc:
                if chunk.source_error is not None:
                    raise chunk.source_error from None  # the source failed, not the upload
                whole = chunk.window is not None and self.offset == 0
                if whole and isinstance(exc, RegistryError) and exc.status in STREAM_REFUSED:
                    raise StreamRefused(
                        exc.detail, status=exc.status, method=exc.method, url=exc.url
                    ) from None
                if isinstance(exc, RegistryError) and exc.status in (404, 416):
                    raise SessionLost(f"upload session at {self.t.registry}: {exc}") from None
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
                # Never more than we sent: skipping bytes nobody received would corrupt the
                # blob; never further back than the bytes still held for this chunk.
                held_from = max(self.offset, start + chunk.dropped)
                if accepted < held_from or accepted > min(end + 1, start + chunk.pulled):
                    raise SessionLost(
                        f"upload session at {self.t.registry} reports offset {accepted}, "
                        f"expected {held_from}..{end + 1}"
                    ) from None
                self.offset = accepted
                if accepted == end + 1:
                    return

    async def _accepted(self) -> int:
        """How many bytes the session holds (`Range: 0-N` means N+1)."""
        try:
            resp = await self.t.request("GET", self.location, scopes=self.scopes, ok=(204,))
        except NotFound as exc:
            # distribution drops a session whose stored size disagrees with its state.
            raise SessionLost(f"upload session at {self.t.registry}: {exc}") from None
        self.location = _location(resp)
        rng = resp.headers.get("range", "")
        _, _, last = rng.partition("-")
        if not last.isdigit() or (last == "0" and self.offset == 0):
            # distribution answers "0-0" for an empty session as well as for one byte; the
            # empty one is by far likelier, and a wrong guess earns a 416 and a restart.
            return 0
        return int(last) + 1

    async def cancel(self) -> None:
        if not self.location:
            return
        # An abandoned session expires on its own; cancelling is only tidiness.
        with contextlib.suppress(RegistryError, TransportError):
            await self.t.request("DELETE", self.location, scopes=self.scopes, ok=(200, 204, 404))


async def upload_blob(job: UploadJob) -> bool:
    """Upload one blob unless the repository holds it: True when its bytes were sent."""
    t, desc = job.t, job.desc
    chunked = desc.size > t.config.chunk_upload_threshold
    # None: the whole blob in one PATCH; a size only where the registry needs chunks.
    chunk_size = t.config.chunk_size
    restarts = 0
    session = UploadSession(t, job.repository, job.scopes)
    if await _held(session, desc.digest, job.probe):
        return False
    while True:
        try:
            if chunked:
                await session.put_chunked(desc, job.open_bytes(), chunk_size)
            else:
                await session.put_whole(desc, job.open_bytes())
            return True
        except Exception as exc:
            await session.cancel()  # nothing of a failed attempt may linger
            refused = isinstance(exc, RegistryError) and exc.status in MONOLITHIC_REFUSED
            if refused and not chunked:
                log.info("monolithic upload refused, using a PATCH", registry=t.registry)
                chunked = True
                session = await job.opened()
                continue
            if isinstance(exc, StreamRefused) and chunk_size is None:
                log.info("one-PATCH upload refused, using chunks", registry=t.registry)
                chunk_size = FALLBACK_CHUNK
                session = await job.opened()
                continue
            # A streamed PUT cannot be replayed (after a break or a 5xx alike), and a chunked
            # session the registry has dropped cannot be resumed: both start over, from a
            # fresh source. A chunked upload that still exists was already resumed in place
            # by put_chunked. A 429 is not restarted: the rate-limit budget decides.
            restarts += 1
            failed_put = isinstance(exc, TransportError) or (
                isinstance(exc, RegistryError)
                and exc.status in RETRY_STATUSES
                and not isinstance(exc, RateLimited)
            )
            fresh_start_helps = isinstance(exc, SessionLost) or (failed_put and not chunked)
            if not fresh_start_helps or restarts >= t.config.retry.attempts:
                raise
            log.warning(
                "upload broke, restarting",
                registry=t.registry,
                digest=desc.digest,
                reason=str(exc),
            )
            await asyncio.sleep(t.backoff(restarts))
            session = await job.opened()


async def _held(session: UploadSession, digest: str, probe: Probe) -> bool:
    """Open `session`, or learn that its repository holds `digest` already (module doc)."""
    if probe is Probe.MOUNT:
        try:
            return await session.start(mount=digest)
        except RegistryError as exc:
            if isinstance(exc, RateLimited) or exc.status in (401, 403):
                raise  # a plain POST would meet the same answer
            log.debug("same-repository mount refused", registry=session.t.registry, error=str(exc))
    if await blob_held(session.t, session.repository, digest, session.scopes):
        return True
    await session.start()
    return False


class _ByteFeed:
    """A blob's byte stream, handed out in pieces of at most a requested size.

    Each pull from the stream runs as its own task, shielded from the PATCH that asked
    for it: when a connection breaks while the body writer waits here, the writer is
    cancelled but the download below must live on, because the resumed PATCH needs the
    very bytes that pull brings.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")
        self._pending: asyncio.Future[bytes] | None = None
        self._abandoned = False

    async def take(self, n: int) -> memoryview:
        while not self._rest:
            if self._abandoned:
                raise TransportError("blob upload abandoned")  # a writer outliving it
            if self._pending is None:
                self._pending = asyncio.create_task(self._pull())
            pending = self._pending
            try:
                data = await asyncio.shield(pending)
            except asyncio.CancelledError:
                # The writer was stopped. The pull, finished or not, stays for the next
                # take: its bytes are the ones the resumed PATCH must send.
                if pending.cancelled() and self._pending is pending:
                    self._pending = None
                raise
            except BaseException as exc:
                if self._pending is pending:
                    self._pending = None
                if isinstance(exc, StopAsyncIteration):
                    raise _FeedEnded("blob source ended before its declared size") from None
                raise
            if self._pending is pending:
                self._pending = None
            self._rest = memoryview(data)
        piece, self._rest = self._rest[:n], self._rest[n:]
        return piece

    async def _pull(self) -> bytes:
        return await anext(self._chunks)

    async def finish(self) -> None:
        """Drain the end: the source verifies the digest when it runs out."""
        while True:
            try:
                extra = await self.take(1)
            except _FeedEnded:
                return  # only the end of the source; its own errors go on up
            if extra:
                raise TransportError("blob source is longer than its declared size")

    async def abandon(self) -> None:
        """Stop a pull still running after the upload gave up, and close the stream, so
        the download under it hands back its connection and its host slot now."""
        self._abandoned = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()  # seen: whatever it was, the upload already failed
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


class _Chunk:
    """The next `length` bytes of the source, read while they are being sent and kept
    until the registry has them, so a broken PATCH resends only what it lost while the
    download and the upload overlap. With a `window`, only the last `window` bytes read
    are kept (the stream of a whole blob): a resume further back cannot be served."""

    def __init__(self, feed: _ByteFeed, length: int, *, window: int | None = None) -> None:
        self.feed = feed
        self.length = length
        self.window = window
        self.held: deque[memoryview] = deque()
        self.pulled = 0
        self.dropped = 0  # bytes at the chunk's start no longer held
        self.source_error: BaseException | None = None

    async def body(self, skip: int) -> AsyncIterator[bytes]:
        if skip < self.dropped:
            # A replay from before the window (a 401 answered mid-stream): the caller asks
            # the session how far it got, and a fresh start follows if that is out of reach.
            raise TransportError("streamed blob body cannot be sent again from there")
        skip -= self.dropped
        for piece in list(self.held):
            if skip >= len(piece):
                skip -= len(piece)
                continue
            yield piece[skip:]  # type: ignore[misc]
            skip = 0
        while self.pulled < self.length:
            try:
                piece = await self.feed.take(self.length - self.pulled)
            except Exception as exc:  # not CancelledError: the writer stopped, not the source
                self.source_error = exc
                raise
            self._hold(piece)
            yield piece  # type: ignore[misc]

    def _hold(self, piece: memoryview) -> None:
        self.held.append(piece)
        self.pulled += len(piece)
        if self.window is None:
            return
        while self.held and self.pulled - self.dropped - len(self.held[0]) >= self.window:
            self.dropped += len(self.held.popleft())


class _Resendable(ReplayableBody):
    """A PATCH body that can be sent again (after a 401 and a new token, say): each
    iteration replays the held bytes after `skip`, then reads on from the source."""

    def __init__(self, chunk: _Chunk, skip: int) -> None:
        self.chunk = chunk
        self.skip = skip

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunk.body(self.skip)


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
