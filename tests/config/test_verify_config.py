"""`verify:` in sync.yaml: key files read at load (errors at file:line, exit 2), defaults,
and the exact payload format cosign signs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from syncer.service.metrics import Metrics
from syncer.sync.report import EntryReport, RunReport
from syncer.verify.cosign import parse_payload
from tests.support import cosign
from tests.support.cosign import SigningKey

DIGEST = "sha256:" + "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_keys_load_relative_to_the_file_and_defaults_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "release.pub").write_bytes(SigningKey.generate("ecdsa").public_pem())
    (keys / "vendor.pub").write_bytes(SigningKey.generate("ed25519").public_pem())
    (keys / "rsa.pub").write_bytes(SigningKey.generate("rsa-pkcs1").public_pem())
    cfg = write(
        tmp_path,
        """
        version: 1
        defaults:
          verify:
            cosign:
              keys: [keys/release.pub, "${VENDOR_KEY_FILE}"]
              identity: "registry\\\\.example\\\\.com/team/.*"
        sync:
          - source: registry.example.com/team/app
            destination: mirror.example.com/team/app
          - source: registry.example.com/other/app
            destination: mirror.example.com/other/app
            verify:
              cosign: {keys: [keys/rsa.pub]}
              on_failure: fail
              recheck: true
        """,
    )
    monkeypatch.chdir("/")  # relative key paths start at sync.yaml's directory, not here
    loaded = load_config(cfg, env={"VENDOR_KEY_FILE": str(keys / "vendor.pub")})
    first, second = (e.verify for e in loaded.entries)
    assert first is not None and second is not None
    assert [type(k.key) for k in first.cosign.trusted] == [
        type(ec.generate_private_key(ec.SECP256R1()).public_key()),
        type(ed25519.Ed25519PrivateKey.generate().public_key()),
    ]
    assert [k.path for k in first.cosign.trusted] == ["keys/release.pub", str(keys / "vendor.pub")]
    assert (first.on_failure, first.recheck) == ("skip", False)
    assert first.cosign.identity_matches("registry.example.com/team/app")
    assert not first.cosign.identity_matches("registry.example.com/team")  # anchored
    assert not first.cosign.identity_matches("evil.io/registry.example.com/team/app")
    # An entry's `verify` replaces the default wholesale.
    assert isinstance(second.cosign.trusted[0].key, rsa.RSAPublicKey)
    assert len(second.cosign.trusted) == 1 and second.cosign.identity is None
    assert (second.on_failure, second.recheck) == ("fail", True)


def test_every_key_problem_is_reported_at_its_line(tmp_path: Path) -> None:
    private = SigningKey.generate("ecdsa").private
    (tmp_path / "cosign.key").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "notes.txt").write_text("not a key\n")
    cfg = write(
        tmp_path,
        """
        version: 1
        sync:
          - source: registry.example.com/team/app
            destination: mirror.example.com/team/app
            verify:
              cosign:
                keys:
                  - missing.pub
                  - cosign.key
                  - notes.txt
                  - 42
                identity: "team/("
              on_failure: abort
          - source: registry.example.com/team/b
            destination: mirror.example.com/team/b
            verify: {cosign: {keys: []}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    text = str(info.value)
    f = str(cfg)
    assert f"{f}:8: sync[0].verify.cosign.keys[0]: key file 'missing.pub' not found" in text
    assert f"{f}:9: sync[0].verify.cosign.keys[1]: 'cosign.key' holds a private key" in text
    assert f"{f}:10: sync[0].verify.cosign.keys[2]: 'notes.txt' is not a PEM public key" in text
    assert f"{f}:11: sync[0].verify.cosign.keys[3]: found 42; expected the path" in text
    assert f"{f}:12: sync[0].verify.cosign.identity: invalid regex 'team/('" in text
    assert f"{f}:13: sync[0].verify.on_failure: found 'abort'; expected 'skip' or 'fail'" in text
    assert f"{f}:16: sync[1].verify.cosign.keys: " in text
    assert "6 problems" not in text and "7 problems" in text


def test_unusable_key_exits_2_before_any_registry_is_contacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keys.pub").mkdir()
    cfg = write(
        tmp_path,
        """
        version: 1
        sync:
          - source: registry.example.com/team/app
            destination: mirror.example.com/team/app
            verify: {cosign: {keys: [keys.pub]}}
        """,
    )
    assert main(["sync", "-c", str(cfg)]) == 2  # registry.example.com is never resolved
    err = capsys.readouterr().err
    assert (
        f"{cfg}:5: sync[0].verify.cosign.keys[0]: 'keys.pub' is a directory; "
        "expected a PEM public key file"
    ) in err


def test_payload_is_byte_for_byte_what_cosign_signs() -> None:
    """sigstore/sigstore payload.go marshals SimpleContainerImage with Go's encoding/json:
    field order critical{identity, image, type}, optional; no spaces; optional null."""
    body = cosign.payload("registry.example.com/team/app", DIGEST)
    assert body == (
        b'{"critical":{"identity":{"docker-reference":"registry.example.com/team/app"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    claims = parse_payload(body)
    assert (claims.digest, claims.reference) == (DIGEST, "registry.example.com/team/app")
    manifest, config = cosign.signature_manifest(
        [cosign.signed(cosign.SigningKey.generate("ed25519"), body)]
    )
    doc = json.loads(manifest)
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = doc["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert set(layer["annotations"]) == {"dev.cosignproject.cosign/signature"}
    assert json.loads(config.data)["rootfs"]["diff_ids"] == [layer["digest"]]


def test_rejected_tags_are_a_metric() -> None:
    entry = EntryReport("src.example.com/app", "dst.example.com/app")
    entry.counters.tags_rejected = 3
    metrics = Metrics()
    metrics.observe(RunReport(started="now", entries=[entry]))
    text = metrics.text().decode()
    assert (
        'syncer_tags_rejected_total{destination="dst.example.com/app",'
        'source="src.example.com/app"} 3.0'
    ) in text
    assert 'syncer_runs_total{status="ok"} 1.0' in text  # rejected alone is not a failure


def test_a_broken_keyless_rule_is_its_only_problem(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
        version: 1
        sync:
          - source: registry.example.com/team/app
            destination: mirror.example.com/team/app
            verify:
              cosign:
                keyless:
                  identities:
                    - {issuer: https://token.actions.githubusercontent.com}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    text = str(info.value)
    assert "sync[0].verify.cosign.keyless.identities[0]" in text
    assert "nothing to trust" not in text, text
