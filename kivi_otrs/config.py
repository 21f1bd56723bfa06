"""Settings stored in ``kivi_otrs.settings`` (key/value, one row per key).

Every known key is declared in :data:`SETTINGS` with its default, a parser that
knows the allowed range and help text. ``kivi-otrs config show|set|unset`` reads
and writes the table. A stored value that is out of range is reported, naming the
key and the ``config set`` that fixes it, before anything uses it.

Secrets (``otrs.password``, ``api.token``) stay out of the database by default:
they are read from the environment, from systemd credentials
(``$CREDENTIALS_DIRECTORY/otrs.password``) or from a secrets file readable by its
owner only (``--secrets-file`` / ``$KIVI_OTRS_SECRETS_FILE``, lines ``key = value``).
A secret stored in the table with ``config set --store-in-database`` still works;
``kivi-otrs doctor`` warns about it. Secrets are masked on output and never appear
in messages.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from .errors import ConfigError
from .resources import resource_dir

MASK = "********"
SECRETS_FILE_ENV = "KIVI_OTRS_SECRETS_FILE"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
NOT_INSTALLED = "kivi-otrs is not installed in this database; run kivi-otrs migrate"

_PLAIN_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_MAX = 200

# Set by the CLI's --secrets-file for the duration of one invocation.
_secrets_file: str | None = None


def use_secrets_file(path: str | None) -> None:
    """Read secrets from this file (``--secrets-file``); ``None``: ``$KIVI_OTRS_SECRETS_FILE`` if set."""
    global _secrets_file
    _secrets_file = path


def _plain_number(value: str) -> Decimal:
    """A plain decimal number: no exponent, no inf/NaN, no underscores, ASCII digits only."""
    text = value.strip()
    if not _PLAIN_NUMBER.match(text):
        raise ValueError("not a plain number")
    return Decimal(text)


def _number(low: Decimal | int, high: Decimal | int, unit: str, kind: Callable[[Decimal], Any],
            whole: bool = False) -> Callable[[str], Any]:
    what = f"{'a whole number' if whole else 'a number'} from {low} to {high}{' ' + unit if unit else ''}"

    def parse(value: str) -> Any:
        try:
            number = _plain_number(value)
        except (ValueError, InvalidOperation):
            raise ValueError(f"expected {what}") from None
        if not low <= number <= high or (whole and number != number.to_integral_value()):
            raise ValueError(f"expected {what}")
        if not whole and number.as_tuple().exponent < -4:  # type: ignore[operator]
            raise ValueError(f"expected {what} with at most 4 decimal places")
        return kind(number)

    parse.__doc__ = what
    return parse


def _parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in {"1", "true", "yes", "on", "t", "y"}:
        return True
    if low in {"0", "false", "no", "off", "f", "n", ""}:
        return False
    raise ValueError("expected true or false")


def _parse_seconds_float(number: Decimal) -> float:
    result = float(number)
    if not math.isfinite(result):  # pragma: no cover - the range check comes first
        raise ValueError("expected a finite number")
    return result


def _parse_url(value: str) -> str:
    value = value.strip()
    example = "e.g. https://helpdesk.example.com/znuny/"
    if not value.startswith(("http://", "https://")) or _CONTROL.search(value) or " " in value:
        raise ValueError(f"expected an http:// or https:// URL, {example}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"expected an http:// or https:// URL with a valid host and port, {example}") from None
    if not parts.hostname or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"expected an http:// or https:// URL with a host and no user, query or fragment, {example}")
    return value.rstrip("/") + "/"


def _text(max_len: int = _TEXT_MAX, allow_empty: bool = True, pattern: str | None = None,
          what: str = "text") -> Callable[[str], str]:
    compiled = re.compile(pattern) if pattern else None

    def parse(value: str) -> str:
        if not value and allow_empty:
            return value
        if not value:
            raise ValueError(f"expected {what}, not empty")
        if _CONTROL.search(value):
            raise ValueError(f"expected {what} on one line without control characters")
        if len(value) > max_len:
            raise ValueError(f"expected {what} of at most {max_len} characters")
        if compiled and not compiled.fullmatch(value):
            raise ValueError(f"expected {what}")
        return value

    return parse


def _parse_secret(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("expected one line without control characters")
    if len(value) > 1000:
        raise ValueError("expected at most 1000 characters")
    return value


def _parse_token(value: str) -> str:
    if not value:
        return value
    if len(value) < 16 or len(value) > 1000 or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise ValueError("expected a token of 16 to 1000 printable ASCII characters without spaces "
                         "(e.g. from: openssl rand -hex 32)")
    return value


def _parse_states(value: str) -> tuple[str, ...]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = [part.strip() for part in value.split(",")]
    if isinstance(parsed, str):
        parsed = [parsed]
    if (not isinstance(parsed, list) or not parsed or len(parsed) > 50
            or not all(isinstance(s, str) and s.strip() and len(s) <= _TEXT_MAX and not _CONTROL.search(s)
                       for s in parsed)):
        raise ValueError('expected a JSON list of 1 to 50 state names, e.g. ["closed successful"]')
    return tuple(s.strip() for s in parsed)


def _choice(*allowed: str, what: str | None = None) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(what or f"expected one of: {', '.join(allowed)}")
        return value

    return parse


def _parse_timezone(value: str) -> str:
    if not value or _CONTROL.search(value) or len(value) > 100:
        raise ValueError("expected an IANA time zone such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("expected an IANA time zone such as Europe/Berlin") from None
    return value


MAX_PERIOD_DAYS = 3660


def _parse_period(value: str) -> str:
    value = value.strip()
    if value in ("previous-month", "current-month"):
        return value
    match = re.fullmatch(r"last-([0-9]{1,5})-days", value)
    if match and 1 <= int(match.group(1)) <= MAX_PERIOD_DAYS:
        return value
    raise ValueError(f"expected previous-month, current-month or last-N-days with N from 1 to {MAX_PERIOD_DAYS}")


def template_languages() -> tuple[str, ...]:
    """Languages with shipped position templates (``templates/positions/<language>/``)."""
    base = resource_dir("templates") / "positions"
    return tuple(sorted(p.name for p in base.iterdir() if p.is_dir() and (p / "description.j2").exists()))


def _parse_language(value: str) -> str:
    languages = template_languages()
    if value not in languages:
        raise ValueError(f"expected a language with shipped templates: {', '.join(languages)}")
    return value


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
        Setting("otrs.webservice", "KivitendoBilling",
                _text(allow_empty=False, pattern=r"[^/?#%\\\s][^/?#%\\]*",
                      what="a web service name without / ? # % or \\"),
                "Name of the imported web service (kivi-otrs otrs-webservice prints its YAML)"),
        Setting("otrs.user", "", _text(what="an agent login"), "Agent login used for the web service",
                env="KIVI_OTRS_OTRS_USER"),
        Setting("otrs.password", "", _parse_secret,
                "Agent password: KIVI_OTRS_OTRS_PASSWORD, systemd credential otrs.password or the secrets file "
                "(stored in the database only with config set --store-in-database)",
                secret=True, env="KIVI_OTRS_OTRS_PASSWORD"),
        Setting("otrs.verify_tls", "true", _parse_bool, "Verify the helpdesk's TLS certificate"),
        Setting("otrs.connect_timeout", "5", _number(Decimal("0.1"), 300, "seconds", _parse_seconds_float),
                "Seconds to wait for a connection (0.1 to 300)"),
        Setting("otrs.read_timeout", "30", _number(Decimal("0.1"), 3600, "seconds", _parse_seconds_float),
                "Seconds to wait for an answer (0.1 to 3600)"),
        Setting("otrs.time_unit", "minutes",
                _choice("minutes", "hours", what="expected minutes or hours (what one OTRS time unit means)"),
                "What one OTRS accounted time unit means: minutes or hours"),
        Setting("otrs.timezone", "UTC", _parse_timezone,
                "OTRS's system time zone (close times in TicketSearch/TicketGet); UTC unless OTRSTimeZone was changed"),
        Setting("otrs.batch_size", "50", _number(1, 1000, "tickets", int, whole=True),
                "Tickets in the first TicketGet call (1 to 1000); later calls are sized from the measured seconds "
                "and bytes per ticket"),
        Setting("otrs.parallel_requests", "4", _number(1, 16, "requests", int, whole=True),
                "TicketGet calls sent to OTRS at the same time (1 to 16; 1 = one after another)"),
        Setting("otrs.search_limit", "500", _number(1, 10000, "tickets", int, whole=True),
                "Limit passed to TicketSearch (1 to 10000); a period that hits it is split so nothing is cut"),
        Setting("billing.states", '["closed successful"]', _parse_states, "Billable ticket states by name (JSON list)"),
        Setting("billing.period", "previous-month", _parse_period,
                "Default period: previous-month, current-month or last-N-days"),
        Setting("site.timezone", "Europe/Berlin", _parse_timezone, "Time zone periods are meant in"),
        Setting("billing.default_part", "", _text(what="a part number"),
                "Part number of the default hourly-rate article"),
        Setting("billing.rounding_increment_minutes", "15", _number(0, 1440, "minutes", Decimal),
                "Round each ticket's time to this many minutes (0 to 1440; 0 = no rounding)"),
        Setting("billing.rounding_mode", "up", _choice("up", "nearest", what="expected up or nearest"),
                "Round each ticket up or to the nearest increment"),
        Setting("billing.minimum_minutes", "0", _number(0, 1440, "minutes", Decimal),
                "Minimum billed minutes per ticket (0 to 1440)"),
        Setting("billing.language", "de", _parse_language, "Template language (one with shipped templates: de, en)"),
        Setting("billing.number_format", "1.000,00",
                _choice("1.000,00", "1000,00", "1,000.00", "1000.00", "1'000.00",
                        what="expected one of 1.000,00 1000,00 1,000.00 1000.00 1'000.00"),
                "Number format of quantities and prices sent to kivitendo (the users' format)"),
        Setting("billing.price_source", "",
                _choice("", "customer_hourly_rate", "part",
                        what="expected empty (kivitendo prices), customer_hourly_rate or part"),
                "Empty: kivitendo's price rules price the positions; customer_hourly_rate or part: send a price"),
        Setting("billing.reservation_minutes", "120", _number(1, 10080, "minutes", int, whole=True),
                "Tickets offered to an order that is not saved within this time (1 to 10080 minutes) are offered again"),
        Setting("billing.run_target", "new-order",
                _choice("new-order", "periodic-order", what="expected new-order or periodic-order"),
                "kivi-otrs bill: new-order (a draft sales order per customer) or periodic-order (the customer's open "
                "order with periodic invoices, else a new one)"),
        Setting("writeback.enabled", "false", _parse_bool,
                "After billing, set an OTRS dynamic field on each billed ticket (and clear it on release)"),
        Setting("writeback.field", "KivitendoOrder",
                _text(allow_empty=False, pattern=r"[A-Za-z0-9]+",
                      what="an OTRS dynamic field name of letters and digits"),
                "Name of the OTRS ticket dynamic field (text) that receives order number/position"),
        Setting("writeback.exclude_billed", "true", _parse_bool,
                "With write-back on: leave tickets whose field is set out of searches (a reopened ticket then needs "
                "its field cleared in OTRS to bill the extra time)"),
        Setting("api.token", "", _parse_token,
                "Bearer token of the local endpoint (kivi-otrs serve): KIVI_OTRS_API_TOKEN, systemd credential "
                "api.token or the secrets file (stored in the database only with config set --store-in-database)",
                secret=True, env="KIVI_OTRS_API_TOKEN"),
    ]
}
SECRET_KEYS = tuple(k for k, s in SETTINGS.items() if s.secret)


def _known(key: str) -> Setting:
    try:
        return SETTINGS[key]
    except KeyError:
        raise ConfigError(f"unknown setting {key!r}; kivi-otrs config show lists the known keys") from None


def read_raw(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """All rows of ``kivi_otrs.settings`` as stored (no defaults, no env)."""
    try:
        with conn.transaction():
            rows = conn.execute("SELECT key, value FROM kivi_otrs.settings").fetchall()
    except psycopg.errors.UndefinedTable:
        raise ConfigError(NOT_INSTALLED) from None
    return {key: value for key, value in rows}


def secrets_file_path() -> str | None:
    """The secrets file in use: ``--secrets-file``, else ``$KIVI_OTRS_SECRETS_FILE``."""
    return _secrets_file or os.environ.get(SECRETS_FILE_ENV) or None


def read_secrets_file(path: str) -> dict[str, str]:
    """``key = value`` lines of a secrets file readable by its owner only; ``#`` starts a comment line."""
    file = Path(path)
    try:
        info = file.stat()
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"secrets file {path} does not exist; create it (mode 0600) or unset "
                          f"{SECRETS_FILE_ENV} / --secrets-file") from None
    except OSError as exc:
        raise ConfigError(f"secrets file {path} cannot be read ({exc.strerror}); check its owner and mode") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"secrets file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(f"secrets file {path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                          f"run chmod 600 {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"secrets file {path} is not UTF-8 text; save it as UTF-8") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or key not in SECRET_KEYS:
            raise ConfigError(f"secrets file {path} line {number}: expected 'KEY = VALUE' with KEY one of "
                              f"{', '.join(SECRET_KEYS)}")
        found[key] = value.strip()
    return found


def _credential(key: str) -> str | None:
    directory = os.environ.get(CREDENTIALS_ENV)
    if not directory:
        return None
    path = Path(directory) / key
    try:
        return path.read_bytes().decode("utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"systemd credential {path} cannot be read as UTF-8 text; check LoadCredential=") from None


def _outside_value(setting: Setting, secrets: dict[str, str] | None) -> tuple[str, str] | None:
    """(value, source) from the environment, systemd credentials or the secrets file; None when absent."""
    if setting.env and os.environ.get(setting.env):
        return os.environ[setting.env], f"env {setting.env}"
    if setting.secret:
        credential = _credential(setting.key)
        if credential:
            return credential, f"systemd credential {setting.key}"
        if secrets and secrets.get(setting.key):
            return secrets[setting.key], f"secrets file {secrets_file_path()}"
    return None


def _secrets() -> dict[str, str] | None:
    path = secrets_file_path()
    return read_secrets_file(path) if path else None


def _sources(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, str]]:
    """(value, source) of every known setting: environment/credential/secrets file, table, default."""
    raw = read_raw(conn)
    secrets = _secrets()
    result: dict[str, tuple[str, str]] = {}
    for key, setting in SETTINGS.items():
        outside = _outside_value(setting, secrets)
        if outside:
            result[key] = outside
        elif key in raw:
            result[key] = (raw[key], "table")
        else:
            result[key] = (setting.default, "default")
    return result


def _fix(key: str, source: str) -> str:
    if source == "table":
        return f"fix it with kivi-otrs config set {key} VALUE"
    if source.startswith("env "):
        return f"fix the environment variable {source[4:]}"
    return f"fix the {source}"


def effective(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Parsed values: environment/credential/secrets file, else table row, else default."""
    result: dict[str, Any] = {}
    for key, (value, source) in _sources(conn).items():
        try:
            result[key] = SETTINGS[key].parse(value)
        except ValueError as exc:
            where = "stored in kivi_otrs.settings" if source == "table" else f"from {source}"
            raise ConfigError(f"setting {key} ({where}) is invalid: {exc}; {_fix(key, source)}") from None
    return result


def show(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """(key, printable value, source) for every known setting; secrets masked, invalid values marked."""
    rows = []
    for key, (value, source) in _sources(conn).items():
        setting = SETTINGS[key]
        try:
            setting.parse(value)
        except ValueError as exc:
            source += f"; INVALID: {exc}"
        if setting.secret:
            value = MASK if value else "(not set)"
            if source == "table":
                source = "table; plain text in every pg_dump, move it out: kivi-otrs config set --help"
        rows.append((key, value, source))
    return rows


def parse_value(key: str, value: str) -> Any:
    """Validate one value for a key; a one-line :class:`ConfigError` naming key and allowed range."""
    setting = _known(key)
    try:
        return setting.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def refuse_secret_in_database(key: str) -> None:
    """``config set`` of a secret without ``--store-in-database``: say where secrets belong."""
    setting = _known(key)
    if setting.secret:
        raise ConfigError(
            f"{key} is a secret and is not stored in the database by default (every pg_dump would carry it): "
            f"set {setting.env}, a systemd credential {key}, or '{key} = ...' in a secrets file of mode 0600 "
            f"(--secrets-file / {SECRETS_FILE_ENV}); to store it anyway add --store-in-database"
        )


def set_value(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    """Validate and store one setting (upsert). The CLI refuses secrets unless asked to store them."""
    parse_value(key, value)
    try:
        conn.execute(
            "INSERT INTO kivi_otrs.settings (key, value) VALUES (%(key)s, %(value)s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, mtime = now()",
            {"key": key, "value": value},
        )
    except psycopg.errors.UndefinedTable:
        raise ConfigError(NOT_INSTALLED) from None


def unset_value(conn: psycopg.Connection[Any], key: str) -> bool:
    """Remove a stored setting (back to the default or the environment); True when a row was removed."""
    _known(key)
    try:
        cur = conn.execute("DELETE FROM kivi_otrs.settings WHERE key = %(key)s", {"key": key})
    except psycopg.errors.UndefinedTable:
        raise ConfigError(NOT_INSTALLED) from None
    return cur.rowcount > 0


def stored_secrets(conn: psycopg.Connection[Any]) -> list[str]:
    """Secret keys with a non-empty value in ``kivi_otrs.settings`` (for doctor)."""
    raw = read_raw(conn)
    return [key for key in SECRET_KEYS if raw.get(key)]


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
    parallel_requests: int = 4
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
        parallel_requests=values["otrs.parallel_requests"],
        states=values["billing.states"],
        timezone=values["site.timezone"],
        period=values["billing.period"],
        otrs_timezone=values["otrs.timezone"],
        exclude_field=values["writeback.field"] if values["writeback.enabled"] and values["writeback.exclude_billed"] else None,
    )
