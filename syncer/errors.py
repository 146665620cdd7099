"""The one exception tree of syncer.

Every message is written for the person running the job: it names the registry,
the request in words and, where we know it, the fix. No message ever contains a
credential; URLs are passed through `redact_url` before they are stored.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic_core import PydanticCustomError

# Exit codes documented in docs/commands.md.
EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2


def redact_url(url: str) -> str:
    """Drop userinfo and query strings: signed CDN URLs carry credentials there."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


class SyncerError(Exception):
    """Base of everything syncer raises on purpose."""


class ConfigError(SyncerError):
    """Invalid sync.yaml, settings or command line. Nothing has been contacted."""

    def __init__(self, message: str, *, file: str | None = None, where: str | None = None) -> None:
        self.file = file
        self.where = where
        self.detail = message
        prefix = ":".join(p for p in (file, where) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class TlsFileError(ConfigError):
    """A CA bundle, client certificate or key named in the config cannot be loaded."""

    def __init__(self, key: str, path: object, why: str, expected: str) -> None:
        self.key = key
        self.reason = f"cannot load {path}: {why}; point it at {expected}"
        super().__init__(f"{key}: {self.reason}")


class InvalidReference(SyncerError, ValueError):
    """A string that is not a valid image reference."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid reference {text!r}: {reason}")


class CredentialsError(SyncerError):
    """Credentials could not be read (docker config, helper, password file)."""


class InsecureCredentials(SyncerError):
    """Refused to send credentials over plain HTTP."""


@dataclass(frozen=True)
class ErrorDetail:
    code: str
    message: str


class RegistryError(SyncerError):
    """A registry answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        url: str = "",
        errors: tuple[ErrorDetail, ...] = (),
    ) -> None:
        self.status = status
        self.method = method
        self.url = redact_url(url) if url else ""
        self.errors = errors
        self.detail = message
        super().__init__(self._render())

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(e.code for e in self.errors)

    def _render(self) -> str:
        where = f"{self.method} {self.url}".strip()
        status = f" -> {self.status}" if self.status is not None else ""
        codes = ""
        if self.errors:
            codes = " [" + "; ".join(f"{e.code}: {e.message}" for e in self.errors) + "]"
        head = f"{where}{status}: " if where else ""
        return f"{head}{self.detail}{codes}"


class AuthenticationError(RegistryError):
    """401 that survived one re-authentication, or a token server that refused."""


class PermissionDenied(RegistryError):
    """403 / DENIED: the credentials are valid but not allowed to do this."""


class NotFound(RegistryError):
    """404: MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN, ..."""


class RateLimited(RegistryError):
    """429 TOOMANYREQUESTS whose Retry-After exceeds what we are willing to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class UnsupportedError(RegistryError):
    """405 / UNSUPPORTED: e.g. deletes disabled, or an obsolete manifest schema."""


class TransportError(SyncerError):
    """Connection-level failure (refused, reset, timeout, TLS) after all retries."""


class ContentError(SyncerError):
    """Content from a registry that is not what it claims to be."""


class DigestMismatch(ContentError):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: digest mismatch, expected {expected}, got {actual}")


class SizeMismatch(ContentError):
    def __init__(self, what: str, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: size mismatch, expected {expected} bytes, got {actual}")


class ResponseTooLarge(ContentError):
    """A body read into memory went past its cap: refused while streaming, not after."""

    def __init__(self, what: str, limit: int) -> None:
        self.limit = limit
        super().__init__(f"{what}: the answer is larger than its {limit}-byte cap; refusing it")


class ManifestError(ContentError):
    """Malformed manifest, or one whose media type we cannot copy."""


class PlatformRequired(ConfigError):
    """A docker archive holds one platform per image (`docker load` takes no index): an
    index of several goes there only filtered to one. The tag fails (the run goes on with
    the others); `syncer copy`, whose one image it is, exits 2 as for a usage error."""

    RULE = "but a docker archive holds one platform per image"

    def __init__(self, name: str, platforms: list[str]) -> None:
        self.platforms = platforms
        held = "no platform images"
        if platforms:
            held = f"{len(platforms)} platforms ({', '.join(platforms)})"
        super().__init__(
            f"{name}: the source is an index of {held}, {self.RULE}; choose one with "
            "--platform OS/ARCH (in sync.yaml: platforms: [OS/ARCH])"
        )

    @classmethod
    def explains(cls, reason: str) -> bool:
        """Whether a report line is this error's (reports keep lines, not exceptions)."""
        return cls.RULE in reason


class NotInBundle(SyncerError):
    """A delta bundle left this blob out: it expects the target to hold it already."""

    def __init__(self, digest: str, bundle: str, since: list[str]) -> None:
        self.digest = digest
        self.bundle = bundle
        self.since = since
        earlier = ", ".join(since) or "an earlier bundle"
        super().__init__(
            f"blob {digest} is not in {bundle} (a delta since {earlier}): "
            "import the earlier bundle first"
        )


_DISK_FIXES = {
    errno.ENOSPC: "free some space there and run again",
    errno.EDQUOT: "free some space there (disk quota) and run again",
    errno.EROFS: "remount it read-write, or write somewhere else",
    errno.EACCES: "check its owner and permissions",
    errno.EPERM: "check its owner and permissions",
    errno.EISDIR: "it must be a file",
}
# Failures of the whole file system: every later write to it would fail the same way.
DISK_WIDE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class DiskError(SyncerError):
    """A layout's or bundle's file could not be read or written: disk full, read-only
    file system, permissions. The environment, not the command line: exit 1. Writes are
    atomic, so what was on disk before is still there, whole."""

    def __init__(self, path: object, exc: OSError, *, prefix: str = "") -> None:
        self.path = str(path)
        self.errno = exc.errno
        self.cause = exc.strerror or str(exc)
        fix = _DISK_FIXES.get(exc.errno or 0)
        super().__init__(f"{prefix}{path}: {self.cause}{'; ' + fix if fix else ''}")

    @property
    def disk_wide(self) -> bool:
        return self.errno in DISK_WIDE


class Deferred(SyncerError):
    """Work not started because a registry's rate-limit budget ran low."""


class Rejected(SyncerError):
    """A tag refused by the `verify:` policy. `reason` is one of `syncer.verify.Reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class NeedsForce(SyncerError):
    """A one-off command (`tag`, `delete`) refused to overwrite or remove more than was
    named; the message says what is there now and that --force allows it."""


def rule(message: str, at: str | int | None = None) -> PydanticCustomError:
    """A validation error whose location is refined by `at` (a field or index).

    Model- and list-level validators can only fail at their own location; `at`
    lets the message point at the exact key line. The template is a lone
    placeholder so braces in `message` (regexes, `${VAR}`) are never reformatted.
    """
    ctx: dict[str, Any] = {"text": message}
    if at is not None:
        ctx["at"] = at
    return PydanticCustomError("syncer", "{text}", ctx)
