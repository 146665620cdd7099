"""One run of `scripts/demo --keep` shared by the tests that read it (tests/conftest.py's
`kept_demo`): the demo costs ~10 s of CPU, and its `--keep` output carries all the non-keep
run prints, so one run serves both the demo's own test and README's example on its registries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The last line of the `registries:` block that `--keep` prints (the line after it ends it).
_BLOCK_END = "  registry.internal:5000:"


class KeptDemo:
    """`python -m demo --keep`, started and read up to the end of its `registries:` block."""

    def __init__(self, timeout_s: float = 240.0) -> None:
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo", "--keep"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # A hung demo fails its tests, not the suite; SIGTERM lets it stop its registries.
        self._killer = threading.Timer(timeout_s, self.proc.terminate)
        self._killer.start()
        self._code: int | None = None
        lines: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.append(line)
            if line.startswith(_BLOCK_END):
                lines.append(self.proc.stdout.readline())
                break
        self.output = "".join(lines)

    def stop(self) -> int:
        """Ctrl-C (SIGINT), as a user would end `--keep`; the demo's exit code. Idempotent."""
        if self._code is None:
            try:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGINT)
                self._code = self.proc.wait(timeout=60)
            finally:
                self._killer.cancel()
                if self.proc.poll() is None:
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
                assert self.proc.stdout is not None
                self.output += self.proc.stdout.read()
                self.proc.stdout.close()
        return self._code
