"""The 1 GiB layer: generated from a seeded PRNG while it is uploaded, never held in memory.

    .venv/bin/python -m bench.bigblob [--runs 3] [--json PATH]

runs the bigblob scenario alone (`bench.run --only bigblob`): syncer and skopeo copy the
layer side by side, each into a fresh destination, and the table gives wall, the ratio,
destination requests, the registries' CPU and peak RSS. `--self-test` checks the generator.

The layer is a real gzip stream of a real tar holding one file of seeded random bytes.
Deflate level 0 (stored blocks): random bytes do not compress anyway, and level 0 keeps the
generator at memory speed so the bench spends its time in the tools, not in zlib.
"""

from __future__ import annotations

import hashlib
import io
import random
import sys
import tarfile
import zlib
from collections.abc import Iterator
from urllib.parse import urljoin

import httpx

from tests.support.images import DOCKER_LAYER, Blob, Image, make_image, push_blob, push_manifest

CHUNK = 16 << 20


def _tar_stream(size: int, seed: int) -> Iterator[bytes]:
    info = tarfile.TarInfo("data/big.bin")
    info.size, info.mtime, info.mode = size, 0, 0o644
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    rng = random.Random(seed)
    left = size
    while left:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n
    # Pad the member to 512 bytes, then the two zero blocks that end a tar archive.
    yield bytes(-size % 512) + bytes(1024)


class _Layer:
    """Iterates the gzip bytes of the layer and records both digests on the way."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.compressed = hashlib.sha256()
        self.uncompressed = hashlib.sha256()
        self.length = 0

    def __iter__(self) -> Iterator[bytes]:
        z = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip framing, mtime 0
        pending = bytearray()
        for raw in _tar_stream(self.size, self.seed):
            self.uncompressed.update(raw)
            pending += z.compress(raw)
            while len(pending) >= CHUNK:
                yield self._out(bytes(pending[:CHUNK]))
                del pending[:CHUNK]
        pending += z.flush()
        if pending:
            yield self._out(bytes(pending))

    def _out(self, data: bytes) -> bytes:
        self.compressed.update(data)
        self.length += len(data)
        return data


def push_big_image(base_url: str, repo: str, tag: str, size: int, seed: int) -> Image:
    """Chunked upload (POST, PATCH per 16 MiB, PUT ?digest=), then config and manifest."""
    layer = _Layer(size, seed)
    base = base_url.rstrip("/")
    with httpx.Client(trust_env=False, timeout=300.0) as client:
        start = client.post(f"{base}/v2/{repo}/blobs/uploads/")
        start.raise_for_status()
        location = urljoin(f"{base}/", start.headers["Location"])
        for chunk in layer:
            resp = client.patch(
                location,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{layer.length - len(chunk)}-{layer.length - 1}",
                },
            )
            if resp.status_code != 202:
                raise RuntimeError(f"PATCH {location} -> {resp.status_code}: {resp.text[:300]}")
            location = urljoin(f"{base}/", resp.headers["Location"])
        digest = "sha256:" + layer.compressed.hexdigest()
        done = client.put(str(httpx.URL(location).copy_add_param("digest", digest)))
        if done.status_code != 201:
            raise RuntimeError(f"finishing the big upload -> {done.status_code}: {done.text}")
        # make_image only reads a layer's descriptor, so a data-less stand-in Blob is enough.
        stand_in = Blob(b"", DOCKER_LAYER, digest, layer.length)
        image = make_image([(stand_in, "sha256:" + layer.uncompressed.hexdigest())], fmt="docker")
        push_blob(client, base, repo, image.config)
        push_manifest(client, base, repo, image.manifest, image.media_type, tag)
    return image


def _self_test() -> None:
    """Tiny check that the generated stream is a valid gzip'd tar with the right digests."""
    layer = _Layer(3000, 1)
    data = b"".join(layer)
    raw = zlib.decompress(data, 31)
    assert hashlib.sha256(raw).hexdigest() == layer.uncompressed.hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.getmember("data/big.bin")
        body = tar.extractfile(member)
        assert body is not None and body.read() == random.Random(1).randbytes(3000)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--self-test"]:
        _self_test()
        print("ok")
        return 0
    from bench.run import main as run_main  # bench.run imports this module

    return run_main(["--only", "bigblob", *args])


if __name__ == "__main__":
    sys.exit(main())
