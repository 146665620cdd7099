"""`oci:PATH[:REPOSITORY[:TAG|@DIGEST]]`, `oci-archive:FILE.tar[:...]` and
`docker-archive:FILE.tar[:...]` beside ordinary registry references.

As in skopeo, PATH ends at the first `:`. A layout reference is a `Reference` whose
registry is the scheme plus the absolute PATH, so everything keyed by registry (the blob
ledger, shards, reports) keeps working and the store router can tell the kinds apart.
An `oci-archive:` is a layout too, packed in one tar file (what `syncer bundle` writes); a
`docker-archive:` is what `docker save` writes, read and written as a layout of its images.
"""

from __future__ import annotations

import os

from syncer.errors import InvalidReference
from syncer.registry.reference import (
    ARCHIVE_SCHEME,
    DOCKER_ARCHIVE_SCHEME,
    LAYOUT_SCHEME,
    LAYOUT_SCHEMES,
    Reference,
    validate_digest,
    validate_repository,
    validate_tag,
)

_EXAMPLE = "e.g. oci:/media/usb/bundle:mirror/alpine:3.20"


def _scheme(registry_or_text: str) -> str | None:
    for scheme in LAYOUT_SCHEMES:
        if registry_or_text.startswith(scheme):
            return scheme
    return None


def is_layout(registry_or_text: str) -> bool:
    """An image layout: a directory (`oci:`) or a tar of one (`oci-archive:`)."""
    return _scheme(registry_or_text) is not None


def is_archive(registry_or_text: str) -> bool:
    return registry_or_text.startswith(ARCHIVE_SCHEME)


def is_docker_archive(registry_or_text: str) -> bool:
    return registry_or_text.startswith(DOCKER_ARCHIVE_SCHEME)


def layout_path(ref: Reference) -> str:
    """The directory (or tar file) of a layout reference."""
    return ref.registry[len(_scheme(ref.registry) or "") :]


def split_layout(text: str) -> tuple[str, str]:
    """`oci:PATH:REST` -> (`oci:` + absolute PATH, REST); REST may be empty. The same for
    `oci-archive:`."""
    scheme = _scheme(text) or LAYOUT_SCHEME
    path, _, rest = text[len(scheme) :].partition(":")
    if not path:
        what = "a directory" if scheme == LAYOUT_SCHEME else "a tar file"
        raise InvalidReference(text, f"{scheme} needs {what} before the repository; {_EXAMPLE}")
    return scheme + os.path.abspath(path), rest


def is_whole_layout(text: str) -> bool:
    """`oci:PATH` alone: every repository in the layout (a source), or the source's own
    repository path (a destination)."""
    return is_layout(text) and not split_layout(text)[1]


def parse_reference(text: str) -> Reference:
    """A registry reference, or a layout reference naming a repository."""
    if not is_layout(text):
        return Reference.parse(text)
    registry, rest = split_layout(text)
    if not rest:
        if (scheme := _scheme(text)) != LAYOUT_SCHEME:
            given = text[len(scheme or "") :].partition(":")[0]
            fix = f"name a repository after the tar file, e.g. {scheme}{given}:REPO:TAG"
            raise InvalidReference(text, fix)
        raise InvalidReference(text, f"name a repository after the directory; {_EXAMPLE}")
    name, at, digest = rest.partition("@")
    repository, colon, tag = name.partition(":")
    try:
        return Reference(
            registry,
            validate_repository(repository),
            validate_tag(tag) if colon else None,
            validate_digest(digest) if at else None,
        )
    except InvalidReference as exc:
        raise InvalidReference(text, exc.reason) from None


def repository_reference(registry: str, repository: str) -> Reference:
    """`repository` at `registry` (a host, or an `oci:` layout)."""
    sep = ":" if is_layout(registry) else "/"
    return parse_reference(f"{registry}{sep}{repository}")
