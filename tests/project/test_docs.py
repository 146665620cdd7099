"""The manual cannot drift from the code: every sync.yaml snippet loads through the real config
loader, every `syncer ...` command line parses with the real argument parser, every metric named
exists in the exporter, every file path named exists, every link and #anchor resolves, every
alert's runbook is a heading of docs/alerts.md, and the site builds in strict mode.

The pages are README.md (the front page) and every docs/**/*.md (the manual, mkdocs.yml)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import markdown
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from syncer.cli import build_parser
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from tests.support.demo_run import KeptDemo

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MANUAL = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [README, *MANUAL]
# A snippet of part of a sync.yaml says so on the line before its fence; it is checked inside
# a minimal file that has what it lacks.
FRAGMENT = "<!-- sync.yaml fragment -->"
SYNC_KEYS = {"version", "defaults", "registries", "sync", "events"}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_INLINE = re.compile(r"`syncer ([^`]+)`")  # `syncer sync --dry-run` in a sentence
_METRIC = re.compile(r"\bsyncer_[a-z0-9_]*[a-z0-9]\b")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> Iterator[Block]:
    for page in PAGES:
        text = page.read_text()
        for m in _FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            yield Block(page, line, m[1].lower(), m[2], before == FRAGMENT)


def sync_yaml_blocks() -> list[Block]:
    return [b for b in blocks() if b.lang in ("yaml", "yml") and _is_sync_yaml(b)]


def _is_sync_yaml(block: Block) -> bool:
    return block.fragment or block.text.lstrip().startswith("version:")


def _public_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# The production trusted root that sigstore-python carries (what `keyless:` defaults to).
_PRODUCTION_ROOT = resources.files("sigstore._store").joinpath(
    "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev", "trusted_root.json"
)


def _placeholders(text: str, tmp: Path) -> tuple[str, dict[str, str]]:
    """The snippet with its files made real under `tmp`, and an environment for its ${VARS}."""
    key = tmp / "placeholder.pub"
    _public_key(key)
    env = {}
    for name in _VAR.findall(text):
        env[name] = str(key) if name.endswith("_FILE") else f"placeholder-{name.lower()}"
    for path in set(re.findall(r"/etc/syncer/[\w./-]+", text)):
        local = tmp / path.lstrip("/")
        if path.endswith(".pub"):
            _public_key(local)
        elif path.endswith("trusted_root.json"):
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(_PRODUCTION_ROOT.read_bytes())  # a real one: it is parsed
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text("placeholder\n")
        text = text.replace(path, str(local))
    return text, env


def _completed(block: Block, text: str) -> str:
    """A fragment inside a minimal sync.yaml: `version:` and one entry where it has none."""
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict), f"{block.where}: a sync.yaml fragment is a mapping"
    head = "" if "version" in data else "version: 1\n"
    tail = (
        ""
        if "sync" in data
        else (
            "\nsync:\n  - source: docker.io/library/alpine\n"
            "    destination: registry.example.com/mirror/alpine\n"
        )
    )
    return head + text + tail


@pytest.mark.parametrize("block", sync_yaml_blocks(), ids=lambda b: b.where)
def test_every_sync_yaml_snippet_loads(block: Block, tmp_path: Path) -> None:
    text, env = _placeholders(block.text, tmp_path)
    if block.fragment:
        text = _completed(block, text)
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    try:
        loaded = load_config(path, env={**os.environ, **env})
    except ConfigError as exc:
        pytest.fail(f"{block.where}: the snippet does not load:\n{exc}")
    assert loaded.entries, block.where


def test_snippets_that_look_like_sync_yaml_are_checked() -> None:
    """A snippet of sync.yaml keys that is neither a whole file (`version:` first) nor marked
    as a fragment would escape the test above: mark it."""
    unmarked = []
    for b in blocks():
        if b.lang not in ("yaml", "yml") or _is_sync_yaml(b):
            continue
        with contextlib.suppress(yaml.YAMLError):
            data = yaml.safe_load(b.text)
            if isinstance(data, dict) and data and set(data) <= SYNC_KEYS:
                unmarked.append(b.where)
    assert not unmarked, f"put {FRAGMENT} on the line before these fences: {unmarked}"
    # The test above checks something on the front page and across the manual.
    checked = [b.page for b in sync_yaml_blocks()]
    assert checked.count(README) >= 2, checked
    assert len([p for p in checked if p in MANUAL]) >= 10, checked


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv) of every `syncer ...` line in a shell block (continuations joined)."""
    found = []
    for b in blocks():
        if b.lang not in ("sh", "bash", "console", "shell", ""):
            continue
        lines = b.text.replace("\\\n", " ").splitlines()
        for offset, raw in enumerate(lines):
            line = raw.strip().removeprefix("$ ")
            line = re.sub(r"^(\w+=\S*\s+)+", "", line)  # VAR=value syncer ...
            if not re.match(r"(\.venv/bin/)?syncer\s", line):
                continue
            line = line.split(" #", 1)[0]
            words = shlex.split(line.replace("|", " | ").replace("&&", " && "))
            argv = []
            for word in words[1:]:
                if word in ("|", "&&", ";", ">", "2>&1") or word.startswith((">", "2>")):
                    break
                argv.append(word)
            found.append((f"{b.where}+{offset + 1}", argv))
    for page in PAGES:
        text = _FENCE.sub(lambda m: "\n" * m[0].count("\n"), page.read_text())
        for m in _INLINE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            # A synopsis (`syncer tags REPO [--output json]`): its options must exist.
            spans = shlex.split(m[1].replace("[", "").replace("]", ""))
            words = [re.sub(r"\bN\b", "8", w) for w in spans if w != "..."]  # N: a number
            found.append((f"{page.relative_to(ROOT)}:{line}", words))
    return found


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1]
    return None


