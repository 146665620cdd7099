"""What a referrer may be under `verify:`: an artifact *about* a verified digest (a
signature, an attestation, an SBOM), never content of its own that someone could run.

The vocabulary, from sigstore/cosign (specs/SIGNATURE_SPEC.md, ATTESTATION_SPEC.md,
SBOM_SPEC.md, pkg/types/media.go, pkg/oci/static) and OCI image-spec (`subject`,
`artifactType`). cosign's classic `.sig`, `.att` and `.sbom` manifests carry an OCI image
config (a small JSON whose rootfs lists those layers), so an artifact is told from an image
by its layers: every one of an artifact type, none a filesystem. A kind added here (cosign 3
bundles, say) is recognised everywhere referrers are judged.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer.registry.oci import (
    DOCKER_CONFIG,
    OCI_CONFIG,
    OCI_EMPTY,
    Descriptor,
    ImageIndex,
    ImageManifest,
    is_filesystem_layer,
)
from syncer.verify.cosign import MAX_BYTES, SIMPLE_SIGNING

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"  # cosign attest: an in-toto statement
IN_TOTO = "application/vnd.in-toto+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGSTORE_BUNDLE_LEGACY = "application/vnd.dev.sigstore.bundle+json;version="

MAX_REFERRERS = 64  # children of one referrers index


@dataclass(frozen=True)
class ArtifactKind:
    name: str  # as a rejection names what was expected: "an attestation"
    media_types: frozenset[str]  # its layers' types, and the `artifactType`s it may declare


SIGNATURE = ArtifactKind("a signature", frozenset({SIMPLE_SIGNING}))
ATTESTATION = ArtifactKind("an attestation", frozenset({DSSE_ENVELOPE, IN_TOTO}))
# cosign attach sbom: SPDX, CycloneDX and Syft, each with or without a format suffix.
SBOM = ArtifactKind(
    "an SBOM",
    frozenset(
        f"{base}{suffix}"
        for base in (
            "text/spdx",
            "application/spdx",
            "application/vnd.cyclonedx",
            "application/vnd.syft",
        )
        for suffix in ("", "+json", "+xml")
    ),
)
BUNDLE = ArtifactKind(
    "a Sigstore bundle",
    frozenset({SIGSTORE_BUNDLE, *(f"{SIGSTORE_BUNDLE_LEGACY}0.{v}" for v in (1, 2, 3))}),
)
# Notation (notaryproject specs/signature-specification.md): carried, never verified.
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
NOTATION = ArtifactKind(
    "a Notation signature",
    frozenset({NOTATION_SIGNATURE, "application/jose+json", "application/cose"}),
)
KINDS: tuple[ArtifactKind, ...] = (SIGNATURE, ATTESTATION, SBOM, BUNDLE, NOTATION)
ANY = ArtifactKind("the referrers", frozenset().union(*(k.media_types for k in KINDS)))

# cosign's tag suffixes say what the tag holds; `sha256-<hex>` itself (the referrers tag
# schema's index) and other suffixes may hold any kind.
_SUFFIXES = {"sig": SIGNATURE, "att": ATTESTATION, "sbom": SBOM}

# An artifact's config is metadata: cosign's small image config (Docker-typed when cosign ran
# with COSIGN_DOCKER_MEDIA_TYPES=1, for registries without OCI support), or OCI's empty one.
CONFIG_TYPES = frozenset({OCI_CONFIG, OCI_EMPTY, DOCKER_CONFIG, NOTATION_SIGNATURE})


def expected_kind(tag: str) -> ArtifactKind:
    """What a referrer tag `sha256-<hex>[.suffix]` may hold."""
    return _SUFFIXES.get(tag.partition(".")[2], ANY)


def artifact_flaw(
    manifest: ImageManifest, kind: ArtifactKind, subject: str, *, need_subject: bool
) -> str | None:
    """Why `manifest` is not an artifact of `kind` about digest `subject`, or None.

    The answer is a noun phrase saying what it is instead, naming the offending field."""
    runnable = next((d for d in manifest.layers if is_filesystem_layer(d.media_type)), None)
    if runnable is not None:
        return f"a runnable image (layer {runnable.media_type})"
    if not manifest.layers:
        return "an artifact with no layer"
    other = next((d for d in manifest.layers if d.media_type not in kind.media_types), None)
    if other is not None:
        return f"an artifact with a layer of type {other.media_type}"
    if manifest.artifact_type is not None and manifest.artifact_type not in kind.media_types:
        return f"an artifact of type {manifest.artifact_type}"
    config = manifest.config
    if config.media_type not in CONFIG_TYPES:
        return f"an artifact with a config of type {config.media_type}"
    if config.size > MAX_BYTES:
        return f"an artifact with a config of {config.size} bytes, over the limit of {MAX_BYTES}"
    return _subject_flaw(manifest.subject, subject, need_subject)


def index_flaw(index: ImageIndex, subject: str) -> str | None:
    """Why a referrers index is not one of `subject`, judged before its children are read."""
    if len(index.manifests) > MAX_REFERRERS:
        return f"an index of {len(index.manifests)} referrers, over the limit of {MAX_REFERRERS}"
    return _subject_flaw(index.subject, subject, need_subject=False)


def child_flaw(digest: str, flaw: str) -> str:
    return f"an index whose referrer {digest} is {flaw}"


def refusal(name: str, flaw: str, kind: ArtifactKind, subject: str) -> str:
    """The rejection's detail: `sha256-<hex>.att: a runnable image (...), not an attestation
    of sha256:<hex>`."""
    return f"{name}: {flaw}, not {kind.name} of {subject}"


def _subject_flaw(declared: Descriptor | None, subject: str, need_subject: bool) -> str | None:
    if declared is None:
        return "an artifact with no subject" if need_subject else None
    return None if declared.digest == subject else f"an artifact about {declared.digest}"
