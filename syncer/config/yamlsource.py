"""Reading sync.yaml: YAML parsing with line numbers, `${VAR}` interpolation,
pydantic errors reworded as 'found X; expected Y', and one `ConfigError` for all.

The models live in `syncer.config.syncfile`; this module only knows about YAML documents
and key paths, so every error message can point at `file:line`.
"""

from __future__ import annotations

import datetime
import difflib
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from syncer.errors import ConfigError, redact_url

# A key path as pydantic reports it: ('sync', 2, 'tags', 'allow', 0).
Loc = tuple[str | int, ...]

# Values under keys with these words in their name are never echoed in messages.
SECRET_WORDS = ("password", "identity_token", "credentials", "secret")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# ruamel puts the duplicated *values* into its message; we keep only the key.
_DUPLICATE_KEY = re.compile(r'found duplicate key "(?P<key>[^"]*)"')


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, at a key path."""

    loc: Loc
    message: str


@dataclass
class YamlDocument:
    """A parsed YAML file as plain Python data plus the line of every key path."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """Line (1-based) of `loc`, or of its nearest ancestor present in the file.

        A missing key has no line of its own; the mapping that should hold it is
        the most useful place to point at.
        """
        for end in range(len(loc), 0, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1


def is_secret(loc: Loc) -> bool:
    return any(isinstance(p, str) and any(w in p for w in SECRET_WORDS) for p in loc)


def format_loc(loc: Iterable[str | int]) -> str:
    """('registries', 'docker.io', 'tls') -> registries["docker.io"].tls"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out or "(top level)"


def found_value(value: Any, *, secret: bool = False) -> str:
    """What was found, for 'found X; expected Y' messages. Secrets are never shown."""
    if value is None:
        return "an empty value"
    if secret and not isinstance(value, Mapping | list | tuple):
        return "a value (not shown: it is a secret)"
    if isinstance(value, bool):
        kind = "true" if value else "false"
    elif isinstance(value, int | float):
        kind = repr(value)
    elif isinstance(value, str):
        # URLs may carry user:password@ or signed query strings.
        text = redact_url(value) if "://" in value else value
        text = text if len(text) <= 80 else text[:77] + "..."
        kind = repr(text)
    elif isinstance(value, Mapping):
        kind = "a mapping"
    elif isinstance(value, list | tuple):
        kind = "a list"
    else:
        kind = f"a {type(value).__name__}"
    return kind


