"""Start and stop real Debian `docker-registry` (distribution 2.8) processes for tests.

Where the request log comes from: 2.8 wraps its whole handler in gorilla's
CombinedLoggingHandler writing to *stdout* (one Apache "combined" line per request, query
string included), while its own logrus output ("response completed", startup) goes to
*stderr*. We send stdout to `access.log` and stderr to `registry.log` per process, so a seed
process on the same storage never shows up in the main process's requests.

The access line is written when the handler returns, which for large bodies can be a moment
after the client already has the response. `requests()` therefore first sends a marked probe
request and waits until that probe appears in the log; probe lines are filtered out.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import bcrypt
import httpx

from tests.support import tls
from tests.support.http import TLS, http_client
from tests.support.token_server import TokenServer

VARIANTS = ("anon", "basic", "token", "tls")
TOKEN_SERVICE = "test-registry"
TOKEN_ISSUER = "test-issuer"
BASIC_REALM = "basic-realm"
START_TIMEOUT = 10.0
# Marker on our own readiness/flush probes; such lines are never reported as requests.
_PROBE = "_support_probe="
_ACCESS_RE = re.compile(
    rb'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) '
)
_LIVE: set[RegistryProcess] = set()


class RegistryNotInstalled(RuntimeError):
    pass


def registry_binary() -> str:
    found = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(found, os.X_OK):
        raise RegistryNotInstalled(
            "docker-registry binary not found: install Debian's `docker-registry` package "
            "(apt-get install docker-registry) to run the real-registry tests"
        )
    return found


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # includes the query string, exactly as the client sent it
    status: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def base_config(port: int, root: Path) -> dict[str, Any]:
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            # Purging runs at start-up on the shared storage; off so two processes never race.
            "maintenance": {"uploadpurging": {"enabled": False}},
            # No blob descriptor cache on purpose: an in-memory cache would go stale when the
            # other process on the same storage deletes something.
        },
        # Fixed secret: upload state tokens stay valid across the processes on one storage.
        "http": {"addr": f"127.0.0.1:{port}", "secret": "syncer-test-http-secret"},
    }


class RegistryProcess:
    """One `docker-registry serve` process plus its parsed access log."""

    def __init__(self, name: str, workdir: Path, scheme: str, ca_file: Path | None) -> None:
        self.name = name
        self.workdir = workdir
        self.scheme = scheme
        self.port = 0
        self.config_file = workdir / f"{name}-config.yml"
        self.access_log = workdir / f"{name}-access.log"
        self.log_file = workdir / f"{name}-registry.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config: dict[str, Any] = {}
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else TLS
        )
        # trust_env=False: a proxy from the environment must never see loopback test traffic.
        self._probe_client = http_client(verify=verify, timeout=5.0)
        self._probe_n = 0
        self._offset = 0
        self._partial = b""
        self._seen_probes: set[str] = set()
        self._requests: list[LoggedRequest] = []

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, config: dict[str, Any], port: int) -> None:
        self.port = port
        self.config = config
        # JSON is valid YAML, and json.dumps can't get YAML quoting wrong.
        self.config_file.write_text(json.dumps(config, indent=2))
        # REGISTRY_* variables override config keys in distribution; don't inherit any.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        # Go's collector runs far less often at 400: about a quarter less CPU per request
        # (measured: 2.7 -> 2.0 ms on a push), for ~10 MB more heap. A suite starts ~560
        # registries serving ~50k requests, ~100 s of CPU, the registries' share of the suite.
        env.setdefault("GOGC", "400")
        with self.access_log.open("wb") as out, self.log_file.open("wb") as err:
            self.proc = subprocess.Popen(
                [registry_binary(), "serve", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,  # Ctrl-C in pytest must not hit the registry first
            )
        _LIVE.add(self)
        self._wait_ready()

    def output(self) -> str:
        parts = []
        for p in (self.log_file, self.access_log):
            with contextlib.suppress(OSError):
                parts.append(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _send_probe(self, tag: str) -> str:
        self._probe_n += 1
        marker = f"{_PROBE}{tag}-{self._probe_n}"
        self._probe_client.get(f"{self.url}/v2/?{marker}")
        return marker

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        marker: str | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"docker-registry {self.name} exited early:\n{self.output()}")
            if marker is None:
                try:
                    marker = self._send_probe("ready")
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue
            # Seeing our probe in *our* log proves the answer came from this process and not
            # from something else that grabbed the port.
            self._read_log()
            if marker in self._seen_probes:
                return
            time.sleep(0.005)
        raise RuntimeError(
            f"docker-registry {self.name} not answering on {self.url} after "
            f"{START_TIMEOUT}s:\n{self.output()}"
        )

    def _read_log(self) -> None:
        try:
            with self.access_log.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # incomplete last line: keep for the next read
        for line in lines:
            m = _ACCESS_RE.match(line)
            if not m:
                continue
            path = m["path"].decode(errors="replace")
            if _PROBE in path:
                self._seen_probes.add(_PROBE + path.split(_PROBE, 1)[1].split("&", 1)[0])
                continue
            self._requests.append(LoggedRequest(m["method"].decode(), path, int(m["status"])))

    def sync(self, timeout: float = 5.0) -> None:
        """Make the parsed log complete up to now (see module docstring)."""
        if not self.alive():
            self._read_log()
            return
        marker = self._send_probe("sync")
        deadline = time.monotonic() + timeout
        while True:
            self._read_log()
            if marker in self._seen_probes:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe {marker} never reached {self.access_log}")
            time.sleep(0.002)

    def requests(self) -> list[LoggedRequest]:
        self.sync()
        return list(self._requests)

    def stop(self) -> None:
        _LIVE.discard(self)
        self._probe_client.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_process(
    name: str,
    workdir: Path,
    scheme: str,
    ca_file: Path | None,
    make_config: Callable[[int], dict[str, Any]],
) -> RegistryProcess:
    """Start on a fresh free port; retry when another process stole the port in between."""
    last: Exception | None = None
    for _ in range(3):
        proc = RegistryProcess(name, workdir, scheme, ca_file)
        port = free_port()
        try:
            proc.start(make_config(port), port)
            return proc
        except RuntimeError as exc:
            proc.stop()
            last = exc
            if "address already in use" not in str(exc):
                raise
    raise RuntimeError(f"could not start docker-registry {name}: {last}")


@dataclass(eq=False)
class RunningRegistry:
    variant: str
    host: str  # "127.0.0.1:PORT", as written in image references
    url: str
    root: Path  # storage root directory
    seed_url: str  # open, plain-http process on the same storage (== url for "anon")
    process: RegistryProcess
    seed: RegistryProcess | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    token_server: TokenServer | None = None
    workdir: Path = Path()

    def requests(self) -> list[LoggedRequest]:
        """Every request the main process served so far (never the seed's, never probes)."""
        return self.process.requests()

    def mark(self) -> int:
        return len(self.process.requests())

    def requests_since(self, mark: int) -> list[LoggedRequest]:
        return self.process.requests()[mark:]

    def output(self) -> str:
        return self.process.output()  # tails of registry.log and access.log, for messages

    def stop(self) -> None:
        # Every piece is stopped even if an earlier one fails.
        with contextlib.ExitStack() as stack:
            stack.callback(self.process.stop)
            if self.seed is not None:
                stack.callback(self.seed.stop)
            if self.token_server is not None:
                stack.callback(self.token_server.stop)


def start_registry(
    tmp_path: Path, variant: str = "anon", *, storage: Path | None = None, **opts: Any
) -> RunningRegistry:
    """Start one registry variant (see VARIANTS).

    Options: `username`/`password` (basic, token), `ttl`/`deny` (token server), `seed=False`
    to skip the open seed process, `extra_config` (dict deep-merged into the main process's
    config, e.g. `{"proxy": {...}}`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown registry variant {variant!r}; expected one of {VARIANTS}")
    user: str = opts.pop("username", "tester")
    secret: str = opts.pop("password", None) or secrets.token_urlsafe(12)
    ttl: int = opts.pop("ttl", 300)
    deny: set[tuple[str, str]] = set(opts.pop("deny", ()))
    want_seed: bool = opts.pop("seed", True)
    extra: dict[str, Any] = opts.pop("extra_config", {})
    if opts:
        raise TypeError(f"unknown start_registry options: {sorted(opts)}")
    registry_binary()

    workdir = Path(tempfile.mkdtemp(prefix=f"registry-{variant}-", dir=tmp_path))
    root = storage if storage is not None else workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    auth: dict[str, Any] = {}
    scheme = "http"
    ca_file: Path | None = None
    token_server: TokenServer | None = None
    http_extra: dict[str, Any] = {}

    if variant == "basic":
        # Cost 4: the registry re-checks bcrypt on *every* request, cost 12 is ~250 ms each.
        hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{user}:{hashed}\n")
        auth = {"htpasswd": {"realm": BASIC_REALM, "path": str(htpasswd)}}
    elif variant == "token":
        key = tls.rsa_key("token-signing")
        cert = tls.self_signed_ca(key, "syncer test token signer")
        bundle = workdir / "token-signer.pem"
        bundle.write_bytes(tls.cert_pem(cert))
        token_server = TokenServer(
            {user: secret}, key, cert, TOKEN_SERVICE, TOKEN_ISSUER, deny=deny, ttl=ttl
        )
        auth = {
            "token": {
                "realm": token_server.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(bundle),
            }
        }
    elif variant == "tls":
        files = tls.make_tls_files(workdir / "tls")
        scheme, ca_file = "https", files.ca_file
        http_extra = {"tls": {"certificate": str(files.cert_file), "key": str(files.key_file)}}

    def main_config(port: int) -> dict[str, Any]:
        cfg = base_config(port, root)
        cfg["http"].update(http_extra)
        if auth:
            cfg["auth"] = auth
        return _merge(cfg, extra)

    started: list[TokenServer | RegistryProcess] = [token_server] if token_server else []
    try:
        main = start_process("main", workdir, scheme, ca_file, main_config)
        started.append(main)
        seed = None
        if variant != "anon" and want_seed:
            seed = start_process("seed", workdir, "http", None, lambda p: base_config(p, root))
            started.append(seed)
    except BaseException:
        for item in reversed(started):
            item.stop()
        raise
    return RunningRegistry(
        variant=variant,
        host=f"127.0.0.1:{main.port}",
        url=main.url,
        root=root,
        seed_url=seed.url if seed else main.url,
        process=main,
        seed=seed,
        username=user if variant in ("basic", "token") else None,
        password=secret if variant in ("basic", "token") else None,
        ca_file=ca_file,
        token_server=token_server,
        workdir=workdir,
    )


@atexit.register
def _kill_leftovers() -> None:
    # Safety net for interrupted sessions: no registry may outlive the test run.
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.stop()


class RegistryFactory(Protocol):
    """Type of the `registry_factory` fixture."""

    def __call__(
        self, variant: str = "anon", *, storage: Path | None = None, **opts: Any
    ) -> RunningRegistry: ...