def test_every_command_line_shown_parses() -> None:
    lines = command_lines()
    # README and the manual show many; a short list is a broken extractor.
    assert len([w for w, _ in lines if w.startswith("README.md")]) >= 10, lines
    assert len([w for w, _ in lines if w.startswith("docs/")]) >= 60, lines
    parser = build_parser()
    # A command named in a sentence (`syncer bundle`) need not have its arguments.
    named = {where for where, argv in lines if len(argv) == 1 and "+" not in where}
    bad = {
        where: f"{shlex.join(argv)}: {problem}"
        for where, argv in lines
        if (problem := _parse(parser, argv)) is not None and where not in named
    }
    assert not bad, bad


def exported_metrics() -> set[str]:
    """Every metric family the scheduler's /metrics and the sync's --metrics-file can show."""
    from prometheus_client.parser import text_string_to_metric_families

    from syncer.service.metrics import Metrics

    names = set()
    for family in text_string_to_metric_families(Metrics().text().decode()):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    for source in (ROOT / "syncer").rglob("*.py"):
        # Families registered only once a run saw them (info metrics, per-registry gauges).
        names.update(re.findall(r"[\"'](syncer_[a-z0-9_]+)[\"']", source.read_text()))
    suffixes = ("_total", "_bucket", "_sum", "_count", "_created", "_info")
    return names | {n + s for n in names for s in suffixes}


def test_every_metric_named_exists() -> None:
    exported = exported_metrics()
    texts = [*PAGES, *sorted((ROOT / "deploy").rglob("*.y*ml")), *(ROOT / "deploy").rglob("*.json")]
    named = {(m, p.relative_to(ROOT)) for p in texts for m in _METRIC.findall(p.read_text())}
    assert len({m for m, p in named if p.parts[0] == "docs"}) >= 25, named
    unknown = sorted({(m, str(p)) for m, p in named if m not in exported})
    assert not unknown, unknown


def test_every_exported_metric_is_documented() -> None:
    """The other direction: each family /metrics shows is named in the manual."""
    from prometheus_client.parser import text_string_to_metric_families

    from syncer.service.metrics import Metrics

    families = {f.name for f in text_string_to_metric_families(Metrics().text().decode())}
    # prometheus_client's `_created` series of a histogram parse as families of their own.
    families = {f.removesuffix("_created") for f in families}
    manual = " ".join(p.read_text() for p in MANUAL)
    named = set(_METRIC.findall(manual))
    suffixes = ("", "_total", "_seconds", "_bucket")
    undocumented = sorted(f for f in families if not any(f + s in named for s in suffixes))
    assert len(families) >= 20, families
    assert not undocumented, undocumented


