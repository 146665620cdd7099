"""A big blob's bytes on their way through: downloads hand on the transport's pieces as they
come, big pieces are hashed off the event loop's thread (in order), and the one streamed
PATCH goes on the wire with its Content-Length, whole, in one request."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from syncer.errors import DigestMismatch
from syncer.registry import digests
from syncer.registry.client import RegistryClient
from syncer.registry.digests import THREADED_HASH, verified
from syncer.registry.oci import Descriptor
from syncer.registry.options import RegistryConfig, TlsMode
from syncer.registry.reference import Reference

MiB = 1024 * 1024


def _desc(data: bytes) -> Descriptor:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Descriptor(mediaType="application/octet-stream", digest=digest, size=len(data))


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at = 0
    for n in sizes:
        yield data[at : at + n]
        at += n
    assert at == len(data)


async def _source(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        await asyncio.sleep(0)  # a real source awaits its socket between pieces
        yield piece


# Big and small pieces mixed: a hash updated out of order would not match.
SIZES = [200_000, 10, 300_000, THREADED_HASH, 5, MiB, THREADED_HASH - 1, 700_000, 1]


class _Recording:
    """sha256, noting the thread of every update."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.threads: list[int] = []

    def update(self, data: bytes, /) -> None:
        self.threads.append(threading.get_ident())
        self.h.update(data)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


async def test_big_pieces_are_hashed_off_the_loop_thread_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = random.Random(1).randbytes(sum(SIZES))
    desc = _desc(data)
    hashers: list[_Recording] = []

    def recording(digest: str, what: str) -> _Recording:
        hashers.append(_Recording())
        return hashers[-1]

    monkeypatch.setattr(digests, "hasher_for", recording)
    got = [p async for p in verified("blob", desc.digest, desc.size, _source(_pieces(data, SIZES)))]
    assert b"".join(got) == data
    assert [len(p) for p in got] == SIZES  # handed on as they came, none split or joined
    (hasher,) = hashers
    loop_thread = threading.get_ident()
    big = [t for t, n in zip(hasher.threads, SIZES, strict=True) if n >= THREADED_HASH]
    small = [t for t, n in zip(hasher.threads, SIZES, strict=True) if n < THREADED_HASH]
    assert len(big) == 5 and loop_thread not in big
    assert small and set(small) == {loop_thread}


async def test_a_bad_big_piece_fails_the_digest_and_the_last_piece_is_withheld() -> None:
    data = random.Random(2).randbytes(sum(SIZES))
    desc = _desc(data)
    bad = bytearray(data)
    bad[600_000] ^= 1  # inside the 300,000-byte piece
    delivered = 0
    with pytest.raises(DigestMismatch):
        async for piece in verified("blob", desc.digest, desc.size, _source(_pieces(bad, SIZES))):
            delivered += len(piece)
    assert delivered == len(data) - SIZES[-1]


async def test_a_consumer_stopping_mid_hash_leaves_nothing_behind() -> None:
    data = random.Random(3).randbytes(4 * MiB)
    desc = _desc(data)
    stream = verified("blob", desc.digest, desc.size, _source(_pieces(data, [MiB] * 4)))
    assert len(await anext(stream)) == MiB  # the second piece is being hashed now
    await stream.aclose()
    # A fresh stream over the same bytes still verifies: nothing was shared or left running.
    again = verified("blob", desc.digest, desc.size, _source(_pieces(data, [MiB] * 4)))
    assert b"".join([p async for p in again]) == data


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.size):
            yield self.data[i : i + self.size]


async def test_a_download_is_not_cut_into_smaller_pieces() -> None:
    """Each piece the transport delivers goes on as it is: re-chunking it (httpx's
    aiter_raw(n)) cost a copy of every byte, and more pieces cost more per-piece work."""
    data = random.Random(4).randbytes(3 * MiB)
    desc = _desc(data)

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(200, stream=_Pieces(data, MiB))

    client = RegistryClient(
        lambda _r: RegistryConfig(),
        credentials=lambda r, c: None,
        http_transport=httpx.MockTransport(handler),
    )
    async with client:
        got = [p async for p in client.read_blob(Reference.parse("reg.test/r"), desc)]
    assert [len(p) for p in got] == [MiB, MiB, MiB]
    assert b"".join(got) == data


class _UploadEndpoint:
    """A bare HTTP/1.1 upload endpoint on loopback that records each request's head and
    how many body bytes it read: what syncer's aiohttp transport really puts on the wire."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self.stored = hashlib.sha256()
        self.size = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                line, *rest = head.decode().split("\r\n")
                fields = (h.partition(":") for h in rest if h)
                headers = {k.lower(): v.strip() for k, _, v in fields}
                method, target, _ = line.split(" ")
                got = 0
                left = int(headers.get("content-length", "0"))
                while left:
                    piece = await reader.read(min(left, MiB))
                    if not piece:
                        return
                    if method == "PATCH":
                        self.stored.update(piece)
                    got += len(piece)
                    left -= len(piece)
                self.requests.append((method, headers, got))
                writer.write(self._answer(method, target, got))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def _answer(self, method: str, target: str, got: int) -> bytes:
        location = "/v2/r/blobs/uploads/u1?_state=s"
        if method == "GET":
            status, extra = "200 OK", ""
        elif method == "HEAD":  # is the blob there? not yet
            status, extra = "404 Not Found", ""
        elif method == "POST":
            status, extra = "202 Accepted", f"Location: {location}\r\nRange: 0-0\r\n"
        elif method == "PATCH":
            self.size += got
            status = "202 Accepted"
            extra = f"Location: {location}\r\nRange: 0-{self.size - 1}\r\n"
        else:
            ok = f"digest=sha256%3A{self.stored.hexdigest()}" in target.replace(":", "%3A")
            status, extra = ("201 Created", "") if ok else ("400 Bad Request", "")
        return f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\n\r\n".encode()


async def test_the_streamed_patch_carries_its_length_and_the_whole_blob() -> None:
    """A HEAD, one POST, one PATCH with `Content-Length` = the blob's size (no chunked
    encoding, which costs the registry a decoder), every byte in it, one closing PUT
    without a body."""
    data = random.Random(5).randbytes(6 * MiB + 123)
    desc = _desc(data)
    endpoint = _UploadEndpoint()
    async with endpoint as host:
        cfg = RegistryConfig(tls=TlsMode.DISABLED, chunk_upload_threshold=1)
        async with RegistryClient(lambda _r: cfg, credentials=lambda r, c: None) as client:
            await client.upload_blob(
                Reference.parse(f"{host}/r"),
                desc,
                lambda: _source(_pieces(data, [MiB] * 6 + [123])),
            )
    sent = [(m, h, n) for m, h, n in endpoint.requests if m != "GET"]
    assert [m for m, _, _ in sent] == ["HEAD", "POST", "PATCH", "PUT"]
    _, patch, body = sent[2]
    assert patch["content-length"] == str(len(data)) and body == len(data)
    assert "transfer-encoding" not in patch
    assert patch["content-range"] == f"0-{len(data) - 1}"
    assert sent[3][2] == 0  # the closing PUT carries only the digest
    assert endpoint.stored.hexdigest() == desc.digest.removeprefix("sha256:")