def read_yaml(path: Path) -> YamlDocument:
    """Read and parse `path`; file-level and syntax problems raise ConfigError."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "file not found; create it, or point --config / SYNCER_CONFIG at your sync.yaml",
            file=file,
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; expected a YAML file", file=file) from None
    except PermissionError:
        raise ConfigError(
            "cannot read the file: permission denied; check its permissions", file=file
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"not valid UTF-8 (bad byte at offset {e.start}); save the file as UTF-8", file=file
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror or e}", file=file) from None

    try:
        raw = YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        raise _syntax_error(file, e) from None
    except YAMLError as e:  # unmarked errors are rare, but must not escape as tracebacks
        raise ConfigError(f"YAML error: {e}; fix the YAML syntax", file=file) from None

    doc = YamlDocument(path=path, data=None)
    doc.data = _plain(raw, (), doc.lines)
    return doc


def _syntax_error(file: str, e: MarkedYAMLError) -> ConfigError:
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    problem = str(e.problem or e.context or "invalid YAML")
    dup = _DUPLICATE_KEY.search(problem)
    if dup:
        problem = f"duplicate key {dup['key']!r}; each key may appear only once in a mapping"
    elif e.context and e.problem:
        problem = f"{problem} ({e.context}"
        if e.context_mark is not None:
            problem += f" started at line {e.context_mark.line + 1}"
        problem += ")"
    return ConfigError(
        f"YAML syntax error at line {line}, column {column}: {problem}; "
        "fix the YAML (check indentation, quoting and brackets)",
        file=file,
        where=str(line),
    )


def _plain(node: Any, loc: Loc, lines: dict[Loc, int]) -> Any:
    """Copy ruamel's round-trip nodes into plain dict/list/str/int/..., recording lines.

    The plain copy matters: pydantic must see ordinary types (ruamel's ScalarFloat,
    LiteralScalarString, ... are subclasses with extra behaviour).
    """
    if isinstance(node, Mapping):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            plain_key = _plain_scalar(key) if not isinstance(key, Mapping | list) else str(key)
            child = (*loc, plain_key)
            _record(lines, child, node, "key", key)
            out[plain_key] = _plain(value, child, lines)
        return out
    if isinstance(node, list):
        items: list[Any] = []
        for i, value in enumerate(node):
            child = (*loc, i)
            _record(lines, child, node, "item", i)
            items.append(_plain(value, child, lines))
        return items
    return _plain_scalar(node)


def _record(lines: dict[Loc, int], loc: Loc, node: Any, kind: str, key: Any) -> None:
    try:
        line, _col = getattr(node.lc, kind)(key)
    except (AttributeError, KeyError, IndexError, TypeError):
        return  # keys from `<<` merges have no position of their own: parent is used
    lines[loc] = int(line) + 1


def _plain_scalar(value: Any) -> Any:
    # bool before int: bool is an int subclass.
    if value is None or isinstance(value, bool | datetime.date):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


class InterpolationError(ValueError):
    pass


def interpolate_string(text: str, env: Mapping[str, str], *, secret: bool = False) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.

    A `$` followed by anything else stays as is, so regex anchors like `v1$` work.
    The default is used when the variable is unset or empty, as in POSIX shells.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch != "$" or nxt not in ("$", "{"):
            out.append(ch)
            i += 1
            continue
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        end = text.find("}", i + 2)
        if end < 0:
            raise InterpolationError(
                "unterminated '${' (no closing '}'); close it, or write '$$' for a literal '$'"
            )
        name, has_default, default = text[i + 2 : end].partition(":-")
        if not _VAR_NAME.match(name):
            shown = "" if secret else f" {name!r}"
            raise InterpolationError(
                f"invalid variable name{shown} in '${{...}}'; use letters, digits and '_' "
                "(not starting with a digit), or write '$$' for a literal '$'"
            )
        value = env.get(name)
        if not value and has_default:
            value = default
        if value is None:
            raise InterpolationError(
                f"environment variable {name} is not set; export {name}, "
                f"or give a default with '${{{name}:-default}}'"
            )
        out.append(value)
        i = end + 1
    return "".join(out)


def interpolate(data: Any, env: Mapping[str, str], loc: Loc = ()) -> tuple[Any, list[Problem]]:
    """Interpolate every string value (never keys). Returns the new data and problems.

    A value that fails keeps an empty string, so validation of the rest of the file
    still runs and all problems are reported at once.
    """
    problems: list[Problem] = []

    def walk(node: Any, here: Loc) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*here, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*here, i)) for i, v in enumerate(node)]
        if isinstance(node, str):
            try:
                return interpolate_string(node, env, secret=is_secret(here))
            except InterpolationError as e:
                problems.append(Problem(here, str(e)))
                return ""
        return node

    return walk(data, loc), problems


def problems_error(doc: YamlDocument, problems: list[Problem]) -> ConfigError:
    """One ConfigError listing every problem as `file:line: key.path: message`."""
    file = str(doc.path)
    located = sorted(
        ((doc.line_of(p.loc), format_loc(p.loc), p.message) for p in problems),
        key=lambda t: t[0],
    )
    if len(located) == 1:
        line, where, message = located[0]
        return ConfigError(f"{where}: {message}", file=file, where=str(line))
    body = "\n".join(f"  {file}:{line}: {where}: {message}" for line, where, message in located)
    return ConfigError(f"{len(located)} problems:\n{body}", file=file)


# pydantic error types whose expectation is better said in YAML words.
_EXPECTED = {
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "float_parsing": "a number",
}


def validation_problems(
    exc: ValidationError, root: type[BaseModel], examples: Mapping[str, str]
) -> list[Problem]:
    """pydantic errors as located problems worded 'found X; expected Y'.

    Validators raise `rule(message, at)` to give a complete message and refine the
    location by one field or index.
    """
    problems = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if "at" in ctx:
            loc = (*loc, ctx["at"])
        message = explain(err["type"], err["msg"], err["input"], loc, ctx, root, examples)
        problems.append(Problem(loc, message))
    return problems


def explain(
    kind: str,
    msg: str,
    value: Any,
    loc: Loc,
    ctx: Mapping[str, Any],
    root: type[BaseModel] | None = None,
    examples: Mapping[str, str] | None = None,
) -> str:
    """One pydantic error as 'found X; expected Y', never echoing a secret value."""
    found = found_value(value, secret=is_secret(loc))
    if kind == "syncer":  # our own validators: the message is already complete
        return msg
    if kind == "value_error":  # from validators outside this package: add what was found
        return f"found {found}; {msg.removeprefix('Value error, ')}"
    if kind == "missing" and loc:
        example = (examples or {}).get(str(loc[-1]))
        return f"missing required key '{loc[-1]}'" + (f"; add e.g. `{example}`" if example else "")
    if kind == "extra_forbidden" and loc:
        allowed = _allowed_keys(root, loc[:-1]) if root else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        known = f"allowed keys: {', '.join(allowed)}" if allowed else "remove it"
        return f"unknown key '{loc[-1]}'; {hint}{known}"
    if kind in ("enum", "literal_error"):
        return f"found {found}; expected {ctx.get('expected', msg)}"
    expected = _EXPECTED.get(kind) or msg.removeprefix("Input should be ")
    if kind.startswith(("greater_than", "less_than")):
        expected = f"a number {expected}"
    fix = ""
    if kind == "list_type" and isinstance(value, str) and not is_secret(loc):
        fix = f"; for a single item write [{value}]"
    return f"found {found}; expected {expected}{fix}"


def _allowed_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found at `loc` by walking annotations from `root`."""
    tp: Any = root
    for part in loc:
        tp = _model_of(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field_info = tp.model_fields.get(part)
            if field_info is None:
                return []
            tp = field_info.annotation
        elif get_origin(tp) in (list, dict):
            tp = get_args(tp)[-1]  # list[X] / dict[str, X]: the walk continues into X
        else:
            return []
    tp = _model_of(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _model_of(tp: Any) -> Any:
    # `TagFilter | None` -> TagFilter: only the model part of a union has keys.
    if isinstance(tp, types.UnionType) or get_origin(tp) is Union:
        models = [a for a in get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else tp
    return tp
