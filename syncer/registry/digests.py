"""Content digests: which algorithms syncer verifies, and the one way to compute them.

A digest names its algorithm (`sha512:<hex>`); content is always checked under that
algorithm, never under sha256 by habit. Algorithms outside `ALGORITHMS` are refused
rather than trusted unchecked (OCI registers sha256 and sha512; distribution also
knows sha384). `hashlib` offers more (md5, sha1), but a weak hash proves nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Protocol

from syncer.errors import DigestMismatch, ManifestError, SizeMismatch

CANONICAL = "sha256"  # what registries compute for content pushed without a digest
ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})
# Pieces at least this big are hashed on a worker thread (hashlib lets go of the GIL for
# them), overlapping the event loop's socket work; smaller ones cost less than the handoff.
THREADED_HASH = 128 * 1024


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def algorithm_problem(digest: str) -> str | None:
    """Why content under `digest` cannot be verified, or None when it can."""
    algorithm = digest.partition(":")[0]
    if algorithm in ALGORITHMS:
        return None
    return (
        f"digest algorithm {algorithm!r} is not supported; "
        f"syncer verifies {', '.join(sorted(ALGORITHMS))}"
    )


def hasher_for(digest: str, what: str) -> Hasher:
    """A fresh hasher for the algorithm `digest` names (ManifestError when unsupported)."""
    if (problem := algorithm_problem(digest)) is not None:
        raise ManifestError(f"{what}: {problem}")
    return hashlib.new(digest.partition(":")[0])


def digest_of(data: bytes, algorithm: str = CANONICAL) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(what: str, data: bytes, digest: str) -> None:
    """Check `data` against `digest`, under the algorithm `digest` names."""
    h = hasher_for(digest, what)
    h.update(data)
    actual = f"{digest.partition(':')[0]}:{h.hexdigest()}"
    if actual != digest:
        raise DigestMismatch(what, digest, actual)


async def verified(
    what: str, digest: str, size: int, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """Pass `chunks` on, withholding the last one until size and digest check out: a
    consumer that forwards chunks to an upload (or a file) never completes a corrupt one.

    A big piece is hashed on a worker thread while it travels on and the next one is
    read: the hash is most of a blob copy's CPU, and the event loop's thread need not
    pay it. One piece at a time is in the hasher, so updates stay in order."""
    hasher = hasher_for(digest, what)
    loop = asyncio.get_running_loop()
    hashing: asyncio.Future[None] | None = None
    pending: bytes | None = None
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > size:
                raise SizeMismatch(what, size, total)
            if hashing is not None:
                await hashing
                hashing = None
            if len(chunk) >= THREADED_HASH:
                hashing = loop.run_in_executor(None, hasher.update, chunk)
            else:
                hasher.update(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if hashing is not None:
            await hashing
            hashing = None
    finally:
        if hashing is not None:
            # Abandoned mid-piece (the consumer stopped): the worker finishes on its own;
            # only its outcome is not wanted any more.
            hashing.cancel()
    if total != size:
        raise SizeMismatch(what, size, total)
    actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise DigestMismatch(what, digest, actual)
    if pending is not None:
        yield pending
