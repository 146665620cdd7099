"""`verify:` in sync.yaml (per entry or under `defaults`): which signatures a tag needs.

Key files are read while the file is validated, so a missing, unreadable or non-PEM
key is a config error (exit 2) at `file:line` before any registry is contacted.
Relative key paths are relative to the directory of sync.yaml.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from syncer.config.keyfile import KeyFile
from syncer.config.keyless import KeylessPolicy, TlogPolicy
from syncer.config.keys import TrustedKey
from syncer.errors import rule


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CosignPolicy(_Model):
    keyless: KeylessPolicy | None = None  # certificate identities instead of (or with) keys
    # Key-signed bundles must also carry a log entry these log keys vouch for.
    transparency_log: TlogPolicy | None = None
    keys: list[KeyFile] = []  # any one may match; without `keyless:`, one is needed
    # Regex, anchored at both ends, over critical.identity.docker-reference.
    identity: str | None = None

    @field_validator("identity")
    @classmethod
    def _identity(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise rule(
                    f"invalid regex {v!r}: {exc}; e.g. 'registry\\.example\\.com/team/.*'"
                ) from None
        return v

    # After the fields: a `keyless:` that failed its own checks is reported there alone, not
    # again as "nothing to trust".
    @model_validator(mode="after")
    def _something_to_trust(self) -> CosignPolicy:
        if not self.keys and self.keyless is None:
            raise rule(
                "nothing to trust: give `keys:` (PEM public keys) or `keyless:` "
                "(certificate identities and their OIDC issuer), or both",
                at="keys",
            )
        return self

    @property
    def trusted(self) -> list[TrustedKey]:
        return [k for k in self.keys if isinstance(k, TrustedKey)]

    def identity_matches(self, reference: str) -> bool:
        return self.identity is None or re.fullmatch(self.identity, reference) is not None


class VerifyConfig(_Model):
    cosign: CosignPolicy
    # skip: the tag is not copied and reported `rejected`; fail: the entry fails as well.
    on_failure: Literal["skip", "fail"] = "skip"
    # Verify up-to-date tags on every run too (by default only tags about to be copied).
    recheck: bool = False
    # in-toto predicate types, each needing an attestation signed by the same keys.
    attestations: list[str] = []

    @field_validator("attestations")
    @classmethod
    def _attestations(cls, v: list[str]) -> list[str]:
        for kind in v:
            if not kind.strip() or any(c.isspace() for c in kind):
                raise rule(
                    f"found {kind!r}; expected an in-toto predicate type URI, "
                    "e.g. https://slsa.dev/provenance/v1"
                )
        return v
