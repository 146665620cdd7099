from __future__ import annotations

import pytest

from syncer.registry.pagination import next_link


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ('</v2/a/tags/list?last=x&n=2>; rel="next"', "/v2/a/tags/list?last=x&n=2"),
        ("</v2/a/tags/list?last=x&n=2>; rel=next", "/v2/a/tags/list?last=x&n=2"),
        ('<https://h/v2/_catalog?last=b>; rel="next"', "https://h/v2/_catalog?last=b"),
        ('</p1>; rel="prev", </p3>; rel="next"', "/p3"),
        ('</p1>; rel="prev"', None),
        ('</p1>; title="x"; rel="prev next"', "/p1"),
    ],
)
def test_next_link(header: str | None, expected: str | None) -> None:
    assert next_link(header) == expected
