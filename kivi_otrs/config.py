"""Settings stored in ``kivi_otrs.settings`` (key/value, one row per key).

Every known key is declared in :data:`SETTINGS` with its default, a parser and
help text. ``kivi-otrs config show|set`` reads and writes the table; secrets
are masked on output and may be overridden by environment variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from .errors import ConfigError

MASK = "********"


def _parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in {"1", "true", "yes", "on", "t", "y"}:
        return True
    if low in {"0", "false", "no", "off", "f", "n", ""}:
        return False
    raise ValueError("expected true or false")


def _parse_positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("expected a number greater than 0")
    return number


def _parse_positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a whole number of at least 1")
    return number


def _parse_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL, e.g. https://helpdesk.example.com/znuny/")
    return value.rstrip("/") + "/"


def _parse_states(value: str) -> tuple[str, ...]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = [part.strip() for part in value.split(",")]
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(s, str) and s.strip() for s in parsed) or not parsed:
        raise ValueError('expected a JSON list of state names, e.g. ["closed successful"]')
    return tuple(s.strip() for s in parsed)


def _parse_time_unit(value: str) -> str:
    if value not in ("minutes", "hours"):
        raise ValueError("expected minutes or hours (what one OTRS time unit means)")
    return value


def _parse_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Europe/Berlin") from None
    return value


def _parse_period(value: str) -> str:
    value = value.strip()
    if value in ("previous-month", "current-month"):
        return value
    if value.startswith("last-") and value.endswith("-days"):
        days = value[len("last-") : -len("-days")]
        if days.isdigit() and int(days) > 0:
            return value
    raise ValueError("expected previous-month, current-month or last-N-days")


def _parse_number_format(value: str) -> str:
    if value not in ("1.000,00", "1000,00", "1,000.00", "1000.00", "1'000.00"):
        raise ValueError("expected one of 1.000,00 1000,00 1,000.00 1000.00 1'000.00")
    return value


def _parse_price_source(value: str) -> str:
    if value not in ("", "customer_hourly_rate", "part"):
        raise ValueError("expected empty (kivitendo prices), customer_hourly_rate or part")
    return value


def _parse_rounding_mode(value: str) -> str:
    if value not in ("up", "nearest"):
        raise ValueError("expected up or nearest")
    return value


def _parse_run_target(value: str) -> str:
    if value not in ("new-order", "periodic-order"):
        raise ValueError("expected new-order or periodic-order")
    return value


def _parse_text(value: str) -> str:
    return value


def _parse_decimal(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError("expected a decimal number such as 15 or 0.25") from None
    if number < 0:
        raise ValueError("expected a number of at least 0")
    return number


@dataclass(frozen=True)
class Setting:
    key: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False
    env: str | None = None


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("otrs.base_url", "http://localhost/znuny/", _parse_url,
                "Base URL of the helpdesk: .../otrs/ (OTRS, Znuny 6.5), .../znuny/ (Znuny 7), .../otobo/ (OTOBO)",
                env="KIVI_OTRS_OTRS_URL"),
        Setting("otrs.webservice", "KivitendoBilling", _parse_text,
                "Name of the imported web service (kivi-otrs otrs-webservice prints its YAML)"),
        Setting("otrs.user", "", _parse_text, "Agent login used for the web service", env="KIVI_OTRS_OTRS_USER"),
        Setting("otrs.password", "", _parse_text,
                "Agent password; the environment variable KIVI_OTRS_OTRS_PASSWORD overrides the table",
                secret=True, env="KIVI_OTRS_OTRS_PASSWORD"),
        Setting("otrs.verify_tls", "true", _parse_bool, "Verify the helpdesk's TLS certificate"),
        Setting("otrs.connect_timeout", "5", _parse_positive_float, "Seconds to wait for a connection"),
        Setting("otrs.read_timeout", "30", _parse_positive_float, "Seconds to wait for an answer"),
        Setting("otrs.time_unit", "minutes", _parse_time_unit, "What one OTRS accounted time unit means: minutes or hours"),
        Setting("otrs.timezone", "UTC", _parse_timezone,
                "OTRS's system time zone (close times in TicketSearch/TicketGet); UTC unless OTRSTimeZone was changed"),
        Setting("otrs.batch_size", "50", _parse_positive_int, "Tickets per TicketGet call"),
        Setting("otrs.search_limit", "500", _parse_positive_int,
                "Limit passed to TicketSearch; a period that hits it is split so nothing is cut"),
        Setting("billing.states", '["closed successful"]', _parse_states, "Billable ticket states by name (JSON list)"),
        Setting("billing.period", "previous-month", _parse_period,
                "Default period: previous-month, current-month or last-N-days"),
        Setting("site.timezone", "Europe/Berlin", _parse_timezone, "Time zone periods are meant in"),
        Setting("billing.default_part", "", _parse_text, "Part number of the default hourly-rate article"),
        Setting("billing.rounding_increment_minutes", "15", _parse_decimal,
                "Round each ticket's time to this many minutes (0 = no rounding)"),
        Setting("billing.rounding_mode", "up", _parse_rounding_mode, "Round each ticket up or to the nearest increment"),
        Setting("billing.minimum_minutes", "0", _parse_decimal, "Minimum billed minutes per ticket"),
        Setting("billing.language", "de", _parse_text, "Template language: de or en"),
        Setting("billing.number_format", "1.000,00", _parse_number_format,
                "Number format of quantities and prices sent to kivitendo (the users' format)"),
        Setting("billing.price_source", "", _parse_price_source,
                "Empty: kivitendo's price rules price the positions; customer_hourly_rate or part: send a price"),
        Setting("billing.reservation_minutes", "120", _parse_positive_int,
                "Tickets offered to an order that is not saved within this time are offered again"),
        Setting("billing.run_target", "new-order", _parse_run_target,
                "kivi-otrs bill: new-order (a draft sales order per customer) or periodic-order (the customer's open "
                "order with periodic invoices, else a new one)"),
        Setting("writeback.enabled", "false", _parse_bool,
                "After billing, set an OTRS dynamic field on each billed ticket (and clear it on release)"),
        Setting("writeback.field", "KivitendoOrder", _parse_text,
                "Name of the OTRS ticket dynamic field (text) that receives order number/position"),
        Setting("writeback.exclude_billed", "true", _parse_bool,
                "With write-back on: leave tickets whose field is set out of searches (a reopened ticket then needs "
                "its field cleared in OTRS to bill the extra time)"),
        Setting("api.token", "", _parse_text,
                "Bearer token of the local endpoint (kivi-otrs serve); KIVI_OTRS_API_TOKEN overrides",
                secret=True, env="KIVI_OTRS_API_TOKEN"),
    ]
}


def _known(key: str) -> Setting:
    try:
        return SETTINGS[key]
    except KeyError:
        raise ConfigError(f"unknown setting {key!r}; kivi-otrs config show lists the known keys") from None


def read_raw(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """All rows of ``kivi_otrs.settings`` as stored (no defaults, no env)."""
    rows = conn.execute("SELECT key, value FROM kivi_otrs.settings").fetchall()
    return {key: value for key, value in rows}


def effective(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Parsed values: environment override, else table row, else default."""
    raw = read_raw(conn)
    result: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        value = raw.get(key, setting.default)
        if setting.env and os.environ.get(setting.env):
            value = os.environ[setting.env]
        try:
            result[key] = setting.parse(value)
        except ValueError as exc:
            raise ConfigError(f"setting {key} is invalid ({exc}); fix it with kivi-otrs config set {key} VALUE") from None
    return result


