"""The `syncer` command: exit codes, report, dry run, check, bad input, and the demo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from syncer.cli import main
from tests.support.demo_run import KeptDemo
from tests.support.fleet import assert_no_broken_tags, make_fleet, wait_for_requests
from tests.support.images import fetch_manifest_digest
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[2]


def pair(registry_factory: RegistryFactory) -> tuple[RunningRegistry, RunningRegistry]:
    return registry_factory("anon"), registry_factory("anon")


def test_sync_report_and_exit_codes(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = pair(registry_factory)
    fleet = make_fleet(2, 3)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst)
    (tmp_path / "out").mkdir()  # --report never creates folders
    report = tmp_path / "out" / "report.json"

    assert main(["check", "-c", str(cfg), "--log-format", "json"]) == 1  # out of sync
    out = capsys.readouterr().out
    assert out.count(" copy ") == 6
    assert main(["sync", "-c", str(cfg), "--report", str(report), "-q"]) == 0
    data = json.loads(report.read_text())
    assert data["status"] == "ok"
    assert data["totals"]["tags_copied"] == 6
    assert data["totals"]["bytes_copied"] == fleet.blob_bytes()
    assert [e["tags_copied"] for e in data["entries"]] == [3, 3]
    for repo, tag, item in fleet.items():
        assert fetch_manifest_digest(dst.url, f"m/{repo}", tag) == item.digest
    assert main(["check", "-c", str(cfg), "-q"]) == 0  # now in sync


def test_partial_failure_exits_1(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    src, dst = pair(registry_factory)
    entries = [{"source": f"{src.host}/does/not-exist", "destination": f"{dst.host}/m/x"}]
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst)
    report = tmp_path / "r.json"
    assert main(["sync", "-c", str(cfg), "--report", str(report), "-q"]) == 1
    data = json.loads(report.read_text())
    assert data["status"] == "failed"
    assert "NAME_UNKNOWN" in data["entries"][0]["errors"][0]["error"]


BAD_CONFIGS = {
    "unknown key": ("version: 1\nsync:\n  - source: a/b\n    destinaton: c/d\n", "destinaton"),
    "bad regex": (
        "version: 1\nsync:\n  - {source: a/b, destination: h:1/c, tags: {allow: ['(']}}\n",
        "sync[0].tags.allow[0]",
    ),
    "bad reference": ("version: 1\nsync:\n  - {source: A/B, destination: h:1/c}\n", "lowercase"),
    "bad tls": ("version: 1\nregistries:\n  h:1: {tls: maybe}\nsync: []\n", "tls"),
    "missing var": (
        "version: 1\nsync:\n  - {source: a/b, destination: '${NO_SUCH_VAR_X}/c'}\n",
        "NO_SUCH_VAR_X",
    ),
    "wrong version": ("version: 2\nsync:\n  - {source: a/b, destination: h:1/c}\n", "version"),
    "empty sync": ("version: 1\nsync: []\n", "sync"),
    "not yaml": ("version: 1\nsync: [\n", "line"),
    "wrong type": (
        "version: 1\nregistries:\n  h:1: {max_concurrency: lots}\n"
        "sync:\n  - {source: a/b, destination: h:1/c}\n",
        "max_concurrency",
    ),
    "digest without tag": (
        "version: 1\nsync:\n  - {source: 'a/b@sha256:" + "a" * 64 + "', destination: h:1/c}\n",
        "tag",
    ),
    "same source and destination": (
        "version: 1\nsync:\n  - {source: h:1/c, destination: h:1/c}\n",
        "sync[0]",
    ),
    "not a mapping": ("- just\n- a list\n", "mapping"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_invalid_config_exits_2_naming_the_problem(
    name: str,
    anon_registry: RunningRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text, expected = BAD_CONFIGS[name]
    cfg = tmp_path / "bad.yaml"
    # Point every entry at a live registry: proving nothing was contacted means something.
    cfg.write_text(text.replace("h:1", anon_registry.host))
    before = anon_registry.mark()
    assert main(["sync", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err
    assert expected in err
    assert "Traceback" not in err
    assert anon_registry.requests_since(before) == []


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["sync", "--no-such-flag"])
    assert info.value.code == 2


def test_process_entry_point_passes_exit_codes_through(tmp_path: Path) -> None:
    """`python -m syncer` is what the `syncer` script runs (imports with the GC paused)."""
    version = subprocess.run(
        [sys.executable, "-m", "syncer", "--version"], capture_output=True, text=True
    )
    assert (version.returncode, version.stdout.strip()) == (0, "syncer 0.1.0")
    missing = subprocess.run(
        [sys.executable, "-m", "syncer", "sync", "-c", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_entry_point_imports_leave_ssl_untouched() -> None:
    """prepare_imports skips aiohttp's CA loading, and only that: afterwards the ssl module
    loads system trust as before, and rich still imports (for progress bars)."""
    code = (
        "import ssl, sys; from syncer.__main__ import prepare_imports; prepare_imports()\n"
        "import aiohttp.connector as c, rich.progress\n"
        "print(c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'],"
        " ssl.create_default_context().cert_store_stats()['x509_ca'] > 0,"
        " 'set_default_verify_paths' in ssl.SSLContext.__dict__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "False"]


def test_demo_runs_end_to_end(kept_demo: KeptDemo) -> None:
    """README's first command (scripts/demo), minus the install step; its `--keep` run, shared
    with tests/project/test_docs.py, prints all a plain run does, and its exit code."""
    out = kept_demo.output
    assert "\ndemo: exit 0\n" in out, out
    assert "first run: exit 0" in out
    assert "second run (no-op): exit 0, copied 0, up to date 6" in out
    assert "writes 0" in out


def test_shards_together_copy_every_tag_exactly_once(
    registry_factory: RegistryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = pair(registry_factory)
    fleet = make_fleet(3, 6)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst)
    copied: list[str] = []
    for index in range(3):
        report = tmp_path / f"r{index}.json"
        # Shard 2 takes its share from the environment, like a pod of an Indexed Job.
        if index == 2:
            monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
            monkeypatch.setenv("JOB_COMPLETIONS", "3")
            args = ["sync", "-c", str(cfg), "-q", "--report", str(report)]
        else:
            args = ["sync", "-c", str(cfg), "-q", "--report", str(report), "--shard", f"{index}/3"]
        assert main(args) == 0
        data = json.loads(report.read_text())
        shard_tags = [
            f"{e['destination']}:{t['tag']}"
            for e in data["entries"]
            for t in e["tags"]
            if t["action"] == "copied"
        ]
        assert 0 < len(shard_tags) < fleet.tag_count
        copied += shard_tags
    assert len(copied) == len(set(copied)) == fleet.tag_count
    for repo, tag, item in fleet.items():
        assert fetch_manifest_digest(dst.url, f"m/{repo}", tag) == item.digest


def test_bad_shard_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("version: 1\nsync:\n  - {source: a.io/b, destination: c.io/d}\n")
    assert main(["sync", "-c", str(cfg), "--shard", "3/3"]) == 2
    assert "shard" in capsys.readouterr().err


def test_sigterm_stops_a_sync_cleanly(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    src, dst = pair(registry_factory)
    fleet = make_fleet(3, 3, app_size=4 * 1024 * 1024)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst)
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncer.cli", "sync", "-c", str(cfg), "--concurrency", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_requests(dst, "PUT", "/blobs/")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert assert_no_broken_tags(fleet, dst.url, "m/") < fleet.tag_count
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    assert assert_no_broken_tags(fleet, dst.url, "m/") == fleet.tag_count


def test_sync_report_to_a_directory_or_missing_folder_is_exit_2_before_any_request(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = pair(registry_factory)
    make_fleet(1, 1).push(src.seed_url)
    entry = {"source": f"{src.host}/*", "destination": f"{dst.host}/m"}
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [entry], src, dst)
    s0, d0 = src.mark(), dst.mark()
    for path in (tmp_path, tmp_path / "missing" / "r.json"):
        assert main(["sync", "-c", str(cfg), "-q", "--report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"syncer: error: --report {path}: "), err
        assert "give a file path whose parent folder exists" in err
    assert src.requests_since(s0) == [] and dst.requests_since(d0) == []
    assert not (tmp_path / "missing").exists()
