"""The package's shape: each subpackage's public names, and imports that point one way.

Layers, bottom to top:
errors -> registry -> store -> config -> verify -> sync -> service -> commands.
A module may import its own layer and those below it, never one above (function-level
imports included: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "syncer"
LAYERS = ["errors", "registry", "store", "config", "verify", "sync", "service", "commands"]
PUBLIC = {
    "syncer.registry": [
        "Descriptor",
        "FetchedManifest",
        "ImageIndex",
        "ImageManifest",
        "ManifestInfo",
        "Reference",
        "RegistryClient",
        "RegistryConfig",
        "RegistryRequest",
        "RegistrySession",
        "parse_manifest",
    ],
    "syncer.registry.transport": ["RegistryRequest", "RegistrySession"],
    "syncer.store": ["BlobBytes", "OciLayout", "Store", "Stores", "parse_reference"],
    "syncer.config": [
        "LoadedConfig",
        "ResolvedEntry",
        "Settings",
        "SyncConfig",
        "TagFilter",
        "load_config",
        "select_tags",
    ],
    "syncer.verify": ["Reason", "Signed", "Verifier", "signature_tag"],
    "syncer.sync": [
        "BlobLedger",
        "Copier",
        "CopyJob",
        "Counters",
        "EntryReport",
        "Outcome",
        "Plan",
        "RunOptions",
        "RunReport",
        "Runner",
        "TagOutcome",
        "TagPlan",
        "make_plan",
    ],
    "syncer.service": ["Metrics", "Scheduler", "StatusBoard", "StatusServer"],
    "syncer.commands": [
        "bundle",
        "copy",
        "delete",
        "digest",
        "inspect",
        "login",
        "schedule",
        "search",
        "sync",
        "tag",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_held(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == PUBLIC[package]
    assert module.__doc__, f"{package} states its job in a docstring"
    for name in module.__all__:
        if package == "syncer.commands":
            importlib.import_module(f"{package}.{name}")
        else:
            assert getattr(module, name, None) is not None, f"{package}.{name}"


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "syncer" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "syncer":
                found.update(f"syncer.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_imports_point_one_way() -> None:
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = _layer(module)
        if own is None:
            continue  # syncer/__init__, __main__, cli: the top, may import anything
        for target in sorted(_imports(path)):
            layer = _layer(target)
            if layer is not None and LAYERS.index(layer) > LAYERS.index(own):
                wrong.append(f"{module} ({own}) imports {target} ({layer})")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


# The transport sends what it is given; the protocol operations (client, uploads, downloads,
# listings) sit above it in the same layer, so it may lean only on the settings and policies.
TRANSPORT_MAY_IMPORT = {"credentials", "options", "origin", "ratelimit", "tls", "transport"}


def test_the_transport_imports_no_protocol_operation() -> None:
    wrong: list[str] = []
    for path in sorted((PACKAGE / "registry" / "transport").glob("*.py")):
        for target in sorted(_imports(path)):
            parts = target.split(".")
            if target.startswith("syncer.registry.") and parts[2] not in TRANSPORT_MAY_IMPORT:
                wrong.append(f"{path.name} imports {target}")
    assert not wrong, "the transport reaches up into the registry package:\n" + "\n".join(wrong)


def test_every_module_is_in_a_layer() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "__main__", "cli", "errors"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        LAYERS[1:]
    )
