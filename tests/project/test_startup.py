"""Start-up: a command loads what it runs, not what the scheduler needs (a CronJob pays
the start-up of every one-shot run).

Timings are bench/startup.py's; these tests hold the rule that keeps them low: which
modules a process has loaded by the time it exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncer.cli import build_parser
from syncer.commands import COMMANDS
from tests.support.fleet import make_fleet
from tests.support.images import push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml

# Only `syncer schedule` uses these.
SCHEDULER_ONLY = [
    "apscheduler",
    "aiohttp.web",
    "syncer.service.scheduler",
    "syncer.service.events",
    "syncer.service.http",
]

# A one-shot `syncer sync` without `verify:`, off a terminal, uses none of these.
NOT_FOR_A_PLAIN_SYNC = [
    *SCHEDULER_ONLY,
    "rich",  # progress bars, on a terminal only
    "cryptography",  # verify: only
    "sigstore",
    "sigstore_models",
    "syncer.verify.verifier",  # (places.py, the referrer formats, serves every run)
    "syncer.verify.bundle",
    "syncer.verify.keyless",
    "syncer.verify.tlog",
    "syncer.store.bundle",  # syncer bundle
    "syncer.store.tarpack",  # tar stores, for references that name one
    "syncer.store.ociarchive",
    "syncer.store.dockerread",
    "syncer.store.dockerwrite",
    "tarfile",
    "prometheus_client",  # --metrics-file / --pushgateway only
    "click",  # httpx's own command line (see syncer/__main__.py)
]

# What the `syncer` script runs, noting at exit every module the process loaded.
_PROBE = """\
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from syncer.__main__ import run
run()
"""


def loaded_by(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `syncer ARGS` as the console script does; its result and the modules it loaded."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return proc, set(json.loads(out.read_text()))


def present(modules: set[str], names: list[str]) -> list[str]:
    """Which of `names` (or their submodules) are among `modules`."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_command_line_loads_no_scheduler_machinery() -> None:
    probe = (
        "import json, sys, syncer.__main__ as m; m.prepare_imports(); import syncer.cli; "
        f"print(json.dumps([n for n in {SCHEDULER_ONLY!r} if n in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_no_command_and_no_engine(args: list[str], tmp_path: Path) -> None:
    proc, modules = loaded_by(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("syncer 0.1.0" in proc.stdout) == (args == ["--version"])
    commands = sorted(m for m in modules if m.startswith("syncer.commands."))
    assert commands == []
    heavy = ["pydantic", "pydantic_core", "aiohttp", "httpx", "structlog", "ruamel", "yaml"]
    assert present(modules, [*heavy, *NOT_FOR_A_PLAIN_SYNC]) == []
    assert {"syncer.cli", "syncer.commands"} <= modules  # the probe did run syncer


def test_a_no_op_sync_loads_only_the_sync_engine(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(2, 2)
    fleet.push(src.seed_url)
    for repo, tag, item in fleet.items():  # already in sync: the run copies nothing
        push(dst.seed_url, f"m/{repo}", item, tag)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, src, dst)
    report = tmp_path / "report.json"
    before = dst.mark()

    proc, modules = loaded_by(["sync", "-c", str(cfg), "--report", str(report), "-q"], tmp_path)

    assert proc.returncode == 0, proc.stderr
    totals = json.loads(report.read_text())["totals"]
    assert (totals["tags_checked"], totals["tags_up_to_date"], totals["tags_copied"]) == (4, 4, 0)
    assert [r.method for r in dst.requests_since(before)].count("PUT") == 0
    assert present(modules, NOT_FOR_A_PLAIN_SYNC) == []
    commands = sorted(m for m in modules if m.startswith("syncer.commands."))
    assert commands == ["syncer.commands.sync"]
    # It did load the engine it ran (a probe that loaded nothing would pass the rest).
    assert {"aiohttp.client", "syncer.sync.runner", "syncer.registry.client"} <= modules


def test_every_listed_command_has_its_own_parser() -> None:
    """Each `COMMANDS` entry is registered by the module it names, with its own options."""
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([name, "--help"])
        assert info.value.code == 0, name
    assert parser.parse_args(["sync", "--dry-run", "-q"]).dry_run is True
    assert parser.parse_args(["logout", "docker.io"]).registry == "docker.io"
    assert parser.parse_args(["tags", "--no-digests", "r/x"]).no_digests is True
