"""When to run: 5-field cron expressions and `interval: 30m` durations.

Pure parsing, shared by config validation and the scheduler, so a bad schedule
is a configuration error before anything starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DOW = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_duration(text: str) -> float:
    """`45s`, `30m`, `6h`, `1h30m` -> seconds. ValueError with an example otherwise."""
    value = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not value or pos != len(value) or total <= 0:
        raise ValueError(f"{text!r} is not a duration; write e.g. 45s, 30m, 6h or 1h30m")
    return total


def _cron_dow(field: str) -> str:
    # Cron counts days of week from Sunday=0 (7 too); APScheduler from Monday=0.
    return re.sub(
        r"\d+", lambda m: _DOW[int(m.group())] if int(m.group()) < 8 else m.group(), field
    )


if TYPE_CHECKING:  # apscheduler is imported on use: `syncer sync` runs never need it
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.cron import CronTrigger


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; write e.g. UTC or Europe/Berlin") from None


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expr!r} is not a 5-field cron expression (minute hour day month weekday), "
            "e.g. '*/30 * * * *'"
        )
    fields[4] = _cron_dow(fields[4])
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone(timezone))
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None


@dataclass(frozen=True)
class When:
    """An entry's schedule: exactly one of cron / interval_s."""

    cron: str | None = None
    interval_s: float | None = None
    timezone: str = "UTC"

    def trigger(self) -> BaseTrigger:
        if self.cron is not None:
            return cron_trigger(self.cron, self.timezone)
        assert self.interval_s is not None
        from apscheduler.triggers.interval import IntervalTrigger

        return IntervalTrigger(seconds=self.interval_s, timezone=zone(self.timezone))

    def label(self) -> str:
        """The schedule as logs, job names and the status page show it."""
        if self.cron is not None:
            return f"cron '{self.cron}' ({self.timezone})"
        return f"every {self.interval_s:g}s"


class ScheduleFields(BaseModel):
    """When `syncer schedule` runs an entry: `schedule` (cron) or `interval`, not both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: str | None = None
    interval: str | None = None
    timezone: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            cron_trigger(v)
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)
        return v

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if self.schedule is not None and self.interval is not None:
            raise ValueError("give either `schedule` (cron) or `interval`, not both")
        return self

    def when(self, fallback: ScheduleFields | None = None) -> When | None:
        own = self.schedule is not None or self.interval is not None
        base = self if own or fallback is None else fallback
        tz = self.timezone or (fallback.timezone if fallback else None) or "UTC"
        if base.schedule is not None:
            return When(cron=base.schedule, timezone=tz)
        if base.interval is not None:
            return When(interval_s=parse_duration(base.interval), timezone=tz)
        return None
