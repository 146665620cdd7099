"""Registry credentials, shared with the docker CLI.

Lookup order: explicit `credentials:` from sync.yaml, then docker's config.json
(`credHelpers` for the registry, then `credsStore`, then the plain `auths` entry).
`store`/`erase` behave like `docker login`/`docker logout` so either tool can log in
for the other. Secrets travel to credential helpers on stdin only, never in argv
(argv is visible to every user via ps), and never appear in messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from syncer.errors import CredentialsError
from syncer.registry.options import CredentialsConfig
from syncer.registry.reference import DOCKER_HUB_CONFIG_KEY, normalize_registry

CONFIG_FILE = "config.json"
HELPER_PREFIX = "docker-credential-"
# Helpers may unlock a keyring or call a cloud API, but must not hang a sync forever.
HELPER_TIMEOUT_S = 60.0
# Docker's marker for "the secret is an identity token, not a password".
TOKEN_USERNAME = "<token>"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Credential:
    username: str | None
    password: SecretStr | None
    # Docker's `identitytoken`: a refresh token exchanged at the token realm.
    identity_token: SecretStr | None = None

    def __repr__(self) -> str:
        def shown(s: SecretStr | None) -> str:
            return "None" if s is None else "'**********'"

        return (
            f"Credential(username={self.username!r}, password={shown(self.password)}, "
            f"identity_token={shown(self.identity_token)})"
        )


def docker_config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def _host_of(key: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`, `http://Host:5000/x` -> `host:5000`."""
    text = key.strip().lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    return normalize_registry(text.split("/", 1)[0])


def _server_url(host: str) -> str:
    """The key docker itself uses for this registry in auths and helper calls."""
    return DOCKER_HUB_CONFIG_KEY if host == "docker.io" else host


def _matching_keys(section: dict[str, Any], host: str) -> list[str]:
    # Docker's own key first, so a fresh `store` beats an older alias entry.
    exact = _server_url(host)
    keys = [exact] if exact in section else []
    return keys + [k for k in section if k != exact and _host_of(k) == host]


