"""Tag-list pagination and hostile listings (MockTransport: 2.8 does not page tags/list)."""

from __future__ import annotations

import httpx
import pytest

from syncer.errors import ManifestError, RegistryError
from syncer.registry.client import RegistryClient
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference

REPO = Reference.parse("reg.test/team/app")


def client(handler: httpx.MockTransport) -> RegistryClient:
    return RegistryClient(
        lambda _r: RegistryConfig(), credentials=lambda r, c: None, http_transport=handler
    )


def paged(pages: dict[str, tuple[list[str], str | None]], seen: list[str]) -> httpx.MockTransport:
    def handle(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        seen.append(str(req.url))
        tags, nxt = pages[req.url.params.get("last", "")]
        headers = {"Link": f'<{nxt}>; rel="next"'} if nxt else {}
        return httpx.Response(200, json={"name": "team/app", "tags": tags}, headers=headers)

    return httpx.MockTransport(handle)


async def test_tags_follow_link_pages() -> None:
    seen: list[str] = []
    pages = {
        "": (["a", "b"], "/v2/team/app/tags/list?n=2&last=b"),
        "b": (["c", "d"], "/v2/team/app/tags/list?n=2&last=d"),
        "d": (["e"], None),
    }
    async with client(paged(pages, seen)) as c:
        assert await c.list_tags(REPO, page_size=2) == ["a", "b", "c", "d", "e"]
    assert len(seen) == 3
    assert seen[0].endswith("/v2/team/app/tags/list?n=2")


async def test_endless_pagination_is_an_error_not_a_hang() -> None:
    seen: list[str] = []
    pages = {
        "": (["a"], "/v2/team/app/tags/list?last=a"),
        "a": (["b"], "/v2/team/app/tags/list?last=a"),
    }
    async with client(paged(pages, seen)) as c:
        with pytest.raises(RegistryError, match="pagination loops"):
            await c.list_tags(REPO)
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("body", "ctype", "error", "match"),
    [
        (b"<html>oops</html>", "text/html", RegistryError, "not JSON"),
        (b'{"tags": "latest"}', "application/json", ManifestError, "malformed"),
        (b"[1, 2]", "application/json", RegistryError, "not a JSON object"),
    ],
)
async def test_bad_tag_lists_give_clear_errors(
    body: bytes, ctype: str, error: type[Exception], match: str
) -> None:
    def handle(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": ctype})

    async with client(httpx.MockTransport(handle)) as c:
        with pytest.raises(error, match=match):
            await c.list_tags(REPO)
