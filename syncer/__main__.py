"""Process entry point, for `syncer` and `python -m syncer`: start-up tuning, then the CLI."""

from __future__ import annotations

import gc
import sys


def run() -> None:
    # Importing pydantic, aiohttp and rich creates a few hundred thousand long-lived objects;
    # the cyclic GC would scan them over and over while they load (~50 ms of a start-up that
    # is most of an up-to-date run). Load with it off, then freeze them out of later passes.
    gc.disable()
    try:
        from syncer.cli import main
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(main())


if __name__ == "__main__":
    run()