def _config_path(config_dir: Path | None) -> Path:
    return (config_dir if config_dir is not None else docker_config_dir()) / CONFIG_FILE


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CredentialsError(f"cannot read docker config {path}: {reason}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # Position and msg only: JSONDecodeError.msg never quotes the document itself.
        raise CredentialsError(
            f"malformed docker config {path}: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"malformed docker config {path}: top level must be an object")
    return data


def _section(config: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = config.get(name) or {}
    if not isinstance(value, dict):
        raise CredentialsError(f"malformed docker config {path}: {name!r} must be an object")
    return value


def _helpers(config: dict[str, Any], host: str, path: Path) -> list[str]:
    """Helpers to ask, in order: the registry's credHelpers entry, then credsStore."""
    helpers = _section(config, "credHelpers", path)
    names = [helpers[k] for k in _matching_keys(helpers, host)][:1]
    store = config.get("credsStore")
    names += [store] if store else []
    for name in names:
        # The name becomes part of an executable name: no paths, no options.
        if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
            raise CredentialsError(f"docker config {path}: invalid credential helper {name!r}")
    return names


def _excerpt(output: str, secret: str | None) -> str:
    """First line of a helper's complaint, for diagnosis, scrubbed of anything secret."""
    if secret:
        output = output.replace(secret, "<redacted>")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    if '"secret"' in output.lower():  # looks like a credential payload
        return ": (output withheld, it may contain a secret)"
    return f": {lines[0][:200]}"


def _run_helper(name: str, action: str, stdin: str, secret: str | None = None) -> str | None:
    """Run `docker-credential-<name> <action>`; None means "credentials not found"."""
    exe = HELPER_PREFIX + name
    try:
        proc = subprocess.run(
            [exe, action],  # the secret, if any, is only ever in `stdin`
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialsError(f"credential helper {exe} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(
            f"credential helper {exe} {action} did not finish within {HELPER_TIMEOUT_S:g}s"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"cannot run credential helper {exe}: {exc.strerror}") from None
    if proc.returncode == 0:
        return proc.stdout
    output = f"{proc.stdout}\n{proc.stderr}"
    if "credentials not found" in output.lower():
        return None
    raise CredentialsError(
        f"credential helper {exe} {action} failed (exit {proc.returncode})"
        + _excerpt(output, secret)
    )


def _from_helper(name: str, host: str) -> Credential | None:
    out = _run_helper(name, "get", _server_url(host))
    if out is None:
        return None
    exe = HELPER_PREFIX + name
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise CredentialsError(f"credential helper {exe} get returned invalid JSON") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"credential helper {exe} get returned invalid JSON")
    username, secret = data.get("Username") or None, data.get("Secret") or None
    if not isinstance(username, str | None) or not isinstance(secret, str | None):
        raise CredentialsError(f"credential helper {exe} get returned non-string fields")
    if secret is None:
        return None
    if username == TOKEN_USERNAME:
        return Credential(username=None, password=None, identity_token=SecretStr(secret))
    return Credential(username=username, password=SecretStr(secret))


def _from_entry(entry: object, where: str) -> Credential | None:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where} must be an object")
    fields: dict[str, str | None] = {}
    for name in ("auth", "username", "password", "identitytoken"):
        value = entry.get(name) or None
        if not isinstance(value, str | None):
            raise CredentialsError(f"{where}.{name} must be a string")
        fields[name] = value
    auth, username, password = fields["auth"], fields["username"], fields["password"]
    token = fields["identitytoken"]
    if auth:
        try:
            # Go writes padded base64; tolerate hand-written entries without padding.
            raw = base64.b64decode(auth + "=" * (-len(auth) % 4), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"{where}.auth is not base64 of 'user:password'") from None
        # Only the first ':' separates: passwords may contain ':'.
        user, sep, secret = raw.partition(":")
        if not sep:
            raise CredentialsError(f"{where}.auth is not base64 of 'user:password'")
        username, password = user or None, secret or None
    if username == TOKEN_USERNAME:
        username = None
    if token is None and (username is None or password is None):
        return None
    return Credential(
        username=username,
        password=SecretStr(password) if password is not None else None,
        identity_token=SecretStr(token) if token is not None else None,
    )


def _from_explicit(explicit: CredentialsConfig) -> Credential:
    password = explicit.password
    if password is None and explicit.password_file is not None:
        file = explicit.password_file
        try:
            # Only the trailing newline an editor or `echo` adds; other whitespace is data.
            text = file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise CredentialsError(f"cannot read password_file {file}: {reason}") from None
        password = SecretStr(text)
    return Credential(explicit.username, password, explicit.identity_token)


def resolve(
    registry: str, explicit: CredentialsConfig | None, *, config_dir: Path | None = None
) -> Credential | None:
    """Credentials for `registry`, or None to go anonymous.

    Each docker source that has nothing for the registry falls through to the next,
    so a `credsStore` without an entry still lets a plain `auths` entry work."""
    if explicit is not None and explicit.model_dump(exclude_none=True):
        return _from_explicit(explicit)
    host = _host_of(registry)
    path = _config_path(config_dir)
    config = _load(path)
    for name in _helpers(config, host, path):
        found = _from_helper(name, host)
        if found is not None:
            return found
    auths = _section(config, "auths", path)
    for key in _matching_keys(auths, host):
        found = _from_entry(auths[key], f"docker config {path}: auths[{key!r}]")
        if found is not None:
            return found
    return None


def _write(path: Path, config: dict[str, Any]) -> None:
    # Write through a symlinked config.json (dotfile setups) rather than replacing the link.
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file 0600 from the start: no window where the secret is readable.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent="\t")
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def store(registry: str, username: str, password: str, *, config_dir: Path | None = None) -> str:
    """Save a login like `docker login`; returns where it went, for the user's message."""
    if ":" in username:
        # auth is "user:password" split at the first ':'; such a name could never be read back.
        raise CredentialsError("a registry username cannot contain ':'")
    host = _host_of(registry)
    path = _config_path(config_dir)
    config = _load(path)
    # Like docker, writes go to the first helper only: credHelpers shadows credsStore.
    helper = next(iter(_helpers(config, host, path)), None)
    if helper is not None:
        payload = json.dumps(
            {"ServerURL": _server_url(host), "Username": username, "Secret": password}
        )
        _run_helper(helper, "store", payload, secret=password)
        return f"credential helper {HELPER_PREFIX}{helper}"
    auths = _section(config, "auths", path)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[_server_url(host)] = {"auth": auth}
    config["auths"] = auths
    _write(path, config)
    return f"config file {path}"


def erase(registry: str, *, config_dir: Path | None = None) -> bool:
    """Forget a login like `docker logout`: from the helper and every alias key in auths."""
    host = _host_of(registry)
    path = _config_path(config_dir)
    config = _load(path)
    removed = False
    helper = next(iter(_helpers(config, host, path)), None)
    if helper is not None:
        removed = _run_helper(helper, "erase", _server_url(host)) is not None
    auths = _section(config, "auths", path)
    keys = _matching_keys(auths, host)
    if keys:
        for key in keys:
            del auths[key]
        config["auths"] = auths
        _write(path, config)
        removed = True
    return removed
