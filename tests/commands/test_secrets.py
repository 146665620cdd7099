"""Credentials never leak: not in logs, reports, errors, reprs, or to other hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from tests.support.fleet import make_fleet
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml


def test_full_run_output_has_no_password_or_token(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("token"), registry_factory("basic")
    fleet = make_fleet(2, 2)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    # One entry that fails, so error paths are in the output too.
    entries.append({"source": f"{src.host}/no/such", "destination": f"{dst.host}/m/x"})
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst)
    report = tmp_path / "report.json"
    code = main(["sync", "-c", str(cfg), "--report", str(report), "-v", "--log-format", "json"])
    out = capsys.readouterr()
    everything = out.out + out.err + report.read_text() + repr(load_config(cfg))
    assert code == 1
    assert json.loads(report.read_text())["totals"]["tags_copied"] == 4
    assert src.token_server is not None and src.token_server.token_count() > 0
    for secret in (src.password, dst.password):
        assert secret and secret not in everything
    assert "eyJ" not in everything  # no JWT (header starts with base64 '{"')
    assert "Basic " not in everything and "Bearer " not in everything


def test_wrong_password_error_names_the_fix_not_the_secret(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("basic")
    make_fleet(1, 1).push(src.seed_url)
    cfg = write_sync_yaml(
        tmp_path / "sync.yaml",
        [{"source": f"{src.host}/fleet/app0", "destination": f"{dst.host}/m/app"}],
        src,
        dst,
        registries={dst.host: {"credentials": {"username": "tester", "password": "hunter2-x"}}},
    )
    assert main(["sync", "-c", str(cfg), "-q"]) == 1
    err = capsys.readouterr().err
    assert "hunter2-x" not in err
    assert f"syncer login {dst.host}" in err
