"""Layout and archive references print as they are written, so a printed name pastes back."""

from __future__ import annotations

import pytest

from syncer.store.references import parse_reference


@pytest.mark.parametrize(
    "text",
    [
        "oci:/media/usb/bundle:mirror/alpine:3.20",
        "oci-archive:/media/usb/2026-12.tar:mirror/alpine:3.20",
        "oci-archive:/media/usb/2026-12.tar:library/alpine@sha256:" + "ab" * 32,
    ],
)
def test_a_layout_reference_prints_as_written(text: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == text
    assert parse_reference(str(ref)) == ref


def test_an_archive_repository_is_separated_by_a_colon() -> None:
    ref = parse_reference("oci-archive:/w/full.tar:app:latest")
    assert ref.name == "oci-archive:/w/full.tar:app"
