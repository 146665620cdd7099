"""Blob uploads: chunked against a real registry; resume and fallback with injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from syncer.errors import DigestMismatch, SizeMismatch, TransportError
from syncer.registry.client import RegistryClient
from syncer.registry.oci import Descriptor
from syncer.registry.options import RegistryConfig, RetryConfig
from syncer.registry.reference import Reference
from syncer.registry.upload import _ByteFeed, _Chunk
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import make_client

DATA = random.Random(7).randbytes(300_000)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
DESC = Descriptor(mediaType="application/octet-stream", digest=DIGEST, size=len(DATA))


async def chunks_of(data: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_chunked_upload_to_real_registry(anon_registry: RunningRegistry) -> None:
    repo = Reference.parse(f"{anon_registry.host}/chunked/app")
    client = make_client(anon_registry, chunk_upload_threshold=1, chunk_size=64 * 1024)
    async with client:
        await client.upload_blob(repo, DESC, lambda: chunks_of(DATA))
        assert await client.blob_exists(repo, DIGEST)
        got = b"".join([c async for c in client.read_blob(repo, DESC)])
    assert got == DATA
    patches = [r for r in anon_registry.requests() if r.method == "PATCH"]
    assert len(patches) == 5  # ceil(300000 / 65536)
    assert sum(1 for r in anon_registry.requests() if r.method == "PUT") == 1


async def test_chunked_upload_stops_at_a_failing_source_and_commits_nothing(
    anon_registry: RunningRegistry,
) -> None:
    """Chunks stream straight from the source; when the source fails its digest check in
    the middle of a PATCH, that error is what the caller sees, and nothing is committed."""
    repo = Reference.parse(f"{anon_registry.host}/chunked/bad")
    pulled = 0

    async def failing() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for piece in chunks_of(DATA, 40_000):
            if pulled >= 200_000:  # inside the 4th 64 KiB chunk
                raise DigestMismatch("blob from src", DIGEST, "sha256:" + "0" * 64)
            pulled += len(piece)
            yield piece

    client = make_client(anon_registry, chunk_upload_threshold=1, chunk_size=64 * 1024)
    async with client:
        with pytest.raises(DigestMismatch):
            await client.upload_blob(repo, DESC, failing)
        assert not await client.blob_exists(repo, DIGEST)
    # The registry logs the broken PATCH when it gives up reading it, which can come after
    # the log's sync probe: wait for it (bounded) rather than read the log once.
    deadline = time.monotonic() + 10
    while True:
        methods = [r.method for r in anon_registry.requests() if "/chunked/bad/" in r.path]
        if methods.count("PATCH") >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert methods.count("PATCH") == 4  # 3 whole chunks, then the one the source broke
    assert "PUT" not in methods
    assert pulled == 200_000


async def paused_before_piece(n: int, pause: float | Callable[[], float]) -> AsyncIterator[bytes]:
    """DATA in 100,000-byte pieces, sleeping `pause` s (or `pause()` s) before piece `n`."""
    for i, piece in enumerate([DATA[j : j + 100_000] for j in range(0, len(DATA), 100_000)]):
        if i == n:
            await asyncio.sleep(pause() if callable(pause) else pause)
        yield piece


@pytest.mark.parametrize("cut", [0, 20_000])
async def test_a_patch_cut_while_the_source_is_slow_resumes_or_restarts(
    anon_registry: RunningRegistry, fault_proxy_factory: FaultProxyFactory, cut: int
) -> None:
    """The connection breaks while the PATCH waits for the source's next piece.

    cut=0: the registry stored nothing, so the session resumes in place, and the pull
    that was under way must have survived the broken request. cut=20000: distribution
    stored part of the chunk and drops the session when asked for its state (404), so
    the upload starts over with a fresh session and a fresh source."""
    proxy = fault_proxy_factory(anon_registry, cut_upload_after=cut)
    reg = behind(anon_registry, proxy)
    repo = Reference.parse(f"{reg.host}/chunked/slow")
    opened = 0

    def source() -> AsyncIterator[bytes]:
        nonlocal opened
        opened += 1
        return paused_before_piece(1, 0.5)

    client = make_client(reg, chunk_upload_threshold=1, chunk_size=128 * 1024)
    async with client:
        await client.upload_blob(repo, DESC, source)
        got = b"".join([c async for c in client.read_blob(repo, DESC)])
    assert hashlib.sha256(got).hexdigest() == DIGEST.removeprefix("sha256:")
    assert proxy.counts["upload-cut"] == 1
    calls = [(m, s) for m, p, s in proxy.requests if "/blobs/uploads/" in p]
    patches = [s for m, s in calls if m == "PATCH"]
    assert patches == [0, 202, 202, 202]  # the cut one, then ceil(300000 / 131072) = 3
    if cut == 0:
        assert opened == 1 and ("GET", 204) in calls
        assert [m for m, _ in calls].count("POST") == 1
    else:
        assert opened == 2 and ("GET", 404) in calls
        assert [m for m, _ in calls].count("POST") == 2


async def test_a_token_refused_mid_upload_is_renewed_and_the_chunk_resent(
    token_registry: RunningRegistry,
) -> None:
    """Real token expiry: the registry stops accepting our token between two PATCHes
    while it still looks valid to us. The next PATCH gets a 401, a new token, and is sent
    again in full, from the bytes held for it."""
    reg = token_registry
    assert reg.token_server is not None
    tokens = reg.token_server
    # Tokens that expired 58 s ago: the registry's 60 s leeway lets one live until the
    # second after next (1 to 2 s), while expires_in tells us 300 s.
    tokens.jwt_ttl = -58
    issued: list[float] = []
    mint = tokens.issue

    def issue(subject: str, access: list[dict[str, Any]], ttl: int | None = None) -> str:
        issued.append(time.time())
        return mint(subject, access, ttl)

    tokens.issue = issue  # type: ignore[method-assign]

    def until_the_token_died() -> float:
        tokens.jwt_ttl = None  # tokens issued from now on are good for 300 s
        return int(issued[0]) + 2.3 - time.time()

    repo = Reference.parse(f"{reg.host}/chunked/expiring")
    client = make_client(reg, chunk_upload_threshold=1, chunk_size=128 * 1024)
    async with client:
        # Piece 1 arrives late, inside PATCH 1, so PATCH 2 starts after the token died.
        await client.upload_blob(repo, DESC, lambda: paused_before_piece(1, until_the_token_died))
        got = b"".join([c async for c in client.read_blob(repo, DESC)])
    assert hashlib.sha256(got).hexdigest() == DIGEST.removeprefix("sha256:")
    patches = [r.status for r in reg.requests() if r.method == "PATCH"]
    assert patches == [202, 401, 202, 202]
    assert tokens.token_count() == 2
    # Resent from the held bytes: no need to ask the session how far it got.
    assert not [r for r in reg.requests() if r.method == "GET" and "/uploads/" in r.path]


class Streamed(httpx.AsyncByteStream):
    """A body that really streams (bytes content would be pre-read by httpx)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 64 * 1024):
            yield self.data[i : i + 64 * 1024]


