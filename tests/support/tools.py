"""External programs some tests drive (promtool, kubectl, chromium): found, or a clear skip.

scripts/setup installs promtool (Debian's `prometheus`); .ci/run also installs chromium and,
where the machine's package sources have it, kubectl.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


def require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} not installed (apt-get install --no-install-recommends {package})")
    return path


def promtool() -> str:
    return require("promtool", "prometheus")


def kubectl() -> str:
    """kubectl with a kustomize new enough for `patches:` (v4+); Debian 12's 1.20 is not."""
    path = require("kubectl", "kubectl")
    out = subprocess.run(
        [path, "version", "--client"], capture_output=True, text=True, timeout=60
    ).stdout
    m = re.search(r"Kustomize Version: v(\d+)", out)
    if m is None or int(m.group(1)) < 4:
        pytest.skip(f"{path} has no kustomize v4 or later (`kubectl version --client`: {out!r})")
    return path


def kustomize(directory: Path) -> dict[str, dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, as `kubectl apply -k` would send it: "Kind/name" -> object."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d is not None]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def chromium() -> str:
    return require("chromium", "chromium")
