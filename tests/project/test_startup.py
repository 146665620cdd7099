"""Start-up: a command loads what it runs, not what the scheduler needs (a CronJob pays
the start-up of every one-shot run)."""

from __future__ import annotations

import json
import subprocess
import sys

# Only `syncer schedule` uses these.
SCHEDULER_ONLY = [
    "apscheduler",
    "aiohttp.web",
    "syncer.service.scheduler",
    "syncer.service.events",
    "syncer.service.http",
]


def test_the_command_line_loads_no_scheduler_machinery() -> None:
    probe = (
        "import json, sys, syncer.__main__ as m; m.prepare_imports(); import syncer.cli; "
        f"print(json.dumps([n for n in {SCHEDULER_ONLY!r} if n in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
