"""The status page of `syncer schedule`: `GET /` (HTML) and `GET /status.json`.

One small page, no JavaScript and no external assets, so it works from a `kubectl
port-forward` with nothing else. Every value is escaped: repository names and error
messages come from remote registries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from syncer.sync.report import EntryReport, RunReport

NextRun = Callable[[str], datetime | None]
# The page refreshes itself; a header, not a script.
REFRESH_S = 30


@dataclass(frozen=True)
class GroupRun:
    """One finished run of a scheduler job, as the board needs it."""

    group: str
    schedule: str
    patterns: tuple[str, ...]  # sources of `team/*` entries, reported by repository instead
    entries: tuple[EntryReport, ...]
    finished: datetime


@dataclass
class EntryStatus:
    source: str
    destination: str
    schedule: str
    group: str  # the scheduler job that runs this entry, for its next run time
    status: str = "pending"  # pending until its first run, then ok | partial | failed
    last_run: str | None = None
    next_run: str | None = None
    tags_copied: int = 0
    tags_failed: int = 0
    tags_deferred: int = 0
    last_error: str = ""
    last_event: str = ""  # when, and what the sender said (the latest of its batch)
    event_result: str = ""  # what the sync it triggered did


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat(timespec="seconds") if when else None


class StatusBoard:
    def __init__(self, next_run: NextRun) -> None:
        self._next_run = next_run
        self._rows: dict[tuple[str, str], EntryStatus] = {}

    def plan(self, jobs: Iterable[tuple[str, str, Iterable[tuple[str, str]]]]) -> None:
        """The scheduler's jobs (id, schedule, entries) after start or reload.

        Entries not run yet show as pending; rows of entries gone from the config keep their
        last result but no next run, and pending ones of them go.
        """
        for key, row in list(self._rows.items()):
            row.group = ""
            if row.status == "pending":
                del self._rows[key]
        for group, schedule, entries in jobs:
            for source, destination in entries:
                row = self._rows.setdefault(
                    (source, destination), EntryStatus(source, destination, schedule, group)
                )
                row.group, row.schedule = group, schedule

    def record(self, run: GroupRun) -> None:
        # A `team/*` entry reports the repositories it expanded to: its pending row goes.
        patterns = set(run.patterns)
        for key in [k for k, row in self._rows.items() if k[0] in patterns]:
            if self._rows[key].status == "pending":
                del self._rows[key]
        for entry in run.entries:
            c = entry.counters
            row = EntryStatus(
                entry.source,
                entry.destination,
                run.schedule,
                run.group,
                status=entry.status,
                last_run=_iso(run.finished),
                tags_copied=c.tags_copied,
                tags_failed=c.tags_failed,
                tags_deferred=c.tags_deferred,
            )
            if entry.errors:
                last = entry.errors[-1]
                row.last_error = f"{last['tag']}: {last['error']}" if last["tag"] else last["error"]
            self._rows[(entry.source, entry.destination)] = row

    def event(
        self, key: tuple[str, str], notes: list[str], report: RunReport, rows: list[EntryReport]
    ) -> None:
        """An event-triggered sync of the entry `key` finished; `rows` are its repositories
        (a `team/*` entry shows by repository once it has run)."""
        found = [
            self._rows[k] for k in ((r.source, r.destination) for r in rows) if k in self._rows
        ]
        if not found and key in self._rows:
            found = [self._rows[key]]
        more = f" (+{len(notes) - 1} more)" if len(notes) > 1 else ""
        t = report.totals
        for row in found:  # none: the entry left the config while its events waited
            row.last_event = f"{_iso(datetime.now(UTC))} {notes[-1]}{more}"
            row.event_result = (
                f"{report.status}: {t.tags_copied} copied, {t.tags_up_to_date} up to date, "
                f"{t.tags_failed} failed, {t.tags_pruned} pruned"
            )

    def crashed(self, group: str, error: str, finished: datetime) -> None:
        """A run that raised instead of reporting: every entry of its job failed."""
        for row in self._rows.values():
            if row.group == group:
                row.status, row.last_run, row.last_error = "failed", _iso(finished), error

    def rows(self) -> list[EntryStatus]:
        out = []
        for key in sorted(self._rows):
            row = self._rows[key]
            row.next_run = _iso(self._next_run(row.group))
            out.append(row)
        return out

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "generated": _iso(datetime.now(UTC)),
            "entries": [asdict(r) for r in self.rows()],
        }
        return json.dumps(doc, indent=2).encode()

    def to_html(self) -> bytes:
        return render_html(self.rows(), datetime.now(UTC)).encode()


COLUMNS = (
    ("source", "Source"),
    ("destination", "Destination"),
    ("status", "Status"),
    ("last_run", "Finished"),
    ("next_run", "Next run"),
    ("tags_copied", "Copied"),
    ("tags_failed", "Failed"),
    ("tags_deferred", "Deferred"),
    ("last_error", "Last error"),
    ("last_event", "Last event"),
    ("event_result", "Event sync"),
)

_STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f}
h1{font-size:1.3em}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f6;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.time{white-space:nowrap}td.err{color:#a1260d;word-break:break-word;min-width:14em}
.st{font-weight:600;border-radius:3px;padding:0 .4em}
.ok{background:#d7f5dc}.partial{background:#fff0c2}.failed{background:#ffd7d2}
.pending{background:#e8e8ee}footer{margin-top:1em;color:#666}
"""


def _cell(field: str, value: object) -> str:
    text = escape("" if value is None else str(value), quote=True)
    if field == "status":
        return f'<td><span class="st {text}">{text}</span></td>'
    if field.startswith("tags_"):
        return f'<td class="num">{text}</td>'
    if field in ("last_run", "next_run"):
        return f'<td class="time"><time datetime="{text}">{_readable(text)}</time></td>'
    if field == "last_error":
        return f'<td class="err">{text}</td>'
    return f"<td>{text}</td>"


def _readable(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC")  # the JSON keeps ISO 8601


def render_html(rows: list[EntryStatus], now: datetime) -> str:
    head = "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    body = "".join(
        "<tr>" + "".join(_cell(f, getattr(r, f)) for f, _ in COLUMNS) + "</tr>" for r in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(COLUMNS)}">No entries scheduled.</td></tr>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>syncer status</title><style>{_STYLE}</style></head><body>"
        "<h1>syncer schedule</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<footer>Generated {escape(_readable(_iso(now) or ''))}. "
        'Machine-readable: <a href="status.json">status.json</a>, '
        '<a href="metrics">metrics</a>.</footer></body></html>'
    )
