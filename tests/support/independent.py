"""@sigstore/verify (npm, Node.js 20) as an independent judge of the bundles tests build.

`npm ci --prefix tests/support/npm` (scripts/setup, when node is on the machine) installs
it from the committed lock file; without node or that install the tests skip, saying so.
Only local files are read: the bundle, and a PEM public key or a trusted_root.json.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

NPM_DIR = Path(__file__).resolve().parent / "npm"
SCRIPT = NPM_DIR / "verify.js"
MIN_NODE = (20, 17)  # @sigstore/verify 3.x: node ^20.17.0 || >=22.9.0


@dataclass(frozen=True)
class Verdict:
    code: int  # 0 verified, 1 rejected, 2 usage
    output: str

    @property
    def verified(self) -> bool:
        return self.code == 0


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node not installed: the @sigstore/verify cross-checks need Node.js 20.17+")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    parts = out.stdout.strip().lstrip("v").split(".")
    try:
        version = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        version = (0, 0)
    if version < MIN_NODE:
        pytest.skip(f"node {out.stdout.strip()} is older than @sigstore/verify 3 needs (20.17)")
    if not (NPM_DIR / "node_modules" / "@sigstore" / "verify").is_dir():
        pytest.skip("@sigstore/verify not installed: run `npm ci --prefix tests/support/npm`")
    return path


def verify(
    bundle: Path,
    *,
    key: Path | None = None,
    trusted_root: Path | None = None,
    identity: str | None = None,
    issuer: str | None = None,
) -> Verdict:
    args = [node(), str(SCRIPT), str(bundle)]
    for flag, value in (
        ("--key", key),
        ("--trusted-root", trusted_root),
        ("--identity", identity),
        ("--issuer", issuer),
    ):
        if value is not None:
            args += [flag, str(value)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=NPM_DIR)
    return Verdict(out.returncode, (out.stdout + out.stderr).strip())
