"""A small, deterministic fleet of images: shared bases, docker + OCI + multi-arch."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.http import http_client
from tests.support.images import (
    Image,
    Index,
    Pushed,
    make_image,
    make_index,
    make_layer,
    push,
)


def _base(n: int) -> list[tuple[object, str]]:
    return [
        make_layer({"etc/os-release": f"ID=base{n}\n".encode()}),
        make_layer({f"usr/lib/base{n}.so": bytes([n]) * 4096}),
    ]


@dataclass
class Fleet:
    # repo -> tag -> image or index
    repos: dict[str, dict[str, Image | Index]] = field(default_factory=dict)

    def items(self) -> list[tuple[str, str, Image | Index]]:
        return [(r, t, i) for r, tags in self.repos.items() for t, i in tags.items()]

    @property
    def tag_count(self) -> int:
        return sum(len(t) for t in self.repos.values())

    def blob_bytes(self) -> int:
        """Bytes of all distinct blobs in the fleet (what a full copy must transfer)."""
        seen: dict[str, int] = {}
        for _, _, item in self.items():
            for b in item.blobs():
                seen[b.digest] = b.size
        return sum(seen.values())

    def push(self, base_url: str) -> None:
        """Every tag, each shared base layer handled once: into the storage of a plain
        registry of ours (images.push), else over one connection."""
        pushed: Pushed = set()
        with http_client(timeout=60.0) as client:
            for repo, tag, item in self.items():
                push(base_url, repo, item, tag, client=client, pushed=pushed)


def app_image(
    repo_i: int,
    tag_i: int,
    gen: int = 0,
    *,
    fmt: str = "docker",
    arch: str = "amd64",
    app_size: int = 2048,
) -> Image:
    base = _base(repo_i % 3)
    content = f"repo{repo_i} tag{tag_i} gen{gen} {arch}\n".encode()
    app = make_layer({f"app/{repo_i}/{tag_i}.bin": content * (app_size // len(content) + 1)})
    return make_image([*base, app], fmt=fmt, arch=arch)  # type: ignore[arg-type, list-item]


def tag_item(repo_i: int, tag_i: int, gen: int = 0, *, app_size: int = 2048) -> Image | Index:
    """Every third tag is multi-arch; formats alternate between docker and OCI."""
    fmt = "oci" if (repo_i + tag_i) % 2 else "docker"
    if tag_i % 3 == 2:
        children = [
            app_image(repo_i, tag_i, gen, fmt=fmt, arch=a, app_size=app_size)
            for a in ("amd64", "arm64")
        ]
        return make_index(children, fmt=fmt)  # type: ignore[arg-type]
    return app_image(repo_i, tag_i, gen, fmt=fmt, app_size=app_size)


def make_fleet(repos: int, tags: int, *, prefix: str = "fleet", app_size: int = 2048) -> Fleet:
    fleet = Fleet()
    for r in range(repos):
        fleet.repos[f"{prefix}/app{r}"] = {
            f"1.{t}": tag_item(r, t, app_size=app_size) for t in range(tags)
        }
    return fleet


def assert_no_broken_tags(fleet: Fleet, base_url: str, prefix: str) -> int:
    """Every fleet tag at the destination is either absent or complete; returns how many exist."""

    from tests.support.images import fetch_manifest_digest

    present = 0
    with http_client() as c:
        for repo, tag, item in fleet.items():
            got = fetch_manifest_digest(base_url, prefix + repo, tag)
            if got is None:
                continue
            present += 1
            assert got == item.digest, (repo, tag)
            for blob in item.blobs():
                r = c.head(f"{base_url}/v2/{prefix}{repo}/blobs/{blob.digest}")
                assert r.status_code == 200, (repo, tag, blob.digest)
    return present


def wait_for_requests(
    registry: object, method: str, fragment: str, count: int = 1, timeout: float = 30
) -> None:
    """Block until `registry` served `count` requests like `METHOD ...fragment...`."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reqs = registry.requests()  # type: ignore[attr-defined]
        if sum(1 for r in reqs if r.method == method and fragment in r.path) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {count} x {method} *{fragment}* within {timeout}s")
