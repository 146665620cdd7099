"""`catalog:` and `catalog_endpoint:` in `registries:`: which listing API a glob uses, and the
globs that cannot be listed, refused when sync.yaml is read (nothing contacted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from syncer.registry.namespaces import catalog_api
from syncer.registry.options import CatalogApi

GHCR_WHY = (
    "GHCR has no _catalog, and its packages are listed only by api.github.com, which takes a "
    "classic personal access token (read:packages) even for public packages, not the registry "
    "credential syncer holds for ghcr.io; listing GHCR is not supported"
)


def load(tmp_path: Path, source: str, registries: dict[str, Any] | None = None) -> Any:
    doc: dict[str, Any] = {"version": 1, "sync": [{"source": source, "destination": "h.io/m"}]}
    if registries:
        doc["registries"] = registries
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path)


def test_docker_io_speaks_dockerhub_and_the_rest_distribution(tmp_path: Path) -> None:
    cfg = load(tmp_path, "docker.io/bitnami/*", {"quay.io": {"catalog": "quay"}}).config
    assert catalog_api("docker.io", cfg.registry_config("docker.io")) is CatalogApi.DOCKERHUB
    assert catalog_api("docker.io", cfg.registry_config("index.docker.io")) is CatalogApi.DOCKERHUB
    assert catalog_api("quay.io", cfg.registry_config("quay.io")) is CatalogApi.QUAY
    assert catalog_api("h.io", cfg.registry_config("h.io")) is CatalogApi.DISTRIBUTION


def test_a_mirror_of_docker_io_can_say_it_has_a_catalog(tmp_path: Path) -> None:
    cfg = load(tmp_path, "docker.io/*", {"docker.io": {"catalog": "distribution"}}).config
    assert catalog_api("docker.io", cfg.registry_config("docker.io")) is CatalogApi.DISTRIBUTION


@pytest.mark.parametrize(
    ("source", "registries", "message"),
    [
        (
            "docker.io/*",
            None,
            r"sync[0]: source 'docker.io/*': docker.io (catalog: dockerhub) lists repositories "
            "one namespace at a time and has no _catalog; name the namespace before the glob, "
            "e.g. docker.io/bitnami/*",
        ),
        (
            "reg.example/*",
            {"reg.example": {"catalog": "harbor"}},
            "reg.example (catalog: harbor) lists repositories one namespace at a time",
        ),
        (
            "ghcr.io/acme/*",
            None,
            f"sync[0]: source 'ghcr.io/acme/*': {GHCR_WHY}; name the repositories one per entry",
        ),
        (
            "ghcr.io/acme/app",
            {"ghcr.io": {"catalog": "ghcr"}},
            f"""registries["ghcr.io"].catalog: 'ghcr': {GHCR_WHY}; name the repositories""",
        ),
        (
            "quay.io/acme/*",
            {"quay.io": {"catalog": "quay.io"}},
            "registries[\"quay.io\"].catalog: found 'quay.io'; expected 'distribution', "
            "'dockerhub', 'quay' or 'harbor'",
        ),
        (
            "docker.io/acme/*",
            {"docker.io": {"catalog_endpoint": "hub.docker.com"}},
            'registries["docker.io"].catalog_endpoint',
        ),
    ],
)
def test_globs_that_cannot_be_listed_are_config_errors(
    tmp_path: Path, source: str, registries: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, source, registries)
    assert message in str(err.value)