def test_the_manual_builds_in_strict_mode(tmp_path: Path) -> None:
    # The project's venv, else the one running the tests (a worktree borrowing a venv).
    venvs = os.pathsep.join([str(ROOT / ".venv" / "bin"), str(Path(sys.executable).parent)])
    mkdocs = shutil.which("mkdocs", path=venvs) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (scripts/setup installs it with .[dev])")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "index.html").stat().st_size > 1000


def test_the_nav_lists_every_page() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(item: object) -> Iterator[str]:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                yield from pages(value)
        elif isinstance(item, list):
            for value in item:
                yield from pages(value)

    listed = sorted(pages(nav))
    assert listed == sorted(str(p.relative_to(ROOT / "docs")) for p in MANUAL)
    assert len(listed) >= 12


def anchors(page: Path) -> set[str]:
    """The ids mkdocs gives the page's headings (Python-Markdown's toc, as mkdocs runs it)."""
    md = markdown.Markdown(extensions=["toc", "tables", "attr_list"])
    md.convert(page.read_text())

    def ids(tokens: list[dict[str, object]]) -> Iterator[str]:
        for token in tokens:
            yield str(token["id"])
            yield from ids(token["children"])  # type: ignore[arg-type]

    return set(ids(md.toc_tokens))  # type: ignore[attr-defined]


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def links() -> list[tuple[str, Path, str]]:
    """(where, target file, anchor) of every relative link in README and the manual."""
    found = []
    for page in PAGES:
        text = _FENCE.sub(lambda m: "\n" * m[0].count("\n"), page.read_text())
        text = _CODE_SPAN.sub(lambda m: " " * len(m[0]), text)
        for m in _LINK.finditer(text):
            url = m[1]
            if re.match(r"[a-z]+:", url):
                continue  # https:, mailto:
            path, _, anchor = url.partition("#")
            target = (page.parent / path).resolve() if path else page
            found.append(
                (
                    f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}",
                    target,
                    anchor,
                )
            )
    return found


def test_every_link_and_anchor_resolves() -> None:
    found = links()
    assert len([w for w, _, _ in found if w.startswith("README.md")]) >= 15, found
    assert len([a for _, _, a in found if a]) >= 20, found
    broken = []
    for where, target, anchor in found:
        if not target.exists():
            broken.append(f"{where}: {target.relative_to(ROOT)} does not exist")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{where}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, broken


_PATH = re.compile(
    r"(?<![\w/.${-])((?:syncer|tests|deploy|scripts|bench|demo|docs|\.ci)/[\w./-]*\w/?)"
)


# Words that only look like paths: a ratio, and kubectl's `deploy/NAME` (a Deployment).
NOT_PATHS = {"syncer/skopeo", "deploy/syncer-scheduler"}


def test_every_file_named_exists() -> None:
    """`syncer/sync/planner.py`, `deploy/kubernetes/base`: what the pages name is there."""
    named = [
        (f"{page.relative_to(ROOT)}", m[1])
        for page in PAGES
        for m in _PATH.finditer(re.sub(r"https?://\S+", " ", page.read_text()))
    ]
    assert len(named) >= 40, named
    missing = sorted(
        {(w, path) for w, path in named if not (ROOT / path).exists() and path not in NOT_PATHS}
    )
    assert not missing, missing


RULE_FILES = [
    ROOT / "deploy" / "prometheus" / "syncer-rules.yaml",
    ROOT / "deploy" / "kubernetes" / "overlays" / "monitoring" / "prometheusrule.yaml",
]


def test_every_alert_links_to_its_runbook() -> None:
    """Each alert's `runbook` names its own heading of docs/alerts.md, which exists; the unit
    tests' expected annotations say the same; and the page has a runbook for no other alert."""
    alerts_page = ROOT / "docs" / "alerts.md"
    headings = anchors(alerts_page)
    runbooks: dict[str, str] = {}
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        groups = doc["spec"]["groups"] if "spec" in doc else doc["groups"]
        for rule in (r for g in groups for r in g["rules"] if "alert" in r):
            runbook = rule["annotations"]["runbook"]
            assert runbook == f"docs/alerts.md#{rule['alert'].lower()}", (path.name, rule)
            runbooks[rule["alert"]] = runbook
    assert len(runbooks) >= 8, runbooks
    for alert, runbook in runbooks.items():
        page, _, anchor = runbook.partition("#")
        assert (ROOT / page) == alerts_page and anchor in headings, (alert, runbook, headings)
    tests = yaml.safe_load((ROOT / "deploy" / "prometheus" / "syncer-rules.test.yaml").read_text())
    expected = [
        (check["alertname"], alert["exp_annotations"]["runbook"])
        for test in tests["tests"]
        for check in test["alert_rule_test"]
        for alert in check["exp_alerts"]
    ]
    assert expected and all(runbooks[name] == runbook for name, runbook in expected), expected
    sections = {
        line[3:].strip() for line in alerts_page.read_text().splitlines() if line.startswith("## ")
    }
    assert sections == set(runbooks), sections ^ set(runbooks)


