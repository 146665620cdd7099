"""TLS files are configuration: checked when sync.yaml is read, and they imply HTTPS."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from tests.support.images import fetch_manifest_digest, make_image, make_layer, push
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import FAST_RETRY, write_sync_yaml


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("this is not a certificate\n")
    return {
        "missing": (tmp_path / "nowhere" / "ca.pem", "No such file or directory"),
        "not PEM": (not_pem, "not usable"),
        "a directory": (tmp_path, "Is a directory"),
    }


@pytest.mark.parametrize("case", ["missing", "not PEM", "a directory"])
def test_unloadable_ca_file_exits_2_before_any_request(
    case: str,
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, dst = registry_factory("anon"), registry_factory("tls")
    push(src.seed_url, "app", make_image([make_layer({"a": b"1"})], fmt="oci"), "v1")
    bad, why = _bad_files(tmp_path)[case]
    cfg = write_sync_yaml(
        tmp_path / "sync.yaml",
        [{"source": f"{src.host}/app", "destination": f"{dst.host}/app"}],
        src,
        dst,
        registries={dst.host: {"ca_file": str(bad)}},
    )
    marks = src.mark(), dst.mark()
    assert main(["sync", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(cfg.read_text().splitlines(), 1) if "ca_file" in text)
    assert f'{cfg}:{line}: registries["{dst.host}"].ca_file: cannot load {bad}: {why}' in err
    assert "point it at a readable PEM bundle of CA certificates" in err
    assert src.requests_since(marks[0]) == []
    assert dst.requests_since(marks[1]) == []


def test_client_key_and_cert_problems_name_their_key(tmp_path: Path) -> None:
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("nope\n")
    cases = {
        "client_cert": ({"client_cert": str(tmp_path / "missing.pem")}, "No such file"),
        "client_key": (
            {"client_cert": str(not_pem), "client_key": str(tmp_path / "k.pem")},
            "No such file",
        ),
        "client_cert ": ({"client_cert": str(not_pem)}, "not usable"),
        "client_key  ": ({"client_key": str(not_pem)}, "is set without client_cert"),
    }
    for key, (settings, why) in cases.items():
        doc = {
            "version": 1,
            "registries": {"reg.example.com": settings},
            "sync": [{"source": "reg.example.com/a", "destination": "127.0.0.1:5000/a"}],
        }
        path = tmp_path / "sync.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert f'registries["reg.example.com"].{key.strip()}: ' in str(info.value)
        assert why in str(info.value)


@pytest.mark.parametrize(
    ("settings", "plain"),
    [
        ({"tls": "disabled"}, "tls: disabled means plain HTTP"),
        ({"endpoint": "http://127.0.0.1:5000"}, "endpoint http://127.0.0.1:5000 means plain"),
    ],
)
def test_ca_file_over_plain_http_is_rejected(
    settings: dict[str, str], plain: str, tls_registry: RunningRegistry, tmp_path: Path
) -> None:
    assert tls_registry.ca_file is not None
    doc = {
        "version": 1,
        "registries": {"127.0.0.1:5000": {**settings, "ca_file": str(tls_registry.ca_file)}},
        "sync": [{"source": "127.0.0.1:5000/a", "destination": "127.0.0.1:5000/b"}],
    }
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert f'registries["127.0.0.1:5000"].ca_file: is only used over TLS, but {plain}' in str(
        info.value
    )


def test_ca_file_on_loopback_without_tls_key_means_https(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Loopback defaults to plain HTTP, but naming a CA bundle asks for HTTPS: honoured."""
    src, dst = registry_factory("tls"), registry_factory("anon")
    assert src.ca_file is not None and src.host.startswith("127.0.0.1:")
    image = make_image([make_layer({"etc/tls": b"private ca"})], fmt="oci")
    push(src.seed_url, "secure/app", image, "v1")
    cfg = write_sync_yaml(
        tmp_path / "sync.yaml",
        [{"source": f"{src.host}/secure/app", "destination": f"{dst.host}/copy/app"}],
        dst,
    )
    doc = yaml.safe_load(cfg.read_text())
    doc["registries"][src.host] = {"ca_file": str(src.ca_file), "retry": FAST_RETRY.model_dump()}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    marks = src.mark()
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    assert fetch_manifest_digest(dst.url, "copy/app", "v1") == image.digest
    assert len(src.requests_since(marks)) >= 2  # the list and the HEAD reached the TLS server
