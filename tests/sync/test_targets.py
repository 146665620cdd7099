"""Which entries an event names, and how narrowly its tag is checked (no registry needed)."""

from __future__ import annotations

import json
from pathlib import Path

from syncer.config.syncfile import ResolvedEntry, load_config
from syncer.sync.targets import Check, check_for_tag, covers, pin_tag


def entries(tmp_path: Path, *sync: dict[str, object]) -> list[ResolvedEntry]:
    cfg = tmp_path / "sync.yaml"
    cfg.write_text(json.dumps({"version": 1, "sync": list(sync)}))
    return load_config(cfg, env={}).entries


def test_covers_exact_glob_repositories_and_templates(tmp_path: Path) -> None:
    exact, glob, template, pinned = entries(
        tmp_path,
        {"source": "src.example/team/app", "destination": "dst.example/m/app"},
        {
            "source": "src.example/team/*",
            "destination": "dst.example/mirror",
            "repositories": {"deny": ["team/secret.*"]},
        },
        {"source": "src.example/other/tool", "destination": "dst.example/x/{repo}-copy"},
        {"source": "src.example/team/app:1.0", "destination": "dst.example/pinned"},
    )
    assert covers(exact, "src.example", "team/app") is exact
    assert covers(exact, "other.example", "team/app") is None
    assert covers(exact, "src.example", "team/app2") is None
    hit = covers(glob, "src.example", "team/sub/app")
    assert hit is not None and str(hit.destination) == "dst.example/mirror/sub/app"
    assert str(hit.source) == "src.example/team/sub/app" and hit.glob is None
    assert covers(glob, "src.example", "team/secret-x") is None  # repositories.deny
    assert covers(glob, "src.example", "teams/app") is None
    rendered = covers(template, "src.example", "other/tool")
    assert rendered is not None and str(rendered.destination) == "dst.example/x/tool-copy"
    assert check_for_tag(pinned, "1.0") is Check.TAG
    assert check_for_tag(pinned, "2.0") is Check.NONE  # a one-tag entry wants only its tag
    assert pin_tag(pinned, "1.0") is pinned


def test_tag_rules_decide_how_narrow_the_check_is(tmp_path: Path) -> None:
    plain, latest, immutable = entries(
        tmp_path,
        {
            "source": "src.example/a",
            "destination": "dst.example/a",
            "tags": {"deny": ["dev-.*"]},
            "tag_template": "{tag}-mirror",
            "prune": True,
        },
        {"source": "src.example/b", "destination": "dst.example/b", "tags": {"latest": 2}},
        {"source": "src.example/c", "destination": "dst.example/c", "tags": {"immutable": ["v.*"]}},
    )
    assert check_for_tag(plain, "1.0") is Check.TAG
    assert check_for_tag(plain, "dev-1") is Check.NONE
    one = pin_tag(plain, "1.0")
    assert (str(one.source), str(one.destination)) == (
        "src.example/a:1.0",
        "dst.example/a:1.0-mirror",
    )
    assert one.prune is False  # a one-tag check never prunes: it has no listing to judge by
    assert check_for_tag(latest, "9.9.9") is Check.WHOLE
    assert check_for_tag(immutable, "v1") is Check.WHOLE
    assert check_for_tag(immutable, "latest") is Check.TAG
