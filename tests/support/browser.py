"""Headless chromium, driven from its command line: the DOM after load, and screenshots."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import tools

# Loopback only: no component updates, sync, metrics or other calls home.
_QUIET = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def _run(url: str, profile: Path, *args: str) -> str:
    proc = subprocess.run(
        [tools.chromium(), *_QUIET, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM as chromium serializes it once loaded (scripts, had any run, included)."""
    return _run(url, profile, "--dump-dom")


def screenshot(url: str, profile: Path, out: Path, size: tuple[int, int]) -> None:
    _run(url, profile, f"--screenshot={out}", f"--window-size={size[0]},{size[1]}")
    assert out.is_file()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
