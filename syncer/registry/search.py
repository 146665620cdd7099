"""`syncer search`: find repositories through a Docker index's v1 search API.

This is what `docker search` does: `GET {index}/v1/search?q=TERM&n=N`, filters
applied on the client, and the same table. Requests go through the registry
`RegistrySession` with docker.io's settings (TLS, retries, credential rules, error mapping);
searching needs no sync.yaml.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from syncer.errors import (
    AuthenticationError,
    ConfigError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RegistryError,
    TransportError,
)
from syncer.registry.credentials import Credential
from syncer.registry.options import RegistryConfig, RetryConfig
from syncer.registry.reference import DOCKER_HUB
from syncer.registry.transport.session import RegistrySession

DEFAULT_INDEX = "https://index.docker.io"
DEFAULT_LIMIT = 25  # docker's default
MAX_LIMIT = 100  # the most Docker Hub returns for one query
DESCRIPTION_WIDTH = 45  # docker truncates descriptions to this many columns
DEFAULT_TIMEOUT_S = 30.0
# 100 results are ~30 KiB; anything far larger is not a search answer.
MAX_ANSWER_BYTES = 8 * 1024 * 1024

FILTER_KEYS = ("is-official", "is-automated", "stars")
# Go's strconv.ParseBool spellings, so filters written for docker work unchanged.
_BOOLS = dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True) | dict.fromkeys(
    ("0", "f", "F", "false", "FALSE", "False"), False
)
# Control characters would let an index rewrite the user's terminal or break the table.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Docker's repository-path grammar: nothing else may reach a sync.yaml.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_PREFIX = re.compile(rf"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/{_COMPONENT})*")
SEARCH_PATH = "/v1/search"
# Errors with a better explanation than their status's reason phrase.
_HINTS: dict[type[RegistryError], str] = {
    AuthenticationError: "the index wants valid credentials (registries.docker.io)",
    PermissionDenied: "the index refused the search",
    NotFound: "no search API here; is this a Docker index with /v1/search?",
}


class SearchResult(BaseModel):
    """One repository as the index describes it (the v1 search answer's fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False

    @field_validator("description", "star_count", mode="before")
    @classmethod
    def _null_is_default(cls, v: Any, info: ValidationInfo) -> Any:
        # Docker Hub sends `"description": null` for repositories without one.
        if v is None:
            return 0 if info.field_name == "star_count" else ""
        return v


class _Page(BaseModel):
    # Only what paging needs; Docker Hub has sent `page` as a string, so it is not read.
    model_config = ConfigDict(extra="ignore")
    num_pages: int | None = None
    results: list[SearchResult]


@dataclass(frozen=True)
class SearchFilters:
    """Parsed `--filter` values; None means "not filtered on"."""

    is_official: bool | None = None
    is_automated: bool | None = None
    stars: int | None = None

    def matches(self, r: SearchResult) -> bool:
        return (
            self.is_official in (None, r.is_official)
            and self.is_automated in (None, r.is_automated)
            and (self.stars is None or r.star_count >= self.stars)
        )


def parse_filters(filters: Iterable[str]) -> SearchFilters:
    """Parse docker's `KEY=VALUE` filters; ConfigError names the bad one and the fix."""
    found: dict[str, Any] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise ConfigError(f"bad format of filter {item!r}; expected KEY=VALUE, e.g. stars=3")
        if key == "stars":
            if not re.fullmatch(r"[+-]?[0-9]+", value):
                raise ConfigError(f"invalid filter 'stars={value}'; expected a whole number")
            # Like docker: several stars filters mean the strictest one.
            found[key] = max(int(value), found.get(key, int(value)))
        elif key in ("is-official", "is-automated"):
            if value not in _BOOLS:
                raise ConfigError(f"invalid filter '{key}={value}'; expected true or false")
            if found.setdefault(key, _BOOLS[value]) != _BOOLS[value]:
                raise ConfigError(f"conflicting values for filter '{key}'; give it once")
        else:
            raise ConfigError(f"invalid filter {key!r}; expected one of {', '.join(FILTER_KEYS)}")
    return SearchFilters(found.get("is-official"), found.get("is-automated"), found.get("stars"))


def apply_filters(results: Sequence[SearchResult], filters: list[str]) -> list[SearchResult]:
    """Keep the results every filter accepts (client side, as docker does)."""
    spec = parse_filters(filters)
    return [r for r in results if spec.matches(r)]


def index_base(index_url: str) -> str:
    """Validate an index URL (`--index`, `search_endpoint`); ConfigError if unusable."""
    try:
        url = httpx.URL(index_url.strip())
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid index URL {index_url!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"invalid index URL {index_url!r}; expected http(s)://host[:port], e.g. {DEFAULT_INDEX}"
        )
    if url.userinfo or url.query or url.fragment:
        # Credentials in a URL end up in error messages and shell history.
        raise ConfigError(f"invalid index URL {index_url!r}; give only scheme, host, port, path")
    return str(url).rstrip("/")


async def search(
    term: str,
    *,
    index_url: str,
    limit: int,
    credentials: tuple[str, str] | None = None,
    config: RegistryConfig | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> list[SearchResult]:
    """Up to `limit` results for `term` in the index's order, following its pages.

    `config` is docker.io's `registries:` entry: its TLS, retry and credential rules
    apply to the index too. ConfigError: bad arguments (raised before any request).
    InsecureCredentials: credentials would cross the network in clear text.
    TransportError: the index cannot be reached. RegistryError and subclasses: an
    error status or not a search answer; RateLimited carries Retry-After.
    """
    if not term.strip():
        raise ConfigError("the search term is empty")
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"limit {limit} is outside the range of [1, {MAX_LIMIT}]")
    base = index_base(index_url)
    credential = None
    if credentials is not None:
        credential = Credential(username=credentials[0], password=SecretStr(credentials[1]))
    session = RegistrySession(
        DOCKER_HUB, base, _interactive(config), credential, http_transport=http_transport
    )
    try:
        session.auth.basic_from_the_start(base + SEARCH_PATH)
        return await _collect(session, term, limit)
    finally:
        await session.aclose()


def _interactive(config: RegistryConfig | None) -> RegistryConfig:
    """docker.io's settings for a search somebody waits for: a rate limit is reported
    with its Retry-After instead of slept through."""
    if config is None:
        config = RegistryConfig(retry=RetryConfig(timeout_s=DEFAULT_TIMEOUT_S))
    ratelimit = config.ratelimit.model_copy(update={"max_wait_s": 0.0})
    return config.model_copy(update={"ratelimit": ratelimit})


async def _collect(session: RegistrySession, term: str, limit: int) -> list[SearchResult]:
    results: list[SearchResult] = []
    seen: set[str] = set()
    page = 1
    while True:
        # `n` stays the same on every page: the index computes page offsets from it.
        params = {"q": term, "n": str(limit)} | ({"page": str(page)} if page > 1 else {})
        answer = await _fetch(session, params)
        # Rankings shift while we page, so a result can come twice; and an index that
        # ignores `page` repeats itself, which must end the loop, not spin it.
        fresh = [r for r in answer.results if r.name not in seen]
        seen.update(r.name for r in fresh)
        results.extend(fresh)
        if len(results) >= limit or not fresh or page >= (answer.num_pages or 1):
            return results[:limit]
        page += 1


async def _fetch(session: RegistrySession, params: dict[str, str]) -> _Page:
    try:
        resp = await session.request("GET", SEARCH_PATH, params=params, max_bytes=MAX_ANSWER_BYTES)
    except TransportError as exc:
        # The session's message names the host, the cause and the tries.
        where = f"{session.base_url}{SEARCH_PATH}"
        raise TransportError(f"searching {where} failed: {exc}") from None
    except RegistryError as exc:
        raise _explained(exc) from None
    final = str(resp.request.url.copy_with(query=None))
    kw: dict[str, Any] = {"status": resp.status_code, "method": "GET", "url": final}
    try:
        return _Page.model_validate_json(resp.content)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        if err["type"] == "json_invalid":
            ctype = resp.headers.get("content-type", "no content type")
            detail = f"the answer is not JSON ({ctype}); is this a Docker index with /v1/search?"
        else:
            loc = ".".join(str(p) for p in err["loc"]) or "answer"
            detail = f"not a search answer: {loc}: {err['msg']}"
        raise RegistryError(detail, **kw) from None


def _explained(exc: RegistryError) -> RegistryError:
    """The transport's error (its class chosen by responses.py), told in search terms."""
    # The query is the user's own search term: the URL alone says where it failed.
    kw: dict[str, Any] = {"status": exc.status, "method": exc.method, "errors": exc.errors}
    kw["url"] = exc.url.partition("?")[0]
    if isinstance(exc, RateLimited):
        wait = exc.retry_after
        when = f"retry after {wait:.0f}s" if wait is not None else "wait a while and retry"
        message = f"rate limit reached at the search index; {when}"
        return RateLimited(message, retry_after=wait, **kw)
    hint = _HINTS.get(type(exc))
    if hint is None and exc.status is not None:
        hint = httpx.codes.get_reason_phrase(exc.status)
    return type(exc)(hint or exc.detail, **kw)


def _width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def ellipsis(text: str, width: int) -> str:
    """Docker's formatter.Ellipsis: fit in `width` columns, the last one being "…"."""
    if _width(text) <= width:
        return text
    out, used = "", 0
    for ch in text:
        used += _width(ch)
        if used > width - 1:
            break
        out += ch
    return out + "…"


def format_table(results: Sequence[SearchResult], *, no_trunc: bool) -> str:
    """docker search's table: Go tabwriter(minwidth=10, padding=3), last column unpadded.

    Unlike docker, trailing blanks (padding of empty OFFICIAL/AUTOMATED cells) are
    stripped, and widths count display columns so wide characters stay aligned.
    """
    rows = [["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]]
    for r in results:
        desc = _CONTROL.sub(" ", r.description)
        desc = desc if no_trunc else ellipsis(desc, DESCRIPTION_WIDTH)
        marks = ["[OK]" if r.is_official else "", "[OK]" if r.is_automated else ""]
        rows.append([_CONTROL.sub(" ", r.name), desc, str(r.star_count), *marks])
    widths = [max(10, max(_width(row[i]) for row in rows) + 3) for i in range(4)]
    lines = []
    for row in rows:
        cells = [c + " " * (w - _width(c)) for c, w in zip(row, widths, strict=False)]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(lines)


def format_json(results: Sequence[SearchResult]) -> str:
    """A JSON array of the index's own fields, descriptions never truncated."""
    return json.dumps([r.model_dump() for r in results], indent=2, ensure_ascii=False)


def check_dest_prefix(dest_prefix: str) -> str:
    """`registry[:port][/path]` without a trailing slash, or ConfigError."""
    prefix = dest_prefix.strip().rstrip("/")
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"invalid destination prefix {dest_prefix!r}; expected registry[:port][/path] "
            "with a lower-case path, e.g. registry.example.com/mirror"
        )
    return prefix


def emit_sync_entries(results: Sequence[SearchResult], dest_prefix: str) -> str:
    """`sync:` entries mirroring each result below `dest_prefix`.

    The Docker Hub path is kept below the prefix, minus the implicit `library/` of
    official images: `centos` (docker.io/library/centos) -> PREFIX/centos,
    `user/app` -> PREFIX/user/app. Names that are not repository paths are skipped
    (and counted in a comment), so an index cannot inject YAML.
    """
    prefix = check_dest_prefix(dest_prefix)
    lines: list[str] = []
    done: set[str] = set()
    skipped = 0
    for r in results:
        if not _REPOSITORY.fullmatch(r.name):
            skipped += 1
            continue
        repo = r.name if "/" in r.name else f"library/{r.name}"
        if repo not in done:
            done.add(repo)
            path = repo.removeprefix("library/")
            lines += [f"- source: docker.io/{repo}", f"  destination: {prefix}/{path}"]
    if skipped:
        lines.append(f"# skipped {skipped} result(s) whose names are not repository paths")
    return "\n".join(lines)
