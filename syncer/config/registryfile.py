"""sync.yaml's `registries:` entries for the commands that contact registries but do not
run sync.yaml (`search`, `catalog`, `tags`, `inspect`, `login`, `copy`, `tag`, `delete`,
`digest`).

Those commands need one thing from the file: the settings of the registries they contact.
So they read those entries alone (a file without `sync:` is complete for them), and nothing
else in the file can stop them, as
`docker search` is not stopped by a half-written sync.yaml in the current folder:

- `./sync.yaml` or `$SYNCER_CONFIG` (found, not asked for): any problem, even in the
  contacted registry's entry, is one warning line, and the defaults apply instead.
- `-c FILE` (asked for): the file and the contacted registries' entries are read strictly
  (exit 2 naming file:line and key); a problem elsewhere is still one warning line.

`sync`, `check` and `schedule` read the whole file strictly (`syncfile.load_config`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from syncer.config.settings import CONFIG_ENV
from syncer.config.syncfile import check_settings_file, normalise_registry
from syncer.config.yamlsource import (
    Problem,
    YamlDocument,
    format_loc,
    interpolate,
    problems_error,
    read_yaml,
    validation_problems,
)
from syncer.errors import ConfigError, InvalidReference
from syncer.registry.options import RegistryConfig

_DEFAULT = RegistryConfig()


def _stderr(message: str) -> None:
    print(f"syncer: warning: {message}", file=sys.stderr)


@dataclass
class RegistrySettings:
    """Registry settings from one sync.yaml, entry by entry, as a registry lookup.

    `path` None: no file, every registry gets the defaults. At most one warning is
    given per command, however many problems the file has."""

    path: Path | None
    strict: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    warn: Callable[[str], None] = _stderr
    _doc: YamlDocument | None = field(default=None, init=False)
    _read: bool = field(default=False, init=False)
    _entries: dict[str, RegistryConfig | None] = field(default_factory=dict, init=False)
    _warned: bool = field(default=False, init=False)
    _checked: bool = field(default=False, init=False)
    _used: list[str] = field(default_factory=list, init=False)

    def __call__(self, registry: str) -> RegistryConfig:
        """The settings for `registry`, or the defaults."""
        entry = self.entry(registry)
        return _DEFAULT if entry is None else entry

    def entry(self, registry: str) -> RegistryConfig | None:
        """The file's entry for `registry`; None when there is none (or it was ignored)."""
        return self.entries([registry])[0]

    def entries(self, registries: list[str]) -> list[RegistryConfig | None]:
        """The entries of every registry a command contacts, looked up together so that
        a bad one stops it before any request, and a warning names every entry used."""
        out = [self._entry(_host(r)) for r in registries]
        doc = self._doc
        if doc is not None and isinstance(doc.data, dict):
            self._check_rest(doc)
        return out

    def _entry(self, host: str) -> RegistryConfig | None:
        if host not in self._entries:
            self._entries[host] = self._load(host)
        return self._entries[host]

    def _load(self, host: str) -> RegistryConfig | None:
        doc = self._document()
        if doc is None:
            return None
        registries = doc.data.get("registries") if isinstance(doc.data, dict) else None
        if registries is None:
            if not isinstance(doc.data, dict):
                self._fail(ConfigError("expected a mapping at the top level", file=str(doc.path)))
            return None
        if not isinstance(registries, dict):
            self._fail(
                problems_error(doc, [Problem(("registries",), "expected a mapping of hosts")])
            )
            return None
        keys = [k for k in registries if isinstance(k, str) and _key_host(k) == host]
        if not keys:
            return None
        loc = ("registries", keys[0])
        if len(keys) > 1:
            message = f"{keys[0]!r} and {keys[1]!r} are the same registry ({host}); merge them"
            self._fail(problems_error(doc, [Problem(loc, message)]))
            return None
        config, problems = _validate(registries[keys[0]], loc, self.env)
        if problems and self.strict:
            raise problems_error(doc, problems)
        if problems:
            # One line: the first problem, and how many more `syncer check` would list.
            first = min(problems, key=lambda p: doc.line_of(p.loc))
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            text = _one_line(problems_error(doc, [first])) + more
            self._say(f"{text}; the {format_loc(loc)} entry was ignored")
            return None
        self._used.append(format_loc(loc))
        return config

    def read(self) -> None:
        """Read the file now (ConfigError for `-c FILE` that is missing or malformed)."""
        self._document()

    def _document(self) -> YamlDocument | None:
        if not self._read:
            self._read = True
            if self.path is not None:
                try:
                    self._doc = read_yaml(self.path)
                except ConfigError as exc:
                    self._fail(exc)
        return self._doc

    def _fail(self, exc: ConfigError) -> None:
        """Raise for `-c FILE`; else one warning, and the defaults apply."""
        if self.strict:
            raise exc
        self._say(f"{_one_line(exc)}; the registry settings in it were ignored")

    def _check_rest(self, doc: YamlDocument) -> None:
        """One warning when the whole file would not pass `syncer check` (a file without
        `sync:` is fine here): the user should learn of it, but this command does not
        depend on it. Checked once, after the first lookup of the command's registries."""
        if self._checked or self._warned:
            return
        self._checked = True
        try:
            check_settings_file(doc.path, self.env)
        except ConfigError:
            if not self._used:
                what = "it has no entry for the registries contacted"
            elif len(self._used) == 1:
                what = f"only its {self._used[0]} entry was used"
            else:
                what = f"only its {' and '.join(self._used)} entries were used"
            self._say(
                f"{doc.path} has problems this command does not depend on "
                f"(`syncer check -c {doc.path}` lists them); {what}"
            )

    def _say(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.warn(message)


def registry_settings(config: str | None) -> RegistrySettings:
    """The settings file of an ad-hoc command: `-c FILE` (strict), else `$SYNCER_CONFIG`
    or `./sync.yaml` (lenient); no file at all means defaults."""
    if config:
        settings = RegistrySettings(Path(config), strict=True)
        settings.read()  # missing or unreadable: exit 2 now, before any request
        return settings
    found = os.environ.get(CONFIG_ENV)
    if found:
        return RegistrySettings(Path(found))
    path = Path("sync.yaml")
    return RegistrySettings(path if path.is_file() else None)


def _host(registry: str) -> str:
    return _key_host(registry) or registry


def _key_host(key: str) -> str | None:
    try:
        return normalise_registry(key)
    except (ValueError, InvalidReference):
        # A key no reference can name is another entry's problem, not this command's.
        return None


def _validate(
    raw: Any, loc: tuple[str, ...], env: Mapping[str, str]
) -> tuple[RegistryConfig | None, list[Problem]]:
    """One `registries:` entry, `${VAR}` expanded inside it alone, as load_config would."""
    data, problems = interpolate({} if raw is None else raw, env, loc)
    try:
        config = RegistryConfig.model_validate(data)
    except ValidationError as e:
        failed = {p.loc for p in problems}
        for problem in validation_problems(e, RegistryConfig, {}):
            where = (*loc, *problem.loc)
            # As in load_config: a value whose expansion failed is already reported.
            if not any(where[: len(f)] == f for f in failed):
                problems.append(Problem(where, problem.message))
        return None, problems
    return (None, problems) if problems else (config, [])


def _one_line(exc: ConfigError) -> str:
    return " ".join(str(exc).split())
