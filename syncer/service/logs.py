"""structlog setup: readable on a terminal, JSON lines elsewhere (CI, Kubernetes)."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "console", "json"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _StderrLogger:
    """Writes to whatever sys.stderr is at the time, so a swapped stream is never stale."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = msg


class _FromStdlib(logging.Handler):
    """Warnings of libraries that log through `logging` (apscheduler, asyncio) become our own
    lines: in a JSON log, one object per line, never a raw traceback that its reader chokes
    on (without a handler, Python prints them bare to stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                fields["error"] = f"{type(exc).__name__}: {exc}"
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


def configure(fmt: LogFormat = "auto", level: str = "info") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks, whether or not rich was imported before structlog (__main__.py).
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            _LEVELS.get(level.lower(), logging.INFO)
        ),
        logger_factory=lambda *_args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _FromStdlib)]:
        root.removeHandler(handler)  # configured again (tests, a second main()): one handler
    root.addHandler(_FromStdlib(logging.WARNING))
