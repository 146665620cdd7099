"""Platform filtering is pure: indexes and configs are built here as bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncer.errors import DigestMismatch, ManifestError
from syncer.registry.digests import digest_of as sha
from syncer.registry.oci import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from syncer.sync.platforms import (
    PLATFORMS_ANNOTATION,
    SOURCE_DIGEST_ANNOTATION,
    expected_source_digest,
    filter_index,
    image_matches,
    is_filtered_copy_of,
    normalize,
    platforms_annotation,
    spec_matches,
)

AMD, ARM64, ARMV7, ATT = (sha(n.encode()) for n in ("amd64", "arm64", "armv7", "att"))


def _desc(mt: str, digest: str, platform: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"mediaType": mt, "digest": digest, "size": 500, "platform": platform, **extra}


def _index(index_mt: str, child_mt: str) -> bytes:
    """Three platforms plus a BuildKit attestation, with fields syncer does not know."""
    doc = {
        "schemaVersion": 2,
        "mediaType": index_mt,
        "manifests": [
            _desc(child_mt, AMD, {"architecture": "amd64", "os": "linux"}, x_vendor="keep me"),
            _desc(child_mt, ARM64, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
            _desc(child_mt, ARMV7, {"architecture": "arm", "os": "linux", "variant": "v7"}),
            _desc(
                child_mt,
                ATT,
                {"architecture": "unknown", "os": "unknown"},
                annotations={
                    "vnd.docker.reference.digest": AMD,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            ),
        ],
        "annotations": {"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
        "x-unknown-top": {"nested": [1, 2]},
    }
    return json.dumps(doc, indent=3).encode()  # not compact: output must not be the input


KINDS = [(OCI_INDEX, OCI_MANIFEST), (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)]


@pytest.fixture(params=KINDS, ids=["oci", "docker"])
def kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("platforms", "kept"),
    [
        (["linux/amd64"], [AMD]),
        (["linux/arm64/v8", "linux/amd64"], [AMD, ARM64]),  # source order, not list order
        (["linux/arm", "linux/aarch64"], [ARM64, ARMV7]),
    ],
)
def test_filter_keeps_exactly_the_matching_children(
    kind: tuple[str, str], platforms: list[str], kept: list[str]
) -> None:
    index_mt, child_mt = kind
    src = _index(index_mt, child_mt)
    out = filter_index(src, index_mt, sha(src), platforms)
    assert out is not None
    assert [d.digest for d in out.kept] == kept
    assert all(d.media_type == child_mt for d in out.kept)
    assert out.media_type == index_mt
    assert out.digest == sha(out.data) != sha(src)
    assert out.source_digest == sha(src)
    doc = json.loads(out.data)
    assert [m["digest"] for m in doc["manifests"]] == kept
    assert doc["mediaType"] == index_mt
    # Everything else survives, in the source's key order.
    assert list(doc) == ["schemaVersion", "mediaType", "manifests", "annotations", "x-unknown-top"]
    assert doc["x-unknown-top"] == {"nested": [1, 2]}
    assert doc["annotations"]["org.opencontainers.image.created"] == "2024-05-01T00:00:00Z"
    if AMD in kept:
        assert doc["manifests"][0]["x_vendor"] == "keep me"
    assert b"\n" not in out.data and b", " not in out.data  # compact


def test_filter_is_deterministic_and_canonical_in_the_platform_list() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    a = filter_index(src, OCI_INDEX, sha(src), ["linux/amd64", "linux/arm64/v8"])
    b = filter_index(src, OCI_INDEX, sha(src), ("linux/arm64/8", "linux/x86_64", "linux/amd64"))
    assert a is not None and b is not None
    assert a.data == b.data and a.digest == b.digest
    c = filter_index(src, OCI_INDEX, sha(src), ["linux/amd64", "linux/arm64"])
    assert c is not None and c.digest != a.digest  # arm64 (any variant) is another request


def test_annotations_are_written_and_read_back() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    out = filter_index(src, OCI_INDEX, sha(src), ["linux/arm64/v8", "linux/amd64"])
    assert out is not None
    ann = json.loads(out.data)["annotations"]
    assert ann[SOURCE_DIGEST_ANNOTATION] == sha(src)
    assert ann[PLATFORMS_ANNOTATION] == "linux/amd64,linux/arm64/v8"
    assert expected_source_digest(out.data) == sha(src)
    assert expected_source_digest(src) is None
    assert expected_source_digest(b"not json") is None


def test_index_without_annotations_gets_them_at_the_end() -> None:
    doc = json.loads(_index(OCI_INDEX, OCI_MANIFEST))
    del doc["annotations"]
    src = json.dumps(doc).encode()
    out = filter_index(src, OCI_INDEX, sha(src), ["linux/amd64"])
    assert out is not None
    assert list(json.loads(out.data))[-1] == "annotations"
    assert expected_source_digest(out.data) == sha(src)


def test_attestations_dropped_unless_asked_and_only_for_kept_children() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    plain = filter_index(src, OCI_INDEX, sha(src), ["linux/amd64", "linux/arm64"])
    assert plain is not None and ATT not in [d.digest for d in plain.kept]
    asked = filter_index(src, OCI_INDEX, sha(src), ["linux/amd64"], keep_attestations=True)
    assert asked is not None and [d.digest for d in asked.kept] == [AMD, ATT]
    other = filter_index(src, OCI_INDEX, sha(src), ["linux/arm64"], keep_attestations=True)
    assert other is not None and [d.digest for d in other.kept] == [ARM64]  # att is amd64's
    assert is_filtered_copy_of(asked.data, sha(src), ["linux/amd64"], keep_attestations=True)
    assert not is_filtered_copy_of(asked.data, sha(src), ["linux/amd64"])


def test_unknown_platform_is_never_selectable_as_a_platform() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    with pytest.raises(ManifestError):
        filter_index(src, OCI_INDEX, sha(src), ["unknown/unknown"])


def test_no_match_names_what_the_index_has() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    with pytest.raises(ManifestError) as err:
        filter_index(src, OCI_INDEX, sha(src), ["linux/s390x"])
    assert str(err.value) == (
        "none of linux/s390x found; the index has linux/amd64, linux/arm64/v8, linux/arm/v7"
    )


def test_all_copies_unchanged() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    assert filter_index(src, OCI_INDEX, sha(src), "all") is None


def test_wrong_source_digest_and_non_index_are_refused() -> None:
    src = _index(OCI_INDEX, OCI_MANIFEST)
    with pytest.raises(DigestMismatch):  # the annotation would lie about the source
        filter_index(src, OCI_INDEX, AMD, ["linux/amd64"])
    image = json.dumps({"schemaVersion": 2, "config": _desc("c", AMD, {}), "layers": []}).encode()
    with pytest.raises(ManifestError, match="not an index"):
        filter_index(image, OCI_MANIFEST, sha(image), ["linux/amd64"])


def test_is_filtered_copy_of() -> None:
    src = _index(DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
    out = filter_index(src, DOCKER_MANIFEST_LIST, sha(src), ["linux/amd64", "linux/arm64/v8"])
    assert out is not None
    assert is_filtered_copy_of(out.data, sha(src), ["linux/arm64/v8", "linux/amd64"])
    assert is_filtered_copy_of(out.data, sha(src), ["linux/aarch64/8", "linux/x86_64"])
    assert not is_filtered_copy_of(out.data, ARMV7, ["linux/amd64", "linux/arm64/v8"])
    assert not is_filtered_copy_of(out.data, sha(src), ["linux/amd64"])
    assert not is_filtered_copy_of(out.data, sha(src), ["linux/amd64", "linux/arm64"])
    assert not is_filtered_copy_of(out.data, sha(src), "all")
    assert not is_filtered_copy_of(src, sha(src), ["linux/amd64"])  # an unfiltered copy


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (("linux", "arm64", None), ("linux", "arm64", "v8")),
        (("linux", "arm64", "8"), ("linux", "arm64", "v8")),
        (("linux", "aarch64", "v8.0"), ("linux", "arm64", "v8")),
        (("linux", "arm64", "v9"), ("linux", "arm64", "v9")),
        (("linux", "x86_64", None), ("linux", "amd64", "v1")),
        (("Linux", "AMD64", "v3"), ("linux", "amd64", "v3")),
        (("linux", "arm", None), ("linux", "arm", "v7")),
        (("linux", "arm", "6"), ("linux", "arm", "v6")),
        (("linux", "armhf", None), ("linux", "arm", "v7")),
        (("linux", "armel", None), ("linux", "arm", "v6")),
        (("linux", "i386", None), ("linux", "386", None)),
        (("linux", "s390x", None), ("linux", "s390x", None)),
    ],
)
def test_normalize(
    given: tuple[str, str, str | None], canonical: tuple[str, str, str | None]
) -> None:
    assert normalize(*given) == canonical


@pytest.mark.parametrize(
    ("spec", "platform", "ok"),
    [
        ("linux/arm64", ("linux", "arm64", "v8"), True),
        ("linux/arm64/v8", ("linux", "arm64", None), True),
        ("linux/arm64", ("linux", "arm64", "v9"), True),  # no variant: any variant
        ("linux/arm64/v8", ("linux", "arm64", "v9"), False),
        ("linux/amd64/v1", ("linux", "amd64", None), True),
        ("linux/amd64", ("linux", "amd64", "v3"), True),
        ("linux/amd64/v2", ("linux", "amd64", None), False),
        ("linux/arm/v7", ("linux", "arm", None), True),
        ("linux/arm/v7", ("linux", "arm", "v6"), False),
        ("linux/arm", ("linux", "arm", "v6"), True),
        ("linux/armhf", ("linux", "arm", "v6"), False),  # armhf means arm/v7
        ("linux/x86_64", ("linux", "amd64", None), True),
        ("linux/amd64", ("windows", "amd64", None), False),
        ("linux/arm64", ("linux", "arm", "v8"), False),
    ],
)
def test_spec_matches(spec: str, platform: tuple[str, str, str | None], ok: bool) -> None:
    assert spec_matches(spec, *platform) is ok


def test_platforms_annotation_and_bad_specs() -> None:
    assert platforms_annotation(["linux/arm64/v8", "linux/amd64", "linux/x86_64"]) == (
        "linux/amd64,linux/arm64/v8"
    )
    assert platforms_annotation("linux/amd64") == "linux/amd64"  # a bare string is one spec
    for bad in ([], ["linux"], ["linux/amd64/v1/x"], ["linux//v7"]):
        with pytest.raises(ValueError):
            platforms_annotation(bad)


def _config(**platform: str) -> bytes:
    return json.dumps({"rootfs": {"type": "layers", "diff_ids": []}, **platform}).encode()


@pytest.mark.parametrize(
    ("config", "platforms", "result"),
    [
        (_config(os="linux", architecture="amd64"), ["linux/amd64"], (True, "")),
        (_config(os="linux", architecture="arm64"), "all", (True, "")),
        (_config(os="linux", architecture="arm64"), ["linux/arm64/v8"], (True, "")),
        (_config(os="linux", architecture="arm", variant="v7"), ["linux/arm"], (True, "")),
        (
            _config(os="linux", architecture="arm64"),
            ["linux/amd64"],
            (False, "image is linux/arm64, not in platforms [linux/amd64]"),
        ),
        (
            _config(os="linux", architecture="arm", variant="v6"),
            ["linux/arm/v7", "linux/amd64"],
            (False, "image is linux/arm/v6, not in platforms [linux/arm/v7, linux/amd64]"),
        ),
        (
            b"{}",
            ["linux/amd64"],
            (False, "image config names no os/architecture, not in platforms [linux/amd64]"),
        ),
    ],
)
def test_image_matches(config: bytes, platforms: Any, result: tuple[bool, str]) -> None:
    assert image_matches(config, platforms) == result


def test_image_matches_rejects_garbage() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        image_matches(b"\xff", ["linux/amd64"])
    with pytest.raises(ManifestError, match="JSON object"):
        image_matches(b"[]", ["linux/amd64"])