class FakeSession:
    """An in-memory upload endpoint that can break a PATCH after storing part of it."""

    def __init__(
        self,
        *,
        refuse_monolithic: bool = False,
        break_patch: int | None = None,
        max_body: int | None = None,
    ) -> None:
        self.stored = bytearray()
        self.refuse_monolithic = refuse_monolithic
        self.break_patch = break_patch
        self.max_body = max_body  # a proxy's body-size limit: 413 above it
        self.sent = 0  # PATCH body bytes received, resends included
        self.calls: list[str] = []
        self.committed: str | None = None

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.calls.append(req.method)
        loc = {"Location": "/v2/r/blobs/uploads/u1?_state=x"}
        if req.url.path == "/v2/":
            return httpx.Response(200)
        if req.method == "HEAD":  # the upload's "is it there?": never, here
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})
        if req.method == "POST":
            self.stored.clear()
            return httpx.Response(202, headers=loc)
        if req.method == "PATCH":
            body = req.read()
            self.sent += len(body)
            if self.max_body is not None and len(body) > self.max_body:
                return httpx.Response(413)
            start = int(req.headers["content-range"].split("-")[0])
            if start != len(self.stored):
                return httpx.Response(416)
            if self.calls.count("PATCH") == self.break_patch:
                self.stored += body[: len(body) // 3]  # part of it landed, then the line died
                raise httpx.WriteError("connection reset", request=req)
            self.stored += body
            return httpx.Response(202, headers={**loc, "Range": f"0-{len(self.stored) - 1}"})
        if req.method == "GET":
            return httpx.Response(204, headers={**loc, "Range": f"0-{len(self.stored) - 1}"})
        if req.method == "PUT":
            body = req.read()
            if body and self.refuse_monolithic:
                return httpx.Response(405, json={"errors": [{"code": "UNSUPPORTED"}]})
            self.stored += body
            digest = "sha256:" + hashlib.sha256(self.stored).hexdigest()
            if req.url.params["digest"] != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            self.committed = digest
            return httpx.Response(201)
        if req.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(500)


def fake_client(session: FakeSession, **config: object) -> RegistryClient:
    cfg = RegistryConfig.model_validate(
        {"retry": RetryConfig(attempts=3, backoff_s=0).model_dump(), **config}
    )
    return RegistryClient(
        lambda _r: cfg, credentials=lambda r, c: None, http_transport=httpx.MockTransport(session)
    )


REPO = Reference.parse("reg.test/r")


async def test_broken_patch_resumes_from_server_offset() -> None:
    session = FakeSession(break_patch=2)
    async with fake_client(session, chunk_upload_threshold=1, chunk_size=100_000) as c:
        await c.upload_blob(REPO, DESC, lambda: chunks_of(DATA))
    assert session.committed == DIGEST
    assert bytes(session.stored) == DATA
    # 3 chunks + 1 resumed remainder.
    assert session.calls.count("PATCH") == 4
    assert session.calls.count("GET") == 1  # one status query
    assert session.calls.count("POST") == 1


async def test_refused_monolithic_put_falls_back_to_chunks() -> None:
    session = FakeSession(refuse_monolithic=True)
    async with fake_client(session, chunk_size=128 * 1024) as c:
        await c.upload_blob(REPO, DESC, lambda: chunks_of(DATA))
    assert session.committed == DIGEST
    assert session.calls.count("PATCH") == 3
    assert session.calls.count("DELETE") == 1  # the refused session was cancelled


@pytest.mark.parametrize(
    ("served", "error"),
    [
        (DATA[:100] + bytes([DATA[100] ^ 1]) + DATA[101:], DigestMismatch),
        (DATA[:-1], SizeMismatch),
        (DATA + b"x", SizeMismatch),
    ],
)
async def test_read_blob_never_hands_over_the_last_byte_of_bad_content(
    served: bytes, error: type[Exception]
) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Streamed(served))

    delivered = 0
    client = RegistryClient(
        lambda _r: RegistryConfig(),
        credentials=lambda r, c: None,
        http_transport=httpx.MockTransport(handler),
    )
    async with client:
        with pytest.raises(error):
            async for chunk in client.read_blob(REPO, DESC):
                delivered += len(chunk)
    assert delivered < len(DATA)


