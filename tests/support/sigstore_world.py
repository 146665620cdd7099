"""The world of the keyless and transparency-log tests: one private Sigstore per module,
its trusted root, Rekor key and a cosign key pair on disk (pytest fixture `world`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from syncer.config.keyless import KeylessPolicy
from tests.support.sigstore_root import GITHUB_ISSUER, WORKFLOW, Sigstore, pem, statement

DIGEST = "sha256:" + "5e" * 32


@dataclass(frozen=True)
class World:
    sigstore: Sigstore
    root: Path  # trusted_root.json
    rekor_pub: Path
    signer: ec.EllipticCurvePrivateKey  # a cosign key pair's private half
    signer_pub: Path
    statement: bytes
    dir: Path

    def policy(self, **rule: str) -> KeylessPolicy:
        rule = rule or {"subject": WORKFLOW, "issuer": GITHUB_ISSUER}
        return KeylessPolicy.model_validate({"trusted_root": str(self.root), "identities": [rule]})

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    d = tmp_path_factory.mktemp("sigstore")
    s = Sigstore()
    signer = ec.generate_private_key(ec.SECP256R1())
    (d / "rekor.pub").write_bytes(s.rekor_pem())
    (d / "cosign.pub").write_bytes(pem(signer.public_key()))
    return World(
        s,
        s.write_trusted_root(d / "trusted_root.json"),
        d / "rekor.pub",
        signer,
        d / "cosign.pub",
        statement(DIGEST),
        d,
    )
