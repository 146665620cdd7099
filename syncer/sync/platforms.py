"""Platform selection (`platforms:` in sync.yaml): filter indexes, check single images.

With `platforms: all` an index is copied byte for byte. With a list, we push a *new*
index holding only the matching children, so its digest differs from the source's.
To keep "up to date" decidable from two HEADs plus one cheap destination GET, the
new index records where it came from in index-level annotations, and the
transformation is deterministic: same source bytes and same platform list give
byte-identical output (and therefore the same digest) on every run.

Spec matching follows containerd's normalisation: aliases (`aarch64`, `x86_64`, ...)
are resolved and default variants filled in (`arm64` -> v8, `amd64` -> v1,
`arm` -> v7), so `linux/arm64/v8` matches an entry that omits the variant. A spec
without a variant accepts every variant.

The pure rules come first; `select_platforms` and `holds_filtered_copy` at the end are the
two places that read from registries (a config blob, a destination index).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from syncer.errors import ManifestError
from syncer.registry.client import FetchedManifest
from syncer.registry.digests import digest_of, verify_digest
from syncer.registry.oci import (
    INDEX_TYPES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
)
from syncer.registry.reference import Reference
from syncer.store import Store

SOURCE_DIGEST_ANNOTATION = "io.syncer.source.digest"
PLATFORMS_ANNOTATION = "io.syncer.platforms"
# Present (value "kept") only when attestations were asked for, so switching the
# option changes the output and the next run notices.
ATTESTATIONS_ANNOTATION = "io.syncer.attestations"

# BuildKit lists attestation manifests as index entries with platform unknown/unknown
# and these annotations; they describe another entry of the same index.
_REFERENCE_TYPE = "vnd.docker.reference.type"
_REFERENCE_DIGEST = "vnd.docker.reference.digest"

Platforms = Literal["all"] | Sequence[str]

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
}
# containerd treats these variants as what the bare architecture means.
_DEFAULT_VARIANT = {"amd64": "v1", "arm64": "v8", "arm": "v7"}
# Debian's ABI names carry the variant in the architecture name.
_ARCH_WITH_VARIANT = {"armhf": ("arm", "v7"), "armel": ("arm", "v6")}


@dataclass(frozen=True)
class FilteredIndex:
    data: bytes  # the new index, exactly the bytes to PUT
    media_type: str  # same as the source index
    digest: str  # sha256 of `data`
    source_digest: str
    kept: tuple[Descriptor, ...]  # the children to copy, in source order


def normalize(os: str, arch: str, variant: str | None) -> tuple[str, str, str | None]:
    """Canonical (os, arch, variant); a None variant stays None unless the arch has a default."""
    os, arch = os.lower(), arch.lower()
    var = variant.lower() if variant else None
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch in _ARCH_WITH_VARIANT:
        arch, var = _ARCH_WITH_VARIANT[arch]
    if arch == "386":
        var = None  # containerd ignores 386 variants
    if var is not None:
        if var.isdigit():
            var = "v" + var  # arm/7, arm64/8
        elif var.startswith("v") and var.endswith(".0"):
            var = var[:-2]  # arm64/v8.0
    return os, arch, var or _DEFAULT_VARIANT.get(arch)


def _parse_spec(spec: str) -> tuple[str, str, str | None]:
    """(os, arch, variant or None); None means "any variant", so it is not defaulted."""
    parts = spec.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {spec!r}: expected os/arch[/variant]")
    os, arch, var = normalize(parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    explicit = len(parts) == 3 or parts[1].lower() in _ARCH_WITH_VARIANT
    return os, arch, var if explicit else None


def spec_matches(spec: str, os: str, arch: str, variant: str | None) -> bool:
    want = _parse_spec(spec)
    have = normalize(os, arch, variant)
    return want[:2] == have[:2] and (want[2] is None or want[2] == have[2])


def _specs(platforms: Sequence[str]) -> tuple[str, ...]:
    # A bare string is a Sequence[str] too; iterating it would give characters.
    specs = (platforms,) if isinstance(platforms, str) else tuple(platforms)
    if not specs:
        raise ValueError("platforms is empty: nothing would be copied")
    return specs


def platforms_annotation(platforms: Sequence[str]) -> str:
    """The `io.syncer.platforms` value: canonical, sorted, deduplicated.

    Canonical so that reordering sync.yaml or writing `aarch64` for `arm64` does
    not change the output digest and force a pointless re-push.
    """
    out = set()
    for spec in _specs(platforms):
        os, arch, var = _parse_spec(spec)
        out.add(f"{os}/{arch}/{var}" if var else f"{os}/{arch}")
    return ",".join(sorted(out))


def _is_attestation(desc: Descriptor) -> bool:
    return _REFERENCE_TYPE in (desc.annotations or {})


def filter_index(
    data: bytes,
    media_type: str,
    source_digest: str,
    platforms: Platforms,
    *,
    keep_attestations: bool = False,
) -> FilteredIndex | None:
    """The index to push for `platforms`, or None when the source is copied unchanged.

    Children without a platform (nested indexes, artifacts) never match a spec.
    Attestations are dropped unless `keep_attestations`; then those describing a
    kept child are kept too (never those of dropped children: they would point at
    images the destination does not have).
    """
    if platforms == "all":
        return None
    specs = _specs(platforms)
    what = f"index {source_digest}"
    # The annotation we write must tell the truth: a caller passing the wrong digest
    # would make every later up-to-date check lie.
    verify_digest(what, data, source_digest)
    parsed = parse_manifest(data, media_type, what=what)
    if not isinstance(parsed, ImageIndex):
        raise ManifestError(f"{what}: is an image, not an index; platforms only filter indexes")
    raw: dict[str, Any] = json.loads(data)  # parse_manifest proved it is a JSON object

    def wanted(desc: Descriptor) -> bool:
        p = desc.platform
        return (
            p is not None
            and not _is_attestation(desc)
            and any(spec_matches(s, p.os, p.architecture, p.variant) for s in specs)
        )

    keep = [i for i, d in enumerate(parsed.manifests) if wanted(d)]
    if not keep:
        have = dict.fromkeys(
            str(d.platform) for d in parsed.manifests if d.platform and not _is_attestation(d)
        )
        listed = ", ".join(have) if have else "no platform entries"
        raise ManifestError(f"none of {', '.join(specs)} found; the index has {listed}")
    if keep_attestations:
        kept_digests = {parsed.manifests[i].digest for i in keep}
        keep += [
            i
            for i, d in enumerate(parsed.manifests)
            if _is_attestation(d) and (d.annotations or {}).get(_REFERENCE_DIGEST) in kept_digests
        ]
        keep.sort()  # source order, whatever order we found them in

    # Rebuild from the raw dict, not the model: key order and unknown fields survive.
    raw["manifests"] = [raw["manifests"][i] for i in keep]
    annotations = dict(raw.get("annotations") or {})
    annotations[SOURCE_DIGEST_ANNOTATION] = source_digest
    annotations[PLATFORMS_ANNOTATION] = platforms_annotation(specs)
    if keep_attestations:
        annotations[ATTESTATIONS_ANNOTATION] = "kept"
    raw["annotations"] = annotations
    # Compact, no sorting, UTF-8: a pure function of the input, hence deterministic.
    out = json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
    return FilteredIndex(
        data=out,
        media_type=media_type,
        digest=digest_of(out),
        source_digest=source_digest,
        kept=tuple(parsed.manifests[i] for i in keep),
    )


def _annotations(index_bytes: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(index_bytes)
    except (ValueError, UnicodeDecodeError):
        return {}
    ann = raw.get("annotations") if isinstance(raw, dict) else None
    return ann if isinstance(ann, dict) else {}


def expected_source_digest(dest_index_bytes: bytes) -> str | None:
    """The source digest a filtered index was made from; None if it is not one of ours."""
    value = _annotations(dest_index_bytes).get(SOURCE_DIGEST_ANNOTATION)
    return value if isinstance(value, str) else None


def is_filtered_copy_of(
    dest_index_bytes: bytes,
    source_digest: str,
    platforms: Platforms,
    *,
    keep_attestations: bool = False,
) -> bool:
    """True when the destination index is what `filter_index` would make today."""
    if platforms == "all":
        return False  # with `all` the destination must hold the source bytes themselves
    ann = _annotations(dest_index_bytes)
    return (
        ann.get(SOURCE_DIGEST_ANNOTATION) == source_digest
        and ann.get(PLATFORMS_ANNOTATION) == platforms_annotation(platforms)
        and (ann.get(ATTESTATIONS_ANNOTATION) == "kept") == keep_attestations
    )


def image_matches(config_bytes: bytes, platforms: Platforms) -> tuple[bool, str]:
    """Whether a single-platform image (its config blob) is wanted; else the reason why not."""
    if platforms == "all":
        return True, ""
    specs = _specs(platforms)
    try:
        config = json.loads(config_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"image config: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ManifestError("image config: expected a JSON object")
    os, arch = config.get("os"), config.get("architecture")
    variant = config.get("variant")
    wanted = f"[{', '.join(specs)}]"
    if not isinstance(os, str) or not isinstance(arch, str) or not os or not arch:
        # Artifacts (helm charts, signatures) name no platform: we cannot say it matches.
        return False, f"image config names no os/architecture, not in platforms {wanted}"
    var = variant if isinstance(variant, str) and variant else None
    if any(spec_matches(s, os, arch, var) for s in specs):
        return True, ""
    shown = f"{os}/{arch}/{var}" if var else f"{os}/{arch}"
    return False, f"image is {shown}, not in platforms {wanted}"


# An image config is a few KiB; refuse to hold anything much larger in memory.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


async def holds_filtered_copy(
    client: Store,
    dst: Reference,
    dst_digest: str,
    src_digest: str,
    platforms: Sequence[str],
) -> bool:
    """Is the destination tag our filtered copy of this very source index?

    A destination GET (never counted by Docker Hub), and only when digests differ.
    """
    got = await client.get_manifest(dst.with_digest(dst_digest))
    if got.media_type not in INDEX_TYPES:
        return False
    return is_filtered_copy_of(got.data, src_digest, platforms)


async def select_platforms(
    client: Store, src: Reference, top: FetchedManifest, platforms: Sequence[str]
) -> tuple[FetchedManifest | None, str]:
    """The manifest to publish (a filtered index, or the image itself), or None and why not."""
    if top.media_type in INDEX_TYPES:
        f = filter_index(top.data, top.media_type, top.digest, platforms)
        if f is None:
            return top, ""
        return FetchedManifest(f.data, f.media_type, f.digest), ""
    manifest = parse_manifest(top.data, top.media_type)
    if not isinstance(manifest, ImageManifest):
        return top, ""
    if manifest.config.size > MAX_CONFIG_BYTES:
        raise ManifestError(f"image config of {src} is {manifest.config.size} bytes; too large")
    config = b"".join([c async for c in client.read_blob(src.repo(), manifest.config)])
    ok, reason = image_matches(config, platforms)
    return (top, "") if ok else (None, reason)
