"""Process entry point, for `syncer` and `python -m syncer`: start-up tuning, then the CLI.

Start-up is most of an up-to-date run (hundreds of ms against tens for the requests), so
the imports are loaded as cheaply as they can be without changing what runs.
"""

from __future__ import annotations

import gc
import sys


def _import_structlog_without_rich() -> None:
    # structlog.dev imports rich at import time whenever it is installed, for a traceback
    # renderer syncer does not use (logs.py picks plain tracebacks). rich is only needed
    # for progress bars on a terminal, where progress.py imports it. Hidden for this one
    # import, ~60 ms of every start-up go.
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # "not installed", to importers
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


def run() -> None:
    # Importing pydantic and aiohttp creates a few hundred thousand long-lived objects; the
    # cyclic GC would scan them over and over while they load. Load with it off, then
    # freeze them out of later passes.
    gc.disable()
    try:
        _import_structlog_without_rich()
        from syncer.cli import main
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(main())


if __name__ == "__main__":
    run()