def show(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """(key, printable value, source) for every known setting; secrets masked."""
    raw = read_raw(conn)
    rows = []
    for key, setting in SETTINGS.items():
        if setting.env and os.environ.get(setting.env):
            value, source = os.environ[setting.env], f"env {setting.env}"
        elif key in raw:
            value, source = raw[key], "table"
        else:
            value, source = setting.default, "default"
        if setting.secret:
            value = MASK if value else "(not set)"
        rows.append((key, value, source))
    return rows


def set_value(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    """Validate and store one setting (upsert)."""
    setting = _known(key)
    try:
        setting.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    conn.execute(
        "INSERT INTO kivi_otrs.settings (key, value) VALUES (%(key)s, %(value)s)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, mtime = now()",
        {"key": key, "value": value},
    )


@dataclass(frozen=True)
class OtrsSettings:
    """Everything the OTRS client needs; built from the settings table."""

    base_url: str
    webservice: str
    user: str
    password: str = field(repr=False)
    verify_tls: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    time_unit: str = "minutes"
    batch_size: int = 50
    search_limit: int = 500
    states: tuple[str, ...] = ("closed successful",)
    timezone: str = "Europe/Berlin"
    period: str = "previous-month"
    otrs_timezone: str = "UTC"
    exclude_field: str | None = None

    @property
    def endpoint(self) -> str:
        """``<base>/nph-genericinterface.pl/Webservice/<Name>``."""
        return f"{self.base_url}nph-genericinterface.pl/Webservice/{self.webservice}"


def otrs_settings(values: dict[str, Any]) -> OtrsSettings:
    """Build :class:`OtrsSettings` from :func:`effective` values."""
    if not values["otrs.user"]:
        raise ConfigError("no OTRS agent login configured; run kivi-otrs config set otrs.user AGENT")
    return OtrsSettings(
        base_url=values["otrs.base_url"],
        webservice=values["otrs.webservice"],
        user=values["otrs.user"],
        password=values["otrs.password"],
        verify_tls=values["otrs.verify_tls"],
        connect_timeout=values["otrs.connect_timeout"],
        read_timeout=values["otrs.read_timeout"],
        time_unit=values["otrs.time_unit"],
        batch_size=values["otrs.batch_size"],
        search_limit=values["otrs.search_limit"],
        states=values["billing.states"],
        timezone=values["site.timezone"],
        period=values["billing.period"],
        otrs_timezone=values["otrs.timezone"],
        exclude_field=values["writeback.field"] if values["writeback.enabled"] and values["writeback.exclude_billed"] else None,
    )
