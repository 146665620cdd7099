"""Process entry point, for `syncer` and `python -m syncer`: start-up tuning, then the CLI.

Start-up is most of an up-to-date run (hundreds of ms against tens for the requests), so
the imports are loaded as cheaply as they can be without changing what runs. The test
suite loads them the same way (tests/conftest.py calls `prepare_imports`). They are loaded
when the chosen subcommand's module is (`syncer.cli`): `--version` and `--help` load none.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl


def prepare_imports() -> None:
    """Import structlog and aiohttp without the import-time work syncer never uses."""
    # pydantic looks for plugins in every installed distribution's entry points when the
    # first model is built (~15 ms); syncer's models are internal and take none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _import_structlog_without_rich()
    _import_aiohttp_without_its_default_ca_load()
    _import_httpx_without_its_command_line()


def _import_structlog_without_rich() -> None:
    # structlog.dev imports rich at import time whenever it is installed, for a traceback
    # renderer syncer does not use (logs.py picks plain tracebacks). rich is only needed
    # for progress bars on a terminal, where progress.py imports it. ~60 ms. It imports
    # colorama too when installed (mkdocs-material brings it), which loads ctypes (~20 ms)
    # and off Windows only supplies the ANSI codes structlog otherwise writes itself.
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    hidden = (
        ["rich"] if sys.platform == "win32" or "colorama" in sys.modules else ["rich", "colorama"]
    )
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "not installed", to importers
    try:
        import structlog  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


def _import_aiohttp_without_its_default_ca_load() -> None:
    # aiohttp builds two default SSL contexts at import, each parsing the whole system CA
    # bundle (~50 ms apiece here). syncer never uses them: AiohttpTransport hands every
    # https request a context of ours (tls.py), built when a registry first needs TLS. So
    # they are built without loading the bundle; were one ever used, it would trust no
    # certificate at all and fail closed.
    if "aiohttp" in sys.modules:
        return
    import ssl

    ssl.SSLContext.set_default_verify_paths = _no_default_paths  # type: ignore[method-assign]
    try:
        import aiohttp  # noqa: F401
    finally:
        del ssl.SSLContext.set_default_verify_paths  # the inherited C method is back


def _import_httpx_without_its_command_line() -> None:
    # httpx imports its own command-line client (`httpx._main`: click, rich and pygments,
    # ~45 ms) whenever all three are installed, as a dev environment's mkdocs makes them;
    # syncer only uses httpx's models. Marked "not installed", httpx keeps a stub instead.
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx  # noqa: F401
    finally:
        del sys.modules["httpx._main"]


def _no_default_paths(self: ssl.SSLContext) -> None:
    pass


def load_command(name: str) -> ModuleType:
    """Import a subcommand's module (and so the engine under it) as cheaply as it can be."""
    # Importing pydantic and aiohttp creates a few hundred thousand long-lived objects; the
    # cyclic GC would scan them over and over while they load. Load with it off, then
    # freeze them out of later passes.
    gc.disable()
    try:
        prepare_imports()
        return importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


def run() -> None:
    from syncer.cli import main

    sys.exit(main(load=load_command))


if __name__ == "__main__":
    run()
