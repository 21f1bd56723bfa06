"""Billing periods in the site's time zone, and the UTC bounds OTRS's TicketSearch takes.

A period is half-open [start, end) in local time; OTRS compares close times in its
system time zone (UTC by default) with both bounds inclusive and the exact format
``YYYY-MM-DD HH:MM:SS`` (any other format silently matches nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .errors import ConfigError

OTRS_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        last = (self.end - timedelta(seconds=1)).date()
        return f"{self.start.date():%Y-%m-%d} .. {last:%Y-%m-%d}"


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def resolve_period(spec: str | None, tz: str, today: date | None = None, date_from: date | None = None,
                   date_to: date | None = None) -> Period:
    """previous-month (default), current-month, last-N-days, or explicit inclusive dates."""
    zone = ZoneInfo(tz)
    today = today or datetime.now(zone).date()
    if date_from or date_to:
        if not (date_from and date_to):
            raise ConfigError("give both --from and --to (inclusive dates), or a --period")
        if date_to < date_from:
            raise ConfigError(f"--to {date_to} is before --from {date_from}")
        return Period(_local_midnight(date_from, zone), _local_midnight(date_to + timedelta(days=1), zone))
    spec = spec or "previous-month"
    first_this = today.replace(day=1)
    if spec == "previous-month":
        first_prev = (first_this - timedelta(days=1)).replace(day=1)
        return Period(_local_midnight(first_prev, zone), _local_midnight(first_this, zone))
    if spec == "current-month":
        first_next = (first_this + timedelta(days=32)).replace(day=1)
        return Period(_local_midnight(first_this, zone), _local_midnight(first_next, zone))
    if spec.startswith("last-") and spec.endswith("-days") and spec[5:-5].isdigit() and int(spec[5:-5]) > 0:
        days = int(spec[5:-5])
        return Period(_local_midnight(today - timedelta(days=days - 1), zone),
                      _local_midnight(today + timedelta(days=1), zone))
    raise ConfigError(f"unknown period {spec!r}; use previous-month, current-month or last-N-days")


def otrs_bounds(period: Period, otrs_tz: str = "UTC") -> tuple[str, str]:
    """TicketCloseTimeNewerDate / OlderDate in OTRS's system time zone; OTRS treats both as inclusive."""
    zone = ZoneInfo(otrs_tz)
    start = period.start.astimezone(zone)
    last = (period.end - timedelta(seconds=1)).astimezone(zone)
    return start.strftime(OTRS_FORMAT), last.strftime(OTRS_FORMAT)


_OTRS_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def parse_otrs_time(value: str, otrs_tz: str = "UTC") -> datetime:
    """An OTRS ``YYYY-MM-DD HH:MM:SS`` (system time zone) as an aware datetime; ValueError if malformed."""
    if _OTRS_TIME.fullmatch(value):  # the usual zero-padded form: fromisoformat is ~10x faster than strptime
        naive = datetime.fromisoformat(value)
    else:
        naive = datetime.strptime(value, OTRS_FORMAT)
    return naive.replace(tzinfo=ZoneInfo(otrs_tz))
