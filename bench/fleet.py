"""The benchmark's deterministic image fleets and how they get into a registry.

Built with the test suite's image helpers, so every layer is a real gzipped tar and every
digest is reproducible from the seeds below. Unlike `tests.support.fleet` (small, highly
compressible app layers), the app layers here are seeded random bytes, so the bytes on the
wire are what the sizes say.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.support.fleet import Fleet
from tests.support.images import (
    Blob,
    Format,
    Image,
    Index,
    make_image,
    make_index,
    push,
    push_blob,
    push_manifest,
    random_layer,
)

MiB = 1 << 20
ARCHES = ("amd64", "arm64")
Layer = tuple[Blob, str]  # (blob, diff_id), as make_image wants it


@dataclass(frozen=True)
class FleetSpec:
    repos: int
    tags: int
    prefix: str = "bench"
    # Three shared bases of two layers each; sizes chosen so bases are ~10% of the fleet.
    base_sizes: tuple[int, int] = (3 * MiB, 3 * MiB // 2)
    app_min: int = MiB // 2
    app_max: int = 3 * MiB // 2
    bases: int = 3

    def repo(self, r: int) -> str:
        return f"{self.prefix}/app{r:02d}"

    @staticmethod
    def tag(t: int) -> str:
        return f"1.{t}"


@dataclass
class BenchFleet:
    """A `Fleet` plus what is needed to rebuild tags (the incremental scenario)."""

    spec: FleetSpec
    fleet: Fleet
    bases: list[list[Layer]]
    gens: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def tag_count(self) -> int:
        return self.fleet.tag_count

    def digests(self) -> dict[tuple[str, str], str]:
        return {(r, t): item.digest for r, t, item in self.fleet.items()}

    def blob_digests(self) -> dict[str, int]:
        return {b.digest: b.size for _, _, item in self.fleet.items() for b in item.blobs()}


def _app_layer(r: int, t: int, a: int, gen: int, spec: FleetSpec) -> Layer:
    # The size depends on (repo, tag, arch) only, so a rebuilt tag moves as many bytes as
    # the original did and every generation of the fleet is the same size.
    size = random.Random(f"size-{r}-{t}-{a}").randint(spec.app_min, spec.app_max)
    seed = ((gen * 1000 + r) * 1000 + t) * 10 + a
    return random_layer(size, seed, path=f"app/{r}/{t}/{ARCHES[a]}-gen{gen}.bin")


def build_tag(spec: FleetSpec, bases: list[list[Layer]], r: int, t: int, gen: int) -> Image | Index:
    """Formats alternate docker/OCI; every third tag is a two-platform index."""
    fmt: Format = "oci" if (r + t) % 2 else "docker"
    base = bases[r % len(bases)]
    if t % 3 == 2:
        children = [
            make_image([*base, _app_layer(r, t, a, gen, spec)], fmt=fmt, arch=arch)
            for a, arch in enumerate(ARCHES)
        ]
        return make_index(children, fmt=fmt)
    return make_image([*base, _app_layer(r, t, 0, gen, spec)], fmt=fmt)


def build_fleet(spec: FleetSpec) -> BenchFleet:
    bases = [
        [
            random_layer(size, 900_000 + 10 * b + i, path=f"base{b}/layer{i}.bin")
            for i, size in enumerate(spec.base_sizes)
        ]
        for b in range(spec.bases)
    ]
    bf = BenchFleet(spec, Fleet(), bases)
    for r in range(spec.repos):
        bf.fleet.repos[spec.repo(r)] = {
            spec.tag(t): build_tag(spec, bases, r, t, 0) for t in range(spec.tags)
        }
        bf.gens.update({(r, t): 0 for t in range(spec.tags)})
    return bf


@dataclass(frozen=True)
class Rebuild:
    """What one incremental round changed, and the blobs a destination is missing after it."""

    items: list[tuple[str, str, Image | Index]]
    new_layers: dict[str, int]  # digest -> size
    new_configs: dict[str, int]

    @property
    def new_blob_bytes(self) -> int:
        return sum(self.new_layers.values()) + sum(self.new_configs.values())


def rebuild(bf: BenchFleet, fraction: float, round_no: int) -> Rebuild:
    """Rebuild `fraction` of the tags with a new top layer (spread over all repos)."""
    keys = sorted(bf.gens)
    count = max(1, round(len(keys) * fraction))
    step = len(keys) / count
    # A different slice each round, so rounds do not keep rebuilding the same tags.
    chosen = [keys[(int(i * step) + round_no) % len(keys)] for i in range(count)]
    before = bf.blob_digests()
    items: list[tuple[str, str, Image | Index]] = []
    layers: dict[str, int] = {}
    configs: dict[str, int] = {}
    for r, t in chosen:
        bf.gens[(r, t)] += 1
        item = build_tag(bf.spec, bf.bases, r, t, bf.gens[(r, t)])
        repo, tag = bf.spec.repo(r), bf.spec.tag(t)
        bf.fleet.repos[repo][tag] = item
        items.append((repo, tag, item))
        for image in item.children if isinstance(item, Index) else (item,):
            if image.config.digest not in before:
                configs[image.config.digest] = image.config.size
            layers.update({b.digest: b.size for b in image.layers if b.digest not in before})
    return Rebuild(items, layers, configs)


def seed_items(
    base_url: str, items: Iterable[tuple[str, str, Image | Index]], workers: int = 4
) -> None:
    """Push items, one repository per worker: within a repo the shared base layers go up
    once (push_blob HEADs first), and no two workers race on one repository."""
    by_repo: dict[str, list[tuple[str, Image | Index]]] = defaultdict(list)
    for repo, tag, item in items:
        by_repo[repo].append((tag, item))

    def one_repo(repo: str) -> None:
        with httpx.Client(trust_env=False, timeout=120.0) as client:
            for tag, item in by_repo[repo]:
                push(base_url, repo, item, tag, client=client)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_repo, sorted(by_repo)))


# --- the scale fleet: many tags, one tiny image --------------------------------------------


def tiny_image() -> Image:
    layer = random_layer(256, 424242, path="tiny.bin")
    return make_image([layer], fmt="oci", labels={"bench": "scale"})


def scale_names(repos: int, tags: int, prefix: str) -> dict[str, list[str]]:
    return {f"{prefix}/app{r:02d}": [f"t{t:03d}" for t in range(tags)] for r in range(repos)}


def seed_scale(base_url: str, names: dict[str, list[str]], image: Image, workers: int = 8) -> None:
    """Blobs once per repo, then one manifest PUT per tag (all tags share the image)."""

    def one_repo(repo: str) -> None:
        with httpx.Client(trust_env=False, timeout=60.0) as client:
            for blob in image.blobs():
                push_blob(client, base_url, repo, blob)
            for tag in names[repo]:
                push_manifest(client, base_url, repo, image.manifest, image.media_type, tag)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_repo, sorted(names)))
