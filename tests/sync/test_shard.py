"""syncer.sync.shard: parsing, environment, and the exactly-once / balance guarantees."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from syncer.sync.shard import (
    Shard,
    bucket,
    entry_key,
    owns,
    owns_tag,
    parse_shard,
    shard_from_env,
    split_entries,
)


def test_parse_shard_is_zero_based() -> None:
    assert parse_shard("0/4") == Shard(0, 4)
    assert parse_shard(" 3 / 4 ") == Shard(3, 4)
    assert parse_shard("0/1") == Shard(0, 1)
    assert str(parse_shard("2/5")) == "2/5"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "expected INDEX/COUNT"),
        ("4", "expected INDEX/COUNT"),
        ("a/4", "expected INDEX/COUNT"),
        ("-1/4", "expected INDEX/COUNT"),
        ("1/4/2", "expected INDEX/COUNT"),
        ("1.0/4", "expected INDEX/COUNT"),
        ("4/4", "0-based, so 4 shards are 0/4 .. 3/4"),
        ("0/0", "count must be at least 1"),
    ],
)
def test_parse_shard_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_shard(text)
    assert repr(text) in str(info.value)
    assert needle in str(info.value)


def test_shard_validates_itself() -> None:
    with pytest.raises(ConfigError):
        Shard(-1, 3)
    with pytest.raises(ConfigError):
        Shard(0, 0)


def test_shard_from_env() -> None:
    assert shard_from_env({}) is None
    assert shard_from_env({"JOB_COMPLETION_INDEX": "", "JOB_COMPLETIONS": ""}) is None
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2", "JOB_COMPLETIONS": "4"}) == Shard(2, 4)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"JOB_COMPLETION_INDEX": "1"}, "Kubernetes does not set JOB_COMPLETIONS"),
        ({"JOB_COMPLETIONS": "4"}, "completionMode: Indexed"),
        ({"JOB_COMPLETION_INDEX": "x", "JOB_COMPLETIONS": "4"}, "'x' is not a non-negative"),
        ({"JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "-4"}, "'-4' is not a non-negative"),
        ({"JOB_COMPLETION_INDEX": "4", "JOB_COMPLETIONS": "4"}, "outside 0..3"),
        ({"JOB_COMPLETION_INDEX": "0", "JOB_COMPLETIONS": "0"}, "at least 1"),
    ],
)
def test_shard_from_env_errors(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        shard_from_env(env)


def _fleet(seed: int) -> list[tuple[str, list[str]]]:
    """One huge repository next to many small ones, tag names reused across entries."""
    rng = random.Random(seed)
    fleet = [
        (entry_key("docker.io/library/huge", "reg:5000/m/huge"), [f"1.{i}" for i in range(1000)])
    ]
    for i in range(rng.randint(20, 60)):
        tags = [rng.choice(["latest", "stable", "edge"])] + [
            f"{rng.randint(0, 9)}.{rng.randint(0, 99)}-{rng.random():.6f}"
            for _ in range(rng.randint(0, 30))
        ]
        fleet.append((entry_key(f"docker.io/team/app{i}", f"reg:5000/m/app{i}"), tags))
    return fleet


@pytest.mark.parametrize("count", range(1, 8))
def test_every_tag_is_handled_exactly_once(count: int) -> None:
    for seed in range(5):
        fleet = _fleet(seed)
        for key, tags in fleet:
            for tag in tags:
                owners = [i for i in range(count) if owns_tag(Shard(i, count), key, tag)]
                assert len(owners) == 1, (key, tag, owners)
        # The same through split_entries/Portion, the way a runner would use it.
        seen: Counter[tuple[str, str]] = Counter()
        for i in range(count):
            for portion in split_entries(fleet, Shard(i, count), key=lambda e: e[0]):
                seen.update((portion.key, t) for t in portion.select(portion.entry[1]))
        assert seen == Counter((k, t) for k, tags in fleet for t in tags)


@pytest.mark.parametrize("count", range(2, 8))
def test_work_is_balanced(count: int) -> None:
    # At least ~500 tags a shard, so a 1.3x spread is far outside chance (> 4 sigma).
    total = max(2000, 500 * count)
    keys = [f"{entry_key(f'src/app{i % 37}', f'dst/app{i % 37}')}\0{i}" for i in range(total)]
    sizes = Counter(bucket(k, count) for k in keys)
    assert len(sizes) == count
    assert max(sizes.values()) / min(sizes.values()) < 1.3


@pytest.mark.parametrize("count", [2, 3, 4])
def test_one_huge_entry_is_split_by_tag(count: int) -> None:
    key = entry_key("docker.io/library/huge", "reg:5000/m/huge")
    tags = [f"{i // 100}.{i % 100}" for i in range(1000)]
    sizes = Counter(i for i in range(count) for t in tags if owns_tag(Shard(i, count), key, t))
    mean = len(tags) / count
    assert all(abs(n - mean) < 0.25 * mean for n in sizes.values()), sizes
    assert sum(sizes.values()) == len(tags)


def test_same_tag_name_spreads_over_shards() -> None:
    # "latest" of 200 repositories must not all land on one shard.
    owners = {bucket(f"{entry_key(f's/a{i}', f'd/a{i}')}\0latest", 4) for i in range(200)}
    assert owners == {0, 1, 2, 3}


def test_single_shard_owns_everything() -> None:
    assert all(owns(Shard(0, 1), f"k{i}") for i in range(100))
    portions = split_entries(["a", "b"], None, fixed_tag=lambda _: "x")
    assert [p.entry for p in portions] == ["a", "b"]
    assert portions[0].select(["1", "2"]) == ["1", "2"]


def test_fixed_tag_entries_go_to_their_owner_only() -> None:
    entries = [(f"s/a{i}", "v1") for i in range(50)]
    kept = [
        [
            p.entry
            for p in split_entries(
                entries, Shard(i, 3), key=lambda e: e[0], fixed_tag=lambda e: e[1]
            )
        ]
        for i in range(3)
    ]
    assert sorted(e for part in kept for e in part) == sorted(entries)
    assert all(part for part in kept)  # 50 entries: every shard gets some


def test_deterministic_across_calls_and_processes() -> None:
    keys = [f"k{i}\0tag{i}" for i in range(50)]
    here = [bucket(k, 7) for k in keys]
    assert here == [bucket(k, 7) for k in keys]
    # A new interpreter has a different str hash salt; sha256 must not care.
    code = (
        "import sys; from syncer.sync.shard import bucket;"
        "print(','.join(str(bucket(f'k{i}\\0tag{i}', 7)) for i in range(50)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.strip()
    assert out == ",".join(map(str, here))
    # Pinned values: changing the rule would reshuffle work between running shards.
    assert [bucket(f"a\0{t}", 4) for t in ("latest", "1.0", "2.0")] == [3, 2, 1]


def test_default_key_uses_repository_names(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        "version: 1\nsync:\n"
        "  - {source: docker.io/library/alpine:3.20, destination: reg.example.com/m/alpine}\n"
        "  - {source: docker.io/library/alpine, destination: reg.example.com/m/alpine}\n",
        encoding="utf-8",
    )
    entries = load_config(path, env={}).entries
    portions = split_entries(entries, Shard(0, 2))
    expected = entry_key("docker.io/library/alpine", "reg.example.com/m/alpine")
    # `repo:tag` and `repo` entries of one pair key a tag identically, so either
    # spelling of the config sends tag 3.20 to the same shard.
    assert [p.key for p in portions] == [expected, expected]
