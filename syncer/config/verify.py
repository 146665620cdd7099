"""`verify:` in sync.yaml (per entry or under `defaults`): which signatures a tag needs.

Key files are read while the file is validated, so a missing, unreadable or non-PEM
key is a config error (exit 2) at `file:line` before any registry is contacted.
Relative key paths are relative to the directory of sync.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, field_validator
from pydantic_core import core_schema

from syncer.config.keys import KeyFileError, TrustedKey, load_key
from syncer.config.yamlsource import found_value
from syncer.errors import rule

# Key in pydantic's validation context: the directory relative key paths start from.
CONFIG_DIR = "config_dir"


class KeyFile:
    """A `keys:` item: written as a path, validated into the loaded public key."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(cls._load)

    @staticmethod
    def _load(value: Any, info: core_schema.ValidationInfo) -> TrustedKey:
        if isinstance(value, TrustedKey):
            return value
        if not isinstance(value, str) or not value.strip():
            raise rule(
                f"found {found_value(value)}; expected the path of a PEM public key file, "
                "e.g. /etc/syncer/keys/release.pub"
            )
        path = Path(value).expanduser()
        base = (info.context or {}).get(CONFIG_DIR)
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        try:
            return load_key(path, value)
        except KeyFileError as e:
            raise rule(str(e)) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CosignPolicy(_Model):
    keys: list[KeyFile] = Field(min_length=1)  # any one may match
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
