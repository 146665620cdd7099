"""Point syncer at the test registries: registry settings, clients and sync.yaml files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from syncer.registry.client import RegistryClient
from syncer.registry.credentials import Credential
from syncer.registry.options import CredentialsConfig, RegistryConfig, RetryConfig
from tests.support.registry import RunningRegistry

# Tests should fail fast, not back off for minutes.
FAST_RETRY = RetryConfig(attempts=3, backoff_s=0.01, max_backoff_s=0.05, deadline_s=60)


def registry_settings(reg: RunningRegistry, *, creds: bool = True, **extra: Any) -> dict[str, Any]:
    """The `registries:` value for `reg`, as a user would write it in sync.yaml."""
    out: dict[str, Any] = {}
    if reg.url.startswith("https://"):
        out["tls"] = "enabled"
        if reg.ca_file is not None:
            out["ca_file"] = str(reg.ca_file)
    else:
        out["tls"] = "disabled"
    if creds and reg.username and reg.password:
        out["credentials"] = {"username": reg.username, "password": reg.password}
    out["retry"] = FAST_RETRY.model_dump()
    out.update(extra)
    return out


def registry_config(reg: RunningRegistry, *, creds: bool = True, **extra: Any) -> RegistryConfig:
    return RegistryConfig.model_validate(registry_settings(reg, creds=creds, **extra))


def make_client(
    *regs: RunningRegistry,
    creds: bool = True,
    http_transport: httpx.AsyncBaseTransport | None = None,
    **extra: Any,
) -> RegistryClient:
    configs = {r.host: registry_config(r, creds=creds, **extra) for r in regs}

    def credentials(registry: str, config: RegistryConfig) -> Credential | None:
        c: CredentialsConfig | None = config.credentials
        if c is None or c.username is None:
            return None
        return Credential(username=c.username, password=c.password)

    return RegistryClient(
        lambda r: configs.get(r, RegistryConfig()),
        credentials=credentials,
        http_transport=http_transport,
    )


def write_sync_yaml(
    path: Path,
    entries: list[dict[str, Any]],
    *regs: RunningRegistry,
    creds: bool = True,
    defaults: dict[str, Any] | None = None,
    registries: dict[str, dict[str, Any]] | None = None,
) -> Path:
    doc: dict[str, Any] = {"version": 1}
    if defaults:
        doc["defaults"] = defaults
    doc["registries"] = {r.host: registry_settings(r, creds=creds) for r in regs}
    for host, extra in (registries or {}).items():
        doc["registries"].setdefault(host, {}).update(extra)
    doc["sync"] = entries
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def export_to_layout(
    src: RunningRegistry, layout: Path, workdir: Path, repository: str = "*"
) -> None:
    """Mirror `src`'s `repository` (a glob too) into the layout at `layout`, as a user's
    sync.yaml in `workdir` would; every tag must succeed."""
    # Imported here: the engine is only needed by the tests that export.
    from syncer.config.syncfile import load_config
    from syncer.sync.runner import Runner

    entry = {"source": f"{src.host}/{repository}", "destination": f"oci:{layout}"}
    cfg = write_sync_yaml(workdir / "export.yaml", [entry], src)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "ok", report.entries
