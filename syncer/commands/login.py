"""`syncer login` / `syncer logout`: the docker CLI's credential habits.

Credentials are verified against the registry before they are stored, and stored
where docker keeps them (config.json, or its credential helper), so docker and
syncer share them. The password is read from stdin or a no-echo prompt, never
from the command line, where any user could read it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pydantic import SecretStr

from syncer.commands.inspect import registry_lookup
from syncer.credentials import Credential, erase, store
from syncer.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError, SyncerError
from syncer.reference import Reference, normalize_registry
from syncer.registry_config import RegistryConfig
from syncer.transport import Transport, endpoint_url


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "login",
        help="verify and store credentials for a registry (docker config)",
        description="Verify credentials against REGISTRY, then store them like `docker login`. "
        "There is no --password: a password on the command line leaks via the process list.",
    )
    p.add_argument("registry", help="e.g. docker.io or 127.0.0.1:5000")
    p.add_argument("-u", "--username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("-c", "--config", help="sync.yaml whose `registries:` settings apply")
    p.set_defaults(func=run_login)
    p = sub.add_parser("logout", help="remove stored credentials for a registry")
    p.add_argument("registry")
    p.set_defaults(func=run_logout)


def _registry(text: str) -> str:
    try:
        return Reference.parse(f"{text.strip().rstrip('/')}/probe/probe").registry
    except SyncerError:
        raise ConfigError(f"{text!r} is not a registry host[:port]") from None


async def verify(registry: str, config: RegistryConfig, credential: Credential) -> bool:
    """True when the registry accepted the credentials; False when it needs none."""
    api_host = Reference(registry, "probe").api_host
    t = Transport(registry, endpoint_url(registry, api_host, config), config, credential)
    try:
        resp = await t.request("GET", "/v2/")
        return "authorization" in resp.request.headers
    finally:
        await t.aclose()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        data = sys.stdin.read()
        return data[:-1] if data.endswith("\n") else data
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password; use --password-stdin")
    return getpass.getpass("Password: ")


def run_login(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args.registry)
        config = registry_lookup(args.config)(registry)
        username = args.username or (input("Username: ") if sys.stdin.isatty() else "")
        if not username:
            raise ConfigError("no username; pass -u USER")
        password = _read_password(args)
        if not password:
            raise ConfigError("empty password")
    except ConfigError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    credential = Credential(username=username, password=SecretStr(password))
    try:
        needed = asyncio.run(verify(registry, config, credential))
        where = store(registry, username, password)
    except SyncerError as exc:
        print(f"syncer: error: login to {registry} failed: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    if not needed:
        print(f"note: {registry} answered without asking for credentials", file=sys.stderr)
    print(f"Login Succeeded (stored in {where})")
    return EXIT_OK


def run_logout(args: argparse.Namespace) -> int:
    try:
        registry = normalize_registry(_registry(args.registry))
        removed = erase(registry)
    except SyncerError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    if removed:
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")
    return EXIT_OK
