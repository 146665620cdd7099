"""Who may post: each sender kind proves itself as that sender can (constant-time compares)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from syncer.config.events import SenderKind

__all__ = ["HMAC_HEADER", "PATH_SECRET_KINDS", "authentic", "needs_body"]

HMAC_HEADER = "X-Hub-Signature-256"
# Senders that can set no header and sign nothing: the secret is the last path segment.
PATH_SECRET_KINDS = frozenset({SenderKind.DOCKERHUB, SenderKind.QUAY})


def needs_body(kind: SenderKind) -> bool:
    """Only a signature needs the body; every other kind is judged before it is read."""
    return kind is SenderKind.GHCR


def authentic(
    kind: SenderKind,
    secret: bytes,
    headers: Mapping[str, str],
    path_secret: str | None,
    body: bytes = b"",
) -> bool:
    if kind is SenderKind.GHCR:
        sent = headers.get(HMAC_HEADER, "")
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(sent.encode(), want.encode())
    if kind in PATH_SECRET_KINDS:
        return path_secret is not None and hmac.compare_digest(path_secret.encode(), secret)
    # distribution's `headers:` and Harbor's Auth Header: a bearer token.
    sent = headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), b"Bearer " + secret)