async def test_an_empty_blob_round_trips(anon_registry: RunningRegistry) -> None:
    """A zero-length blob (some images carry one) goes up and comes back verified."""
    empty = Descriptor(
        mediaType="application/octet-stream",
        digest="sha256:" + hashlib.sha256(b"").hexdigest(),
        size=0,
    )
    repo = Reference.parse(f"{anon_registry.host}/empty/blob")
    async with make_client(anon_registry) as client:
        await client.upload_blob(repo, empty, lambda: chunks_of(b""))
        assert await client.blob_exists(repo, empty.digest)
        assert [c async for c in client.read_blob(repo, empty)] == []
    gets = [r for r in anon_registry.requests() if r.method == "GET" and "/blobs/sha256:" in r.path]
    assert [r.status for r in gets] == [200]


# --- races between the PATCH body writer and the source (no network) -----------------


async def test_a_pull_finished_as_its_writer_is_cancelled_is_not_lost() -> None:
    """The pull completes in the same step the writer is cancelled: its bytes must be the
    next ones handed out, or the resumed PATCH would skip them."""

    async def pieces() -> AsyncIterator[bytes]:
        for b in (b"A", b"B", b"C"):
            yield b * 10

    source = _ByteFeed(pieces())
    writer = asyncio.create_task(source.take(100))
    while source._pending is None or not source._pending.done():
        await asyncio.sleep(0)
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    assert bytes(await source.take(100)) == b"A" * 10
    assert bytes(await source.take(100)) == b"B" * 10


