"""Network failures name their host, their cause and how hard syncer tried.

One real fault (a closed loopback port) and injected ones (httpx.MockTransport) for
what cannot happen on loopback, such as a name that does not resolve.
"""

from __future__ import annotations

import re
import socket
import ssl

import httpx
import pytest
from pydantic import SecretStr

from syncer.errors import TransportError
from syncer.registry.credentials import Credential
from syncer.registry.options import RegistryConfig, RetryConfig, TlsMode
from syncer.registry.transport.responses import attempts_note, network_failure
from syncer.registry.transport.session import RegistrySession

CRED = Credential(username="alice", password=SecretStr("s3cret-pw"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting to it is refused


class _Counting(httpx.AsyncHTTPTransport):
    """The real network, counting the connections tried."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await super().handle_async_request(request)


@pytest.mark.parametrize("network", ["aiohttp", "httpx"])
async def test_a_closed_port_is_connection_refused_with_attempts_and_time(network: str) -> None:
    port = _closed_port()
    config = RegistryConfig(
        tls=TlsMode.DISABLED, retry=RetryConfig(attempts=3, backoff_s=0.2, max_backoff_s=1.0)
    )
    # syncer's own transport (aiohttp), and httpx's, which counts the connections tried.
    counting = _Counting() if network == "httpx" else None
    session = RegistrySession(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", config, CRED, http_transport=counting
    )
    try:
        with pytest.raises(TransportError) as caught:
            await session.request("GET", "/v2/probe/tags/list")
    finally:
        await session.aclose()
    message = str(caught.value)
    got = re.fullmatch(
        rf"cannot reach 127\.0\.0\.1:{port}: connection refused "
        r"\(3 attempts over (?P<s>\d+\.\d) s\)",
        message,
    )
    assert got is not None, message
    if counting is not None:
        assert counting.sent == 3
    # Two pauses: 0.1-0.2 s, then 0.2-0.4 s (backoff with jitter).
    assert 0.2 <= float(got["s"]) <= 2.0
    assert "s3cret" not in message and "alice" not in message


async def test_an_unresolvable_name_says_name_resolution_failed() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        # What httpcore raises when getaddrinfo fails, with the resolver's error chained.
        cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=req) from cause

    config = RegistryConfig(retry=RetryConfig(backoff_s=0.0, max_backoff_s=0.0))
    session = RegistrySession(
        "docker.io",
        "https://registry-1.docker.io",
        config,
        CRED,
        http_transport=httpx.MockTransport(handler),
    )
    try:
        with pytest.raises(TransportError) as caught:
            await session.request("GET", "/v2/library/alpine/tags/list")
    finally:
        await session.aclose()
    assert str(caught.value) == (
        "cannot reach registry-1.docker.io: name resolution failed (5 attempts over 0.0 s)"
    )
    assert len(seen) == config.retry.attempts == 5


def _request() -> httpx.Request:
    return httpx.Request("GET", "https://user:pw@reg.test:5000/v2/x/manifests/1")


def _chained(exc: httpx.TransportError, cause: BaseException) -> httpx.TransportError:
    exc.__cause__ = cause
    return exc


def _cert_error() -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, "certificate verify failed")
    err.verify_message = "self-signed certificate"
    return err


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            httpx.ConnectError("[Errno 111] Connection refused", request=_request()),
            "cannot reach reg.test:5000: connection refused",
        ),
        (
            httpx.ConnectTimeout("", request=_request()),
            "cannot reach reg.test:5000: timed out",
        ),
        (
            httpx.ReadTimeout("", request=_request()),
            "connection to reg.test:5000 failed: timed out",
        ),
        (
            _chained(httpx.ReadError("", request=_request()), ConnectionResetError(104, "x")),
            "connection to reg.test:5000 failed: connection reset",
        ),
        (
            httpx.RemoteProtocolError("Server disconnected", request=_request()),
            "connection to reg.test:5000 failed: the server closed the connection unexpectedly",
        ),
        (
            _chained(httpx.ConnectError("handshake", request=_request()), _cert_error()),
            "cannot reach reg.test:5000: TLS handshake failed: certificate verify failed: "
            "self-signed certificate",
        ),
        (
            # aiohttp's errors reach us as text only (aiohttp_transport.py).
            httpx.ConnectError(
                "ClientConnectorError: Cannot connect to host reg.test:5000 ssl:default "
                "[Temporary failure in name resolution]",
                request=_request(),
            ),
            "cannot reach reg.test:5000: name resolution failed",
        ),
        (
            httpx.ConnectError("something new", request=_request()),
            "cannot reach reg.test:5000: network error (ConnectError)",
        ),
    ],
)
def test_causes_are_named_without_credentials(exc: httpx.TransportError, message: str) -> None:
    assert network_failure(exc, "https://other.test/") == message


def test_attempts_note() -> None:
    assert attempts_note(1, 0.04) == "(1 attempt over 0.0 s)"
    assert attempts_note(5, 6.44) == "(5 attempts over 6.4 s)"
    assert attempts_note(5, 61.7) == "(5 attempts over 62 s)"
