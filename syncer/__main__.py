"""Process entry point, for `syncer` and `python -m syncer`: start-up tuning, then the CLI.

Start-up is most of an up-to-date run (hundreds of ms against tens for the requests), so
the imports are loaded as cheaply as they can be without changing what runs. The test
suite loads them the same way (tests/conftest.py calls `prepare_imports`).
"""

from __future__ import annotations

import gc
import os
import ssl
import sys


def prepare_imports() -> None:
    """Import structlog and aiohttp without the import-time work syncer never uses."""
    # pydantic looks for plugins in every installed distribution's entry points when the
    # first model is built (~15 ms); syncer's models are internal and take none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _import_structlog_without_rich()
    _import_aiohttp_without_its_default_ca_load()


def _import_structlog_without_rich() -> None:
    # structlog.dev imports rich at import time whenever it is installed, for a traceback
    # renderer syncer does not use (logs.py picks plain tracebacks). rich is only needed
    # for progress bars on a terminal, where progress.py imports it. ~60 ms.
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # "not installed", to importers
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


def _import_aiohttp_without_its_default_ca_load() -> None:
    # aiohttp builds two default SSL contexts at import, each parsing the whole system CA
    # bundle (~50 ms apiece here). syncer never uses them: AiohttpTransport hands every
    # https request a context of ours (tls.py), built when a registry first needs TLS. So
    # they are built without loading the bundle; were one ever used, it would trust no
    # certificate at all and fail closed.
    if "aiohttp" in sys.modules:
        return
    ssl.SSLContext.set_default_verify_paths = _no_default_paths  # type: ignore[method-assign]
    try:
        import aiohttp  # noqa: F401
    finally:
        del ssl.SSLContext.set_default_verify_paths  # the inherited C method is back


def _no_default_paths(self: ssl.SSLContext) -> None:
    pass


def run() -> None:
    # Importing pydantic and aiohttp creates a few hundred thousand long-lived objects; the
    # cyclic GC would scan them over and over while they load. Load with it off, then
    # freeze them out of later passes.
    gc.disable()
    try:
        prepare_imports()
        from syncer.cli import main
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(main())


if __name__ == "__main__":
    run()
