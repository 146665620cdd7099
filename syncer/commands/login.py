"""`syncer login` / `syncer logout`: the docker CLI's credential habits.

Credentials are verified against the registry before they are stored, and stored where
docker keeps them (config.json, or its credential helper), so docker and syncer share
them. The password comes from stdin or a no-echo prompt, never from the command line,
where every user of the machine could read it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from urllib.parse import urlsplit

from pydantic import SecretStr

from syncer.commands import summary
from syncer.commands._common import add_config_option
from syncer.config.registryfile import registry_settings
from syncer.config.syncfile import normalise_registry
from syncer.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    AuthenticationError,
    ConfigError,
    InvalidReference,
    SyncerError,
)
from syncer.registry.client import RegistryClient
from syncer.registry.credentials import Credential, erase, store
from syncer.registry.options import RegistryConfig
from syncer.registry.origin import check_credentials_channel
from syncer.registry.reference import DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, Reference

_NO_PASSWORD_OPTION = (
    "There is deliberately no -p/--password: a password given as an argument is visible "
    "to every user of the machine (ps, /proc/PID/cmdline) and lands in shell history. "
    "Pipe it in with --password-stdin, or let syncer prompt for it on a terminal."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "login",
        help=summary("login"),
        description="Verify USER's password against REGISTRY, then store it where docker "
        "does (credHelpers / credsStore, else config.json). " + _NO_PASSWORD_OPTION,
    )
    p.add_argument("registry", help="e.g. docker.io, ghcr.io or 127.0.0.1:5000")
    p.add_argument("-u", "--username", help="prompted for on a terminal when omitted")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (one trailing newline is dropped)",
    )
    add_config_option(p)
    p.set_defaults(func=run_login)
    p = sub.add_parser("logout", help=summary("logout"))
    p.add_argument("registry", help="e.g. docker.io or 127.0.0.1:5000")
    p.set_defaults(func=run_logout)


def registry_name(text: str) -> str:
    """The canonical registry for what the user typed, as docker accepts it.

    `docker.io`, `index.docker.io`, `registry-1.docker.io` and docker's own key
    `https://index.docker.io/v1/` all mean Docker Hub (`docker.io`); a scheme or path
    is dropped because the registry's settings in sync.yaml decide how it is reached."""
    raw = text.strip()
    host = urlsplit(raw).netloc if "://" in raw else raw.split("/", 1)[0]
    if "@" in host:
        # Never echo it: `user:password@host` would put the password in the message.
        raise ConfigError("a registry name cannot carry credentials (user@host)")
    try:
        return normalise_registry(host)
    except (ValueError, InvalidReference):
        # A bare `myhost` would be a Docker Hub namespace in every reference, never a registry.
        raise ConfigError(
            f"{text!r} is not a registry: expected host[:port] with a '.' or a port, "
            "or localhost (e.g. registry.example.com, 127.0.0.1:5000)"
        ) from None


def display_name(registry: str) -> str:
    """How docker names a registry in its messages (Docker Hub by its config key)."""
    return DOCKER_HUB_CONFIG_KEY if registry == DOCKER_HUB else registry


def password_from_stdin(data: str) -> str:
    """Drop one trailing newline, as `docker login --password-stdin` does (`\\n`, then
    `\\r`): `echo` adds one, but any other character may be part of the password."""
    data = data.removesuffix("\n")
    return data.removesuffix("\r")


async def verify(registry: str, config: RegistryConfig, credential: Credential) -> bool:
    """Make the registry check `credential`; True when it did, False when it asked for none.

    `GET /v2/` is what `docker login` sends. Its 401 makes the session authenticate:
    Basic registries must then answer 200 to the password; Bearer registries send us to
    their token server, which must issue a token for the credentials (with no scope, so
    no repository needs to exist or be readable). A rejection raises."""
    # Answer every lookup with `credential`: the stored login must not be the one tested.
    client = RegistryClient(lambda _r: config, credentials=lambda _r, _c: credential)
    async with client:
        session = client.session(Reference(registry, "probe"))
        # The session refuses too, but only after its first (anonymous) request; login
        # knows it will send credentials, so it says no up front, with the fix.
        check_credentials_channel(registry, session.base_url, config.tls)
        resp = await session.request("GET", "/v2/")
        return "authorization" in resp.request.headers


def _reason(exc: SyncerError) -> str:
    if isinstance(exc, AuthenticationError) and exc.status in (401, 403):
        # The generic 401 text says "run syncer login", which is what the user just did.
        where = f"{exc.method} {exc.url}".strip()
        return f"username or password rejected ({where} -> {exc.status})"
    return str(exc)


def _read_username(args: argparse.Namespace) -> str:
    if args.username is not None:
        username: str = args.username
    elif args.password_stdin:
        raise ConfigError("--password-stdin needs --username: stdin carries the password")
    elif not sys.stdin.isatty():
        raise ConfigError("no terminal to prompt for the username; pass -u USER")
    else:
        username = input("Username: ")
    username = username.strip()
    if not username:
        raise ConfigError("the username is empty")
    if ":" in username:
        # config.json keeps base64("user:password") split at the first ':'.
        raise ConfigError("a registry username cannot contain ':'")
    return username


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = password_from_stdin(sys.stdin.read())
    elif not sys.stdin.isatty():
        raise ConfigError("no terminal to prompt for the password; use --password-stdin")
    else:
        password = getpass.getpass("Password: ")
    if not password:
        raise ConfigError("the password is empty")
    return password


def run_login(args: argparse.Namespace) -> int:
    try:
        registry = registry_name(args.registry)
        config = registry_settings(args.config)(registry)
        username = _read_username(args)
        password = _read_password(args)
    except ConfigError as exc:
        # Nothing was contacted: a usage error (exit 2), like every other command.
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    credential = Credential(username=username, password=SecretStr(password))
    try:
        checked = asyncio.run(verify(registry, config, credential))
        where = store(registry, username, password)
    except SyncerError as exc:
        print(f"syncer: error: login to {registry} failed: {_reason(exc)}", file=sys.stderr)
        return EXIT_PARTIAL
    if not checked:
        print(
            f"warning: {registry} did not ask for credentials, so they were stored unverified",
            file=sys.stderr,
        )
    if config.credentials is not None and config.credentials.model_dump(exclude_none=True):
        print(
            f"warning: sync.yaml sets registries.{registry}.credentials; those take "
            "precedence over this login",
            file=sys.stderr,
        )
    print(f"Login Succeeded (stored in {where})")
    return EXIT_OK


def run_logout(args: argparse.Namespace) -> int:
    try:
        registry = registry_name(args.registry)
    except ConfigError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        removed = erase(registry)
    except SyncerError as exc:
        print(f"syncer: error: logout from {registry} failed: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    if removed:
        print(f"Removing login credentials for {display_name(registry)}")
    else:
        print(f"Not logged in to {display_name(registry)}")
    return EXIT_OK
