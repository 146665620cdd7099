"""Keyless and transparency-log policies under `verify: cosign:` in sync.yaml.

    keyless:
      trusted_root: /etc/syncer/trusted_root.json  # optional: Sigstore's production root
      identities:                                  # any one may match
        - subject: https://github.com/org/app/.github/workflows/release.yml@refs/heads/main
          issuer: https://token.actions.githubusercontent.com
        - subject_regex: '.*@example\\.com'
          issuer: https://accounts.google.com
    transparency_log:
      keys: [/etc/syncer/rekor.pub]

`subject`/`subject_regex` and `issuer` are cosign's --certificate-identity /
--certificate-identity-regexp and --certificate-oidc-issuer; the regex must match the
whole identity (anchored at both ends, like `identity:`). The trusted root (protobuf-specs
TrustedRoot JSON, as `cosign trusted-root create` or Sigstore's TUF repository publish it)
is checked when sync.yaml is validated and read again for every run (`load_root`), so a
refreshed file is used without a restart or code change. Without `trusted_root`, the
production root that the installed `sigstore` package carries is used; nothing is fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, model_validator
from pydantic_core import core_schema

from syncer.config.keyfile import KeyFile, config_path
from syncer.config.keys import TrustedKey
from syncer.config.yamlsource import found_value
from syncer.errors import ConfigError, rule

if TYPE_CHECKING:
    from sigstore.models import TrustedRoot

# Where sigstore-python keeps the production TUF repository's trusted root as package data.
_EMBEDDED_STORE = "sigstore._store"
_PRODUCTION = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
MAX_ROOT_BYTES = 4 * 1024 * 1024  # the production root is ~10 KiB


class TrustedRootError(ValueError):
    """Why a trusted root file cannot be used, worded for the person editing sync.yaml."""


@dataclass(frozen=True)
class TrustedRootFile:
    """`trusted_root:` as written (for messages) and the file it names."""

    shown: str
    path: Path

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(cls._validate)

    @classmethod
    def _validate(cls, value: Any, info: core_schema.ValidationInfo) -> TrustedRootFile:
        if isinstance(value, TrustedRootFile):
            return value
        if not isinstance(value, str) or not value.strip():
            raise rule(
                f"found {found_value(value)}; expected the path of a Sigstore trusted root "
                "JSON file, e.g. /etc/syncer/trusted_root.json"
            )
        ref = cls(value, config_path(value, info))
        try:
            load_trusted_root(ref)
        except TrustedRootError as e:
            raise rule(str(e)) from None
        return ref


def load_trusted_root(ref: TrustedRootFile | None) -> TrustedRoot:
    """Read and check a trusted root now (None: the production one sigstore carries)."""
    from pydantic import ValidationError
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TrustedRoot

    shown = ref.shown if ref else "sigstore's production trusted root"
    try:
        if ref is None:
            data = resources.files(_EMBEDDED_STORE).joinpath(_PRODUCTION, "trusted_root.json")
            raw = data.read_bytes()
        else:
            with ref.path.open("rb") as fh:
                raw = fh.read(MAX_ROOT_BYTES + 1)
    except FileNotFoundError:
        raise TrustedRootError(f"trusted root {shown!r} not found; check the path") from None
    except IsADirectoryError:
        raise TrustedRootError(
            f"{shown!r} is a directory; expected a trusted root JSON file"
        ) from None
    except OSError as e:
        raise TrustedRootError(f"cannot read trusted root {shown!r}: {e.strerror or e}") from None
    if len(raw) > MAX_ROOT_BYTES:
        raise TrustedRootError(f"{shown!r} is over {MAX_ROOT_BYTES} bytes: not a trusted root")
    try:
        from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootModel

        root = TrustedRoot(TrustedRootModel.from_json(raw))
        # Each raises when its part is missing: a keyless check needs all three.
        root.get_fulcio_certs()
        root.ct_keyring(_verify_purpose())
        root.rekor_keyring(_verify_purpose())
    except (ValidationError, SigstoreError, ValueError) as e:
        first = _first_problem(e)
        raise TrustedRootError(
            f"{shown!r} is not a usable Sigstore trusted root ({first}); expected "
            "protobuf-specs TrustedRoot JSON with certificateAuthorities, ctlogs and tlogs, "
            "e.g. the output of `cosign trusted-root create`"
        ) from None
    return root


def _first_problem(e: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError) and e.errors():
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return f"{loc}: {first['msg']}" if loc else str(first["msg"])
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _verify_purpose() -> Any:
    from sigstore._internal.trust import KeyringPurpose

    return KeyringPurpose.VERIFY


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentityRule(_Model):
    """One accepted signer: the certificate's SAN and its OIDC issuer."""

    subject: str | None = Field(default=None, min_length=1)
    subject_regex: str | None = Field(default=None, min_length=1)
    issuer: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_subject(self) -> IdentityRule:
        if (self.subject is None) == (self.subject_regex is None):
            raise rule(
                "give exactly one of `subject` (the exact certificate identity) or "
                "`subject_regex` (a regex over the whole identity)"
            )
        if self.subject_regex is not None:
            try:
                re.compile(self.subject_regex)
            except re.error as exc:
                raise rule(
                    f"invalid regex {self.subject_regex!r}: {exc}; "
                    "e.g. 'https://github\\.com/org/.*'",
                    "subject_regex",
                ) from None
        return self

    def subject_matches(self, identities: set[str]) -> bool:
        if self.subject is not None:
            return self.subject in identities
        assert self.subject_regex is not None
        return any(re.fullmatch(self.subject_regex, i) for i in identities)

    def describe(self) -> str:
        subject = self.subject if self.subject is not None else f"/{self.subject_regex}/"
        return f"{subject} from {self.issuer}"


class KeylessPolicy(_Model):
    trusted_root: TrustedRootFile | None = None
    identities: list[IdentityRule] = Field(min_length=1)

    def load_root(self) -> TrustedRoot:
        """The trusted root as the file is now; ConfigError when it no longer loads."""
        try:
            return load_trusted_root(self.trusted_root)
        except TrustedRootError as e:
            raise ConfigError(str(e), where="verify.cosign.keyless.trusted_root") from None


class TlogPolicy(_Model):
    """A key-signed bundle must carry a transparency-log entry that these log keys vouch
    for, checked offline (the SET and/or the inclusion proof with its signed checkpoint)."""

    keys: list[KeyFile] = Field(min_length=1)  # any one may match

    @property
    def trusted(self) -> list[TrustedKey]:
        return [k for k in self.keys if isinstance(k, TrustedKey)]
