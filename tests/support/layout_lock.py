"""Another process holding a layout's writer lock, as a second syncer would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK_NAME = ".syncer.lock"

_HOLD = """
import sys
from pathlib import Path
from syncer.store import lock
lock.acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def env() -> dict[str, str]:
    """The environment a syncer subprocess of the tests runs with: this checkout's code."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@contextmanager
def lock_held(layout: Path) -> Iterator[subprocess.Popen[str]]:
    """A real process holding `layout`'s lock until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(layout)],
        env=env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line == "held\n", f"the holder did not lock {layout}: {proc.stderr.read()}"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def holder_text(layout: Path) -> str:
    """What the lock file says about its holder (empty when nobody holds it)."""
    path = layout / LOCK_NAME
    return path.read_text() if path.exists() else ""
