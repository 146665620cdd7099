"""What a tool did, as seen by the registries: access-log requests and storage contents.

Both tools are measured the same way, from the outside:
- requests: the registries' own access logs (`RunningRegistry.requests_since`);
- bytes uploaded: every blob upload a registry completed is a `PUT ...?digest=<d>` answered
  201 (monolithic PUT, or the closing PUT after PATCHes); we sum the sizes of those digests'
  files in the destination storage. So a blob uploaded twice counts twice, a mount (POST
  `?mount=`, 201) counts zero, and manifest PUTs are counted separately, not as bytes.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.images import fetch_manifest_digest
from tests.support.registry import LoggedRequest, RunningRegistry

WRITES = frozenset({"PUT", "POST", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Traffic:
    src_requests: int
    dst_requests: int
    src_methods: dict[str, int]
    dst_methods: dict[str, int]
    dst_writes: int
    src_writes: int
    blob_uploads: int  # completed uploads (PUT ?digest= -> 201)
    blob_bytes_uploaded: int
    uploaded_digests: list[str]
    mounts: int  # POST ?mount= -> 201
    manifest_puts: int
    registry_cpu_s: float  # user+system CPU both registry processes spent meanwhile

    @property
    def requests(self) -> int:
        return self.src_requests + self.dst_requests


def blob_size(reg: RunningRegistry, digest: str) -> int:
    algo, _, hexpart = digest.partition(":")
    return (
        (reg.root / "docker/registry/v2/blobs" / algo / hexpart[:2] / hexpart / "data")
        .stat()
        .st_size
    )


def stored_blobs(root: Path) -> dict[str, int]:
    """digest -> size of every blob (manifests included) in a registry's storage."""
    base = root / "docker/registry/v2/blobs/sha256"
    if not base.exists():
        return {}
    return {f"sha256:{d.parent.name}": d.stat().st_size for d in base.glob("*/*/data")}


def upload_digest(req: LoggedRequest) -> str | None:
    if req.method != "PUT" or req.status != 201 or "/blobs/uploads/" not in req.path:
        return None
    values = parse_qs(urlsplit(req.path).query).get("digest")
    return values[0] if values else None


def registry_cpu_s(*regs: RunningRegistry) -> float:
    """CPU time used so far by the registries' main processes (from /proc/PID/stat).

    On a 2-core machine the registries compete with the tool for the same cores, so this
    tells how much of a tool's wall time was the registries' work."""
    total = 0.0
    for reg in regs:
        proc = reg.process.proc
        if proc is None:
            continue
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Window:
    """Marks both logs now; `close()` gives what happened since."""

    def __init__(self, src: RunningRegistry, dst: RunningRegistry) -> None:
        self.src, self.dst = src, dst
        self._src_mark, self._dst_mark = src.mark(), dst.mark()
        self._cpu = registry_cpu_s(src, dst)

    def close(self) -> Traffic:
        cpu = registry_cpu_s(self.src, self.dst) - self._cpu  # before our own log probes
        src_reqs = self.src.requests_since(self._src_mark)
        dst_reqs = self.dst.requests_since(self._dst_mark)
        digests = [d for d in map(upload_digest, dst_reqs) if d is not None]
        return Traffic(
            src_requests=len(src_reqs),
            dst_requests=len(dst_reqs),
            src_methods=dict(Counter(r.method for r in src_reqs)),
            dst_methods=dict(Counter(r.method for r in dst_reqs)),
            dst_writes=sum(r.method in WRITES for r in dst_reqs),
            src_writes=sum(r.method in WRITES for r in src_reqs),
            blob_uploads=len(digests),
            blob_bytes_uploaded=sum(blob_size(self.dst, d) for d in digests),
            uploaded_digests=digests,
            mounts=sum(
                r.method == "POST" and r.status == 201 and "mount=" in r.path for r in dst_reqs
            ),
            manifest_puts=sum(
                r.method == "PUT" and "/manifests/" in r.path and r.status == 201 for r in dst_reqs
            ),
            registry_cpu_s=cpu,
        )


def verify(
    dst: RunningRegistry,
    expected: dict[tuple[str, str], str],
    blobs: dict[str, int] | None = None,
) -> list[str]:
    """Problems found: each expected (dest repo, tag) must carry exactly the source digest,
    and every expected blob must be stored with its size. Empty list: a faithful copy."""
    problems: list[str] = []

    # One client for all threads: httpx.Client is thread-safe and pools connections.
    with httpx.Client(trust_env=False, timeout=30.0) as client:

        def check(key: tuple[str, str]) -> str | None:
            repo, tag = key
            got = fetch_manifest_digest(dst.url, repo, tag, client=client)
            if got != expected[key]:
                return f"{repo}:{tag}: destination has {got}, source has {expected[key]}"
            return None

        with ThreadPoolExecutor(8) as pool:
            problems += [p for p in pool.map(check, sorted(expected)) if p]
    if blobs:
        stored = stored_blobs(dst.root)
        for digest, size in sorted(blobs.items()):
            if stored.get(digest) != size:
                problems.append(f"blob {digest}: stored size {stored.get(digest)}, want {size}")
    return problems
