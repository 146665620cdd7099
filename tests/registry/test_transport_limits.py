"""Transport safety against hostile or broken peers: who gets credentials, capped reads,
deadlines, and breaks while a body is read. Raw loopback sockets or httpx.MockTransport."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from syncer.errors import ResponseTooLarge, TransportError
from syncer.registry.client import RegistryClient
from syncer.registry.credentials import Credential
from syncer.registry.listing import MAX_LISTING_BYTES
from syncer.registry.oci import MAX_MANIFEST_BYTES, Descriptor
from syncer.registry.options import RegistryConfig, RetryConfig
from syncer.registry.origin import RegistryOrigin
from syncer.registry.reference import Reference
from syncer.registry.transport.session import RegistrySession
from syncer.registry.transport.slots import HostSlots
from syncer.registry.upload import UploadSession
from tests.registry.test_aiohttp_transport import read_head, serve
from tests.support.tls import make_tls_files

FAST = RegistryConfig(retry=RetryConfig(attempts=3, backoff_s=0.0, max_backoff_s=0.0))
CRED = Credential(username="alice", password=SecretStr("s3cret-pw"))
MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("url", "sent_to", "own"),
    [
        ("/v2/r/tags/list", "https://reg.test/v2/r/tags/list", True),
        ("https://reg.test/v2/x", "https://reg.test/v2/x", True),
        # Look-alikes of the base URL's text are other hosts.
        ("https://reg.test.evil/v2/x", "https://reg.test.evil/v2/x", False),
        ("https://reg.test@evil.test/v2/x", "https://reg.test@evil.test/v2/x", False),
        ("https://reg.testing/v2/x", "https://reg.testing/v2/x", False),
        ("https://reg.test:443/v2/x", "https://reg.test:443/v2/x", True),
        ("https://REG.test/v2/x", "https://REG.test/v2/x", True),
        # Our host named over plain http (a TLS-terminating proxy): kept on https.
        ("http://reg.test/v2/x?_state=a", "https://reg.test/v2/x?_state=a", True),
        ("http://reg.test:443/v2/x", "https://reg.test/v2/x", True),
        ("http://reg.test:8080/v2/x", "http://reg.test:8080/v2/x", False),
        ("https://reg.test:8443/v2/x", "https://reg.test:8443/v2/x", False),
        ("https://cdn.test/v2/x", "https://cdn.test/v2/x", False),
    ],
)
def test_origin_is_scheme_host_and_effective_port(url: str, sent_to: str, own: bool) -> None:
    target = RegistryOrigin("https://reg.test").resolve(url)
    assert (target.url, target.own) == (sent_to, own)


def test_a_plain_http_registry_is_its_own_origin_only_over_http() -> None:
    origin = RegistryOrigin("http://reg.test:5000")
    assert origin.resolve("http://reg.test:5000/v2/").own
    assert not origin.resolve("https://reg.test:5000/v2/").own


async def test_http_location_and_link_never_carry_credentials_in_clear() -> None:
    """Upload Location and pagination Link naming our host over http: the password stays
    on TLS (the URL is upgraded), and nothing with Authorization goes over http."""
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if "authorization" not in req.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        if req.method == "POST":
            return httpx.Response(202, headers={"Location": "http://reg.test/v2/r/uploads/u1"})
        if req.method == "PUT":
            return httpx.Response(201)
        if req.url.params.get("last") is None:
            link = '<http://reg.test/v2/r/tags/list?last=a&n=1>; rel="next"'
            return httpx.Response(200, json={"tags": ["a"]}, headers={"Link": link})
        return httpx.Response(200, json={"tags": ["b"]})

    cfg = RegistryConfig(endpoint="https://reg.test", retry=FAST.retry)
    client = RegistryClient(
        lambda _r: cfg, credentials=lambda *_: CRED, http_transport=httpx.MockTransport(handler)
    )
    repo = Reference.parse("reg.test/r:x")
    try:
        assert await client.list_tags(repo, page_size=1) == ["a", "b"]
        session = UploadSession(client.session(repo), "r", frozenset())
        await session.start()
        await session.put_whole(
            Descriptor(media_type="x", digest="sha256:" + "0" * 64, size=1), _one(b"z")
        )
    finally:
        await client.aclose()
    with_auth = [r for r in seen if "authorization" in r.headers]
    assert [r.url.scheme for r in with_auth] == ["https"] * len(with_auth)
    assert [r.url.scheme for r in seen] == ["https"] * len(seen)
    assert {(r.method, r.url.path) for r in with_auth} >= {
        ("GET", "/v2/r/tags/list"),
        ("PUT", "/v2/r/uploads/u1"),
    }
    assert sum(r.url.params.get("last") == "a" for r in with_auth) == 1


async def _one(data: bytes):  # type: ignore[no-untyped-def]
    yield data


class Flood:
    """A loopback server answering every request with `size` bytes, counting what the
    kernel accepted from it before the client hung up."""

    def __init__(self, size: int, *, declare_length: bool) -> None:
        self.size, self.declare_length, self.sent = size, declare_length, 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        length = f"Content-Length: {self.size}\r\n" if self.declare_length else ""
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
            + length.encode()
            + b"Connection: close\r\n\r\n"
        )
        chunk = b" " * (256 * 1024)
        try:
            while self.sent < self.size:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
        except OSError:
            pass
        writer.close()


@pytest.mark.parametrize("declare_length", [True, False])
async def test_an_oversize_manifest_is_refused_while_it_streams(declare_length: bool) -> None:
    flood = Flood(64 * MiB, declare_length=declare_length)
    server, url = await serve(flood)
    client = RegistryClient(lambda _r: FAST)
    try:
        ref = Reference.parse(url.removeprefix("http://") + "/r:big")
        with pytest.raises(ResponseTooLarge) as err:
            await client.get_manifest(ref)
    finally:
        await client.aclose()
        server.close()
    assert str(MAX_MANIFEST_BYTES) in str(err.value)
    assert flood.sent < 24 * MiB, flood.sent  # the cap plus socket buffers, not 64 MiB


async def test_an_oversize_tag_list_page_is_refused_while_it_streams() -> None:
    flood = Flood(64 * MiB, declare_length=False)
    server, url = await serve(flood)
    client = RegistryClient(lambda _r: FAST)
    try:
        with pytest.raises(ResponseTooLarge) as err:
            await client.list_tags(Reference.parse(url.removeprefix("http://") + "/r:x"))
    finally:
        await client.aclose()
        server.close()
    assert str(MAX_LISTING_BYTES) in str(err.value)
    assert flood.sent < 40 * MiB, flood.sent


async def test_a_trickling_server_times_out_within_the_deadline() -> None:
    """One byte every 50 ms never trips a per-read timeout; the whole answer has timeout_s."""
    connections = 0

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(100000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)
        except OSError:
            pass
        writer.close()

    server, url = await serve(trickle)
    retry = RetryConfig(attempts=3, backoff_s=0.0, max_backoff_s=0.0, timeout_s=0.5, deadline_s=5)
    t = RegistrySession("reg.test", url, RegistryConfig(retry=retry), None)
    started = time.monotonic()
    try:
        with pytest.raises(TransportError, match="timeout_s"):
            await asyncio.wait_for(t.request("GET", "/v2/r/tags/list"), 20)
    finally:
        await t.aclose()
        server.close()
    assert time.monotonic() - started < 3.0  # 3 attempts of 0.5 s, far below the trickle
    assert connections == 3


async def test_a_body_cut_once_is_read_again_on_a_second_attempt() -> None:
    body = b'{"name":"r","tags":["' + b"a" * 200 + b'"]}'
    attempts = 0

    async def cut_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        await read_head(reader)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        writer.write(head + (body[:50] if attempts == 1 else body))
        await writer.drain()
        writer.close()

    server, url = await serve(cut_once)
    t = RegistrySession("reg.test", url, FAST, None)
    try:
        resp = await t.request("GET", "/v2/r/tags/list")
    finally:
        await t.aclose()
        server.close()
    assert attempts == 2
    assert resp.content == body


async def test_a_slot_wait_ends_at_the_deadline_with_a_clear_error() -> None:
    slots = HostSlots("reg.test", 1)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hog() -> None:
        async with slots.hold(time.monotonic() + 10, "GET a"):
            holding.set()
            await release.wait()

    task = asyncio.create_task(hog())
    await holding.wait()
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"max_concurrency.*|deadline") as err:
        async with slots.hold(time.monotonic() + 0.3, "GET b"):
            pass
    assert 0.25 < time.monotonic() - started < 2
    assert "GET b" in str(err.value) and "deadline_s" in str(err.value)
    release.set()
    await task


async def test_a_request_made_inside_a_held_slot_rides_on_it() -> None:
    """The body of a PUT reading from the same host, with one slot: no second wait."""
    slots = HostSlots("reg.test", 1)
    async with slots.hold(time.monotonic() + 10, "PUT"):
        nested = asyncio.create_task(_hold_briefly(slots))  # as aiohttp's body writer is
        await asyncio.wait_for(nested, 2)
    assert not slots.held()


async def _hold_briefly(slots: HostSlots) -> None:
    async with slots.hold(time.monotonic() + 1, "GET"):
        assert slots.held()


@pytest.mark.parametrize("settings", ["ca_file", "insecure"])
async def test_a_redirect_target_verifies_with_the_registry_ca_never_insecure(
    tmp_path: Path, settings: str
) -> None:
    """A private-CA object store behind the registry (MinIO behind Harbor) verifies with the
    registry's ca_file; `tls: insecure` is said of the registry only, not of other hosts."""
    files = make_tls_files(tmp_path / "tls")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.cert_file, files.key_file)
    served = 0

    async def store(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nblob")
            await writer.drain()
            served += 1
        writer.close()

    cdn = await asyncio.start_server(store, "127.0.0.1", 0, ssl=server_ctx)
    cdn_port = cdn.sockets[0].getsockname()[1]
    location = f"https://localhost:{cdn_port}/b?sig=x"

    async def registry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(f"HTTP/1.1 307 Temporary\r\nLocation: {location}\r\n".encode())
        writer.write(b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    # The registry itself is https too: a ca_file is refused for a plain-HTTP registry.
    reg = await asyncio.start_server(registry, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://localhost:{reg.sockets[0].getsockname()[1]}"
    retry = RetryConfig(attempts=1)
    tls = {"ca_file": files.ca_file} if settings == "ca_file" else {"tls": "insecure"}
    config = RegistryConfig(endpoint=url, retry=retry, **tls)  # type: ignore[arg-type]
    t = RegistrySession("reg.test", url, config, None)
    try:
        if settings == "ca_file":
            assert (await t.request("GET", "/v2/r/blobs/x")).content == b"blob"
        else:
            with pytest.raises(TransportError):
                await t.request("GET", "/v2/r/blobs/x")
    finally:
        await t.aclose()
        reg.close()
        cdn.close()
    assert served == (1 if settings == "ca_file" else 0)
