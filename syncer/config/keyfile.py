"""A `keys:` item of `verify:`: a path in sync.yaml, validated into the loaded public key.

Relative paths start at sync.yaml's directory, passed in pydantic's validation context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
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
        path = config_path(value, info)
        try:
            return load_key(path, value)
        except KeyFileError as e:
            raise rule(str(e)) from None


def config_path(value: str, info: core_schema.ValidationInfo) -> Path:
    """A path written in sync.yaml: `~` expanded, relative ones from sync.yaml's folder."""
    path = Path(value).expanduser()
    base = (info.context or {}).get(CONFIG_DIR)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path
