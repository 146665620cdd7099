"""Process settings: SYNCER_* environment variables, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from syncer.config.yamlsource import explain
from syncer.errors import ConfigError, rule

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The variable naming sync.yaml (Settings.config, by pydantic-settings' prefix rule).
CONFIG_ENV = "SYNCER_CONFIG"


class Settings(BaseSettings):
    """Process settings from SYNCER_* environment variables (the CLI may override)."""

    model_config = SettingsConfigDict(env_prefix="SYNCER_", extra="ignore")

    config: Path | None = None
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: str = "info"
    # Global cap on concurrent copies; per-registry caps apply below it.
    concurrency: int = Field(default=16, ge=1)
    report: Path | None = None

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        level = v.strip().lower()
        level = "warning" if level == "warn" else level
        if level not in _LOG_LEVELS:
            raise rule(f"found {v!r}; expected one of: {', '.join(_LOG_LEVELS)}")
        return level


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus `overrides`; errors name the SYNCER_ variable.

    None overrides are dropped, so a CLI can pass every option whether given or not.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        lines = []
        for err in e.errors(include_url=False):
            key = "_".join(str(p) for p in err["loc"])
            # The value came from the environment or the command line: name both.
            name = f"SYNCER_{key.upper()} / --{key.replace('_', '-')}"
            lines.append(f"{name}: {explain(err['type'], err['msg'], err['input'], (), {})}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None


def default_config_path(settings: Settings) -> Path:
    return settings.config if settings.config is not None else Path("sync.yaml")