async def test_abandon_racing_a_cancelled_writer_keeps_the_cancellation() -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"A" * 10
        await asyncio.sleep(5)
        yield b"B" * 10

    source = _ByteFeed(slow())
    chunk = _Chunk(source, 20)

    async def writer() -> None:
        async for _ in chunk.body(0):
            pass

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    task.cancel()
    await source.abandon()
    (outcome,) = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(outcome, asyncio.CancelledError)
    assert chunk.source_error is None  # a cancelled writer is not a failing source
    with pytest.raises(TransportError, match="abandoned"):
        await source.take(1)  # nothing may start a new pull after abandon()


async def test_a_big_blob_goes_up_in_one_streamed_patch(anon_registry: RunningRegistry) -> None:
    repo = Reference.parse(f"{anon_registry.host}/streamed/app")
    big, desc = _big()  # over the 16 MiB that chunks used to be
    client = make_client(anon_registry, chunk_upload_threshold=1)  # no chunk_size: one PATCH
    mark = anon_registry.mark()
    async with client:
        await client.upload_blob(repo, desc, lambda: chunks_of(big, 1024 * 1024))
        got = b"".join([c async for c in client.read_blob(repo, desc)])
    assert hashlib.sha256(got).hexdigest() == desc.digest.removeprefix("sha256:")
    writes = [r.method for r in anon_registry.requests_since(mark) if r.method != "GET"]
    assert [m for m in writes if m in ("POST", "PATCH", "PUT")] == ["POST", "PATCH", "PUT"]


async def test_a_streamed_patch_cut_resumes_from_the_offset_within_its_held_tail() -> None:
    session = FakeSession(break_patch=1)
    async with fake_client(session, chunk_upload_threshold=1) as c:
        await c.upload_blob(REPO, DESC, lambda: chunks_of(DATA))
    assert session.committed == DIGEST and bytes(session.stored) == DATA
    assert session.calls.count("POST") == 1 and session.calls.count("PATCH") == 2
    # The cut PATCH landed a third; the resume sends the rest, not the blob again.
    assert session.sent == len(DATA) + (len(DATA) - len(DATA) // 3)


async def test_a_refused_streamed_patch_falls_back_to_chunks() -> None:
    big, desc = _big()
    session = FakeSession(max_body=17 * 1024 * 1024)  # a proxy's limit: 413 for 20 MiB
    async with fake_client(session, chunk_upload_threshold=1) as c:
        await c.upload_blob(REPO, desc, lambda: chunks_of(big, 1024 * 1024))
    assert session.committed == desc.digest and bytes(session.stored) == big
    # The refused session is dropped; a new one sends 16 MiB (the fallback chunk) + 4 MiB.
    assert session.calls.count("POST") == 2 and session.calls.count("DELETE") == 1
    assert session.calls.count("PATCH") == 3


def _big() -> tuple[bytes, Descriptor]:
    big = random.Random(8).randbytes(20 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(big).hexdigest()
    return big, Descriptor(mediaType="application/octet-stream", digest=digest, size=len(big))