def test_the_front_page_example_runs_on_the_demo_registries(
    kept_demo: KeptDemo, tmp_path: Path
) -> None:
    """README's "Try it here": `scripts/demo --keep` prints a registries: block; README's first
    sync.yaml with that block copies the four tags README names, then copies nothing. (The
    demo run is shared with tests/commands/test_cli.py, which reads only what came before.)"""
    text = kept_demo.output
    assert "registries:\n  docker.io:\n    endpoint: http://127.0.0.1:" in text, text
    block = text[text.rindex("registries:\n") :]
    (first,) = [b for b in sync_yaml_blocks() if b.page == README and not b.fragment]
    assert "registry.internal:5000/library/alpine" in first.text
    config = tmp_path / "first.yaml"
    config.write_text(re.sub(r"(?ms)^registries:\n.*?(?=^sync:)", block, first.text))
    copied = []
    for run in ("first", "second"):
        report = tmp_path / f"{run}.json"
        argv = ["sync", "-c", str(config), "-q", "--report", str(report)]
        proc = subprocess.run(
            [sys.executable, "-m", "syncer", *argv],
            env=kept_demo.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(report.read_text())
        copied.append(
            sorted(
                f"{e['destination'].rsplit('/', 1)[-1].split(':')[0]}:{t['tag']}"
                for e in data["entries"]
                for t in e["tags"]
                if t["action"] == "copied"
            )
        )
        assert data["totals"]["tags_checked"] == 4, data["totals"]
    # What README says the first run copies, and that the second copies nothing.
    assert copied == [["alpine:3.19", "alpine:3.20", "alpine:latest", "nginx:1.27"], []]
    assert kept_demo.stop() == 0  # Ctrl-C ends `--keep` cleanly


def test_the_report_shown_has_the_report_s_fields() -> None:
    """The `--report` example of docs/commands.md has exactly the keys a report has."""
    from syncer.sync.outcome import Outcome
    from syncer.sync.report import EntryReport, RunReport, TagOutcome

    (shown,) = [
        json.loads(b.text)
        for b in blocks()
        if b.lang == "json" and b.page.name == "commands.md" and "totals" in b.text
    ]
    entry = EntryReport("docker.io/library/alpine", "registry.internal:5000/library/alpine")
    entry.tags.append(TagOutcome("3.20", Outcome.COPIED))
    real = RunReport(started="2026-12-08T01:00:00+00:00", entries=[entry]).to_json()
    assert shown.keys() == real.keys()
    assert shown["totals"].keys() == real["totals"].keys()
    assert shown["entries"][0].keys() == real["entries"][0].keys()
    assert shown["entries"][0]["tags"][0].keys() == real["entries"][0]["tags"][0].keys()


_ITEM = re.compile(r"^( *)([-*+]|\d+\.) ")


def test_lists_render_as_lists_in_the_manual() -> None:
    """Python-Markdown (mkdocs) is stricter than GitHub: a list needs a blank line after a
    paragraph, and a nested list 4 spaces, or it renders as running text."""
    bad = []
    for page in MANUAL:
        lines = _FENCE.sub(lambda m: "\n" * m[0].count("\n"), page.read_text()).splitlines()
        for n, (before, line) in enumerate(zip(["", *lines], lines, strict=False), start=1):
            if not (m := _ITEM.match(line)):
                continue
            where = f"{page.relative_to(ROOT)}:{n}"
            if m[1] == "" and before.strip() and not before.startswith((" ", "<!--")):
                if not _ITEM.match(before):
                    bad.append(f"{where}: put a blank line before this list")
            elif 0 < len(m[1]) < 4:
                bad.append(f"{where}: indent a nested list by 4 spaces")
    assert not bad, bad
