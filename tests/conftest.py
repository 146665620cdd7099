"""Shared fixtures: real docker-registry processes (see tests/support/registry.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

# `pytest` (unlike `python -m pytest`) only puts tests/ on sys.path; the repo root is needed
# for `import syncer` and `import tests.support...` however pytest is invoked.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# PYTHONDONTWRITEBYTECODE (set on these machines) also stops pytest from caching the test
# modules it rewrites for its assert messages: each worker would parse and rewrite all of them
# again, ~3.5 s of CPU per worker (collection: 6.4 -> 2.8 s). The cache sits in __pycache__
# beside each test file and is checked against the source's mtime and size, like any .pyc.
# Processes the tests start keep the environment's setting (scripts/setup compiles syncer).
sys.dont_write_bytecode = False

# Import aiohttp and structlog exactly as the `syncer` command does, so every test runs
# with what production has (aiohttp's default SSL contexts trusting nothing, for one).
from syncer.__main__ import prepare_imports  # noqa: E402

prepare_imports()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """With pytest-xdist installed, the suite runs on workers unless `-n` says otherwise
    (`-n 0`, or `-p no:xdist`, runs it in one process): as `-n auto --dist loadgroup`, here
    rather than in addopts so that pytest without xdist still runs the suite."""
    if not config.pluginmanager.hasplugin("xdist") or "PYTEST_XDIST_WORKER" in os.environ:
        return  # no xdist, or this is one of its workers
    if config.option.numprocesses is None:
        config.option.numprocesses = "auto"
        if config.option.dist == "no":
            config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two workers per core: a test mostly waits for registry and syncer processes, so one
    worker per core would leave the cores half idle."""
    return 2 * (os.cpu_count() or 1)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`: tests/support/xdist_schedule.py's grouping."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.support.xdist_schedule import OneWorkerFiles

    return OneWorkerFiles(config, log)


from tests.support.demo_run import KeptDemo  # noqa: E402
from tests.support.registry import (  # noqa: E402
    RegistryFactory,
    RegistryNotInstalled,
    RunningRegistry,
    registry_binary,
    start_registry,
)


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    """`registry_factory(variant="anon", *, storage=None, **opts) -> RunningRegistry`.

    Every registry (and its seed process and token server) is stopped at teardown, also
    when the test failed."""
    try:
        registry_binary()
    except RegistryNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    started: list[RunningRegistry] = []

    def factory(
        variant: str = "anon", *, storage: Path | None = None, **opts: Any
    ) -> RunningRegistry:
        reg = start_registry(tmp_path, variant, storage=storage, **opts)
        started.append(reg)
        return reg

    try:
        yield factory
    finally:
        errors: list[BaseException] = []
        for reg in reversed(started):
            # Shown only in a failure report ("Captured stdout teardown").
            print(f"registry {reg.variant} at {reg.url}: logs in {reg.workdir}")
            try:
                reg.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def kept_demo() -> Iterator[KeptDemo]:
    """One `scripts/demo --keep` run, for the tests that read its output or use its registries
    (tests/support/xdist_schedule.py keeps them on one worker). Stopped at session end."""
    demo = KeptDemo()
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture
def anon_registry(registry_factory: RegistryFactory) -> RunningRegistry:
    return registry_factory("anon")


@pytest.fixture
def basic_registry(registry_factory: RegistryFactory) -> RunningRegistry:
    return registry_factory("basic")


@pytest.fixture
def token_registry(registry_factory: RegistryFactory) -> RunningRegistry:
    return registry_factory("token")


@pytest.fixture
def tls_registry(registry_factory: RegistryFactory) -> RunningRegistry:
    return registry_factory("tls")


import contextlib  # noqa: E402

from tests.support.fault_proxy import FaultProxy, FaultProxyFactory, fault_proxy  # noqa: E402


@pytest.fixture
def fault_proxy_factory() -> Iterator[FaultProxyFactory]:
    """`fault_proxy_factory(registry, **faults) -> FaultProxy`, started, in front of a plain-http
    registry (`cdn=True` also starts a CdnServer). Every proxy is stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def factory(registry: RunningRegistry, **faults: Any) -> FaultProxy:
            return stack.enter_context(fault_proxy(registry, **faults))

        yield factory


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Tests never reach the internet: a request to a host off loopback fails like a dead
    network, at both real network layers (syncer's aiohttp one and httpx's own, which
    `syncer search` and test helpers use). Returns the URLs that were refused."""
    import httpx

    from syncer.registry.reference import is_loopback
    from syncer.registry.transport.aiohttp_transport import AiohttpTransport

    blocked: list[str] = []

    def guard(cls: Any) -> None:
        real = cls.handle_async_request

        async def handle(self: Any, request: httpx.Request) -> httpx.Response:
            if not is_loopback(request.url.host):
                blocked.append(str(request.url))
                raise httpx.ConnectError("blocked by the test: loopback only", request=request)
            return await real(self, request)

        monkeypatch.setattr(cls, "handle_async_request", handle)

    guard(AiohttpTransport)
    guard(httpx.AsyncHTTPTransport)
    return blocked


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts with structlog as a new process has it: an in-process `main()`
    configures it (a level of `warning` with `-q`), and on a shared worker that would
    silence the info lines a later test captures."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _isolated_docker_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never read (or write) the real ~/.docker/config.json of whoever runs them."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))
