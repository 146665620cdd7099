"""The referrer vocabulary of `verify:` (syncer/verify/artifacts.py): which media types make
a manifest a runnable image, and which artifacts each referrer tag may hold."""

from __future__ import annotations

import pytest

from syncer.registry.oci import ImageManifest, is_filesystem_layer
from syncer.verify.artifacts import artifact_flaw, expected_kind
from tests.support import cosign
from tests.support.cosign import sig_tag

OCI_EMPTY = "application/vnd.oci.empty.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SPDX = "text/spdx+json"


@pytest.mark.parametrize(
    ("layer", "runnable"),
    [
        ("application/vnd.oci.image.layer.v1.tar", True),
        ("application/vnd.oci.image.layer.v1.tar+zstd", True),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", True),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", True),
        ("application/x-tar", True),
        ("application/vnd.example.startup+json", False),  # "tar" inside a word is no tar
        (cosign.DSSE_ENVELOPE, False),
    ],
)
def test_filesystem_layers_are_told_by_type(layer: str, runnable: bool) -> None:
    assert is_filesystem_layer(layer) is runnable


@pytest.mark.parametrize(
    ("tag_suffix", "layer", "flaw"),
    [
        ("sig", cosign.SIMPLE_SIGNING, None),
        ("att", cosign.DSSE_ENVELOPE, None),
        ("att", cosign.IN_TOTO, None),
        ("sbom", "text/spdx", None),
        ("sbom", "application/vnd.cyclonedx+xml", None),
        ("sbom", "application/vnd.syft+json", None),
        ("", BUNDLE, None),
        ("", "application/vnd.dev.sigstore.bundle+json;version=0.2", None),
        ("att", SPDX, f"an artifact with a layer of type {SPDX}"),  # an SBOM is no attestation
        (
            "sbom",
            "application/vnd.wasm.content.layer.v1+wasm",
            "an artifact with a layer of type application/vnd.wasm.content.layer.v1+wasm",
        ),
    ],
)
def test_artifact_kinds_follow_the_tag_suffix(
    tag_suffix: str, layer: str, flaw: str | None
) -> None:
    subject = "sha256:" + "a" * 64
    tag = subject.replace(":", "-") + (f".{tag_suffix}" if tag_suffix else "")
    manifest = ImageManifest.model_validate(
        {
            "schemaVersion": 2,
            "config": {"mediaType": OCI_EMPTY, "digest": subject, "size": 2},
            "layers": [{"mediaType": layer, "digest": subject, "size": 10}],
        }
    )
    assert artifact_flaw(manifest, expected_kind(tag), subject, need_subject=False) == flaw


def test_docker_typed_cosign_signature_is_pure() -> None:
    """COSIGN_DOCKER_MEDIA_TYPES=1 (registries without OCI support): Docker manifest and
    config types around the same simplesigning layer."""
    digest = "sha256:" + "b" * 64
    manifest = ImageManifest.model_validate(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest,
                "size": 233,
            },
            "layers": [{"mediaType": cosign.SIMPLE_SIGNING, "digest": digest, "size": 250}],
        }
    )
    assert (
        artifact_flaw(manifest, expected_kind(sig_tag(digest)), digest, need_subject=False) is None
    )
