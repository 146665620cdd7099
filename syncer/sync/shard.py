"""Split one sync run across N cooperating processes (e.g. a Kubernetes Indexed Job).

Pure: no I/O, no clock, no randomness, so every shard computes the same answer.

The unit of work is one tag of one entry, not an entry: a fleet is often one huge
repository (1000 tags) next to many single-tag entries, and only a per-tag rule
balances both. Tag `t` of entry key `k` belongs to shard

    int(sha256(k + "\\0" + t)[:8]) % N

which is the same in every process (Python's `hash()` is salted per process, so it
would silently give overlapping or missing work). Every shard lists an entry's tags
(that listing is the shared cost) and checks and copies only the tags it owns, so N
shards together handle every (entry, tag) exactly once. Any entry key works as long as
all shards compute it the same way; `entry_key` is the canonical one.

Shard indexes are 0-based, like Kubernetes' JOB_COMPLETION_INDEX: "0/4" .. "3/4".

Two consequences for callers: blobs shared by tags of different shards may cross the
wire once per shard (content-addressed pushes make that safe, only not free); and
only one shard prunes (`prunes`), deciding on the full selected tag list (every shard
has it), so no shard deletes a manifest that another shard's kept tag uses, and
`prune_max` caps the deletions of the whole run, not of each shard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from syncer.errors import ConfigError

T = TypeVar("T")

# Kubernetes sets this one itself for `completionMode: Indexed` Jobs.
INDEX_ENV = "JOB_COMPLETION_INDEX"
# Kubernetes does NOT set this one: the manifest must, equal to `spec.completions`.
COUNT_ENV = "JOB_COMPLETIONS"

# NUL never occurs in references or tags, so joined keys cannot collide.
_SEP = "\0"
_SHARD_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_FORMAT_HINT = "expected INDEX/COUNT with a 0-based index, e.g. 0/4 .. 3/4"


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, 0 <= index < count."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"shard count must be at least 1, found {self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard index {self.index} is outside 0..{self.count - 1}; "
                f"indexes are 0-based, so {self.count} shards are "
                f"0/{self.count} .. {self.count - 1}/{self.count}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`"I/N"` (0-based I) as a Shard; ConfigError naming the problem otherwise."""
    match = _SHARD_TEXT.fullmatch(text)
    if match is None:
        raise ConfigError(f"invalid shard {text!r}: {_FORMAT_HINT}")
    index, count = int(match.group(1)), int(match.group(2))
    try:
        return Shard(index, count)
    except ConfigError as exc:
        raise ConfigError(f"invalid shard {text!r}: {exc}") from None


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None  # an empty value is how a manifest switches a variable off
    if not raw.isdigit():
        raise ConfigError(f"{name}={raw!r} is not a non-negative integer")
    return int(raw)


def shard_from_env(env: Mapping[str, str]) -> Shard | None:
    """The shard of an Indexed Job pod, or None when not sharded.

    Both variables or neither: an index without a count cannot be placed, and
    guessing would silently copy too much or too little.
    """
    index, count = _env_int(env, INDEX_ENV), _env_int(env, COUNT_ENV)
    if index is None and count is None:
        return None
    if count is None:
        raise ConfigError(
            f"{INDEX_ENV} is set but {COUNT_ENV} is not; Kubernetes does not set "
            f"{COUNT_ENV}: add it to the container's env, equal to the Job's "
            "spec.completions"
        )
    if index is None:
        raise ConfigError(
            f"{COUNT_ENV} is set but {INDEX_ENV} is not; run as an Indexed Job "
            f"(completionMode: Indexed) or also set {INDEX_ENV}"
        )
    try:
        return Shard(index, count)
    except ConfigError as exc:
        raise ConfigError(f"{INDEX_ENV}={index}, {COUNT_ENV}={count}: {exc}") from None


def prunes(shard: Shard | None) -> bool:
    """Whether this process prunes: unsharded, or shard 0 of N.

    Deleting is by digest, and what may be deleted depends on every kept tag of the
    entry; one deciding process keeps that whole and caps deletions once per run.
    """
    return shard is None or shard.index == 0


def bucket(key: str, count: int) -> int:
    """The shard index (0..count-1) that owns `key`; stable across processes."""
    if count < 1:
        raise ValueError(f"count must be at least 1, found {count}")
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    # 64 bits: the modulo bias for any realistic count is below 1e-17.
    return int.from_bytes(digest[:8], "big") % count


def owns(shard: Shard, key: str) -> bool:
    return bucket(key, shard.count) == shard.index


def entry_key(source: str, destination: str) -> str:
    """Canonical key of one repository pair (use repository names, without tags).

    The destination is part of it: one source mirrored to two places is two
    independent pieces of work.
    """
    return f"{source}{_SEP}{destination}"


def tag_key(entry: str, tag: str) -> str:
    return f"{entry}{_SEP}{tag}"


def owns_tag(shard: Shard, entry: str, tag: str) -> bool:
    """Whether `shard` checks and copies `tag` of the entry keyed `entry`."""
    return owns(shard, tag_key(entry, tag))


def _default_key(item: object) -> str:
    # ResolvedEntry and similar: repository names only, so `repo:tag` and `repo`
    # entries of one repository pair key their tags identically.
    source, destination = getattr(item, "source", None), getattr(item, "destination", None)
    if source is not None and destination is not None:
        return entry_key(_name(source), _name(destination))
    return str(item)


def _name(ref: object) -> str:
    return str(getattr(ref, "name", ref))


@dataclass(frozen=True)
class Portion(Generic[T]):
    """One entry as seen by one shard: which of its tags this shard handles."""

    entry: T
    key: str
    shard: Shard | None  # None: not sharded, every tag is ours

    def owns(self, tag: str) -> bool:
        return self.shard is None or owns_tag(self.shard, self.key, tag)

    def select(self, tags: Iterable[str]) -> list[str]:
        """`tags` this shard handles, in their original order."""
        return [t for t in tags if self.owns(t)]


def split_entries(
    entries: Sequence[T],
    shard: Shard | None,
    *,
    key: Callable[[T], str] = _default_key,
    fixed_tag: Callable[[T], str | None] | None = None,
) -> list[Portion[T]]:
    """Each entry with this shard's share of its tags, in the original order.

    Entries stay in for every shard because their tag lists are only known after
    listing. `fixed_tag` names the one tag of an entry known without contacting
    anything (a `repo:tag` source); such an entry is dropped from every shard but
    its owner, so it costs the other shards no request at all.
    """
    out: list[Portion[T]] = []
    for entry in entries:
        portion = Portion(entry, key(entry), shard)
        tag = fixed_tag(entry) if fixed_tag is not None else None
        if tag is not None and not portion.owns(tag):
            continue
        out.append(portion)
    return out
