"""One request to a registry, described once by its caller: a frozen value that every step
of the session (retries, re-authentication, rate budget, redirects) reads and none changes.

Like regclient's `reghttp.Req`: what to send, to which scopes, and which answers count as
success; how it went (attempts, 401s answered) is the session's business, not the request's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field

from syncer.errors import redact_url
from syncer.registry.transport.bodies import DEFAULT_MAX_BODY

# Statuses that a later try may answer differently.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A manifest PUT refused for a blob or child pushed moments before: distribution's filesystem
# driver rewrites a link file in place (truncate, then write), so a concurrent writer of the
# same link (another tag of this run, another shard) can make it read as missing for an
# instant (distribution/distribution#4489). The next try finds it.
RACY_MANIFEST_CODES = frozenset({"MANIFEST_BLOB_UNKNOWN"})


class ReplayableBody(AsyncIterable[bytes]):
    """A streamed body each iteration of which yields the same bytes from the start: the
    session may send it again (after a 401). Any other stream is sent once at most."""


Body = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True)
class RegistryRequest:
    """One logical request: the session may send it several times, always as described."""

    method: str
    url: str  # absolute: the registry's own URL, or a host its Location/Link named
    scopes: frozenset[str] = frozenset()
    headers: Mapping[str, str] = field(default_factory=dict)
    content: Body = None
    ok: tuple[int, ...] = (200,)
    # False for a request whose replay is not safe (a PATCH the server may have partly
    # stored): its caller resumes from the server's state instead.
    retry: bool = True
    # Read the answer into memory, at most this much; None: the caller streams it.
    max_bytes: int | None = DEFAULT_MAX_BODY
    # Error codes of a 4xx answer that a later try may answer differently.
    retry_codes: frozenset[str] = frozenset()

    @property
    def what(self) -> str:
        """The request as errors and logs name it, without credentials in the URL."""
        return f"{self.method} {redact_url(self.url)}"

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again from its start."""
        return self.content is None or isinstance(self.content, bytes | ReplayableBody)

    @property
    def restartable(self) -> bool:
        """Whether a failed try may be repeated whole."""
        return self.retry and self.replayable
