"""Connections to the kivitendo database.

Every user action opens one connection and runs in one transaction
(``with connect(dsn) as conn, conn.transaction(): ...``). Connection errors are
mapped to :class:`DatabaseError` with the password removed from the message.
"""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
from psycopg import conninfo

from .errors import ConfigError, DatabaseError

DSN_ENV = "KIVI_OTRS_DSN"

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_IN_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove passwords from anything that may contain a DSN."""
    text = _PASSWORD_IN_URL.sub(r"\1***@", text)
    return _PASSWORD_IN_KV.sub(r"\1***", text)


def resolve_dsn(dsn: str | None) -> str:
    """The DSN given on the command line, else ``$KIVI_OTRS_DSN``."""
    dsn = dsn or os.environ.get(DSN_ENV)
    if not dsn:
        raise ConfigError(
            f"no database given: pass --dsn postgresql://user@host/kivitendo_db or set {DSN_ENV}"
        )
    try:
        conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"the DSN is malformed ({redact(str(exc))}); use postgresql://user@host:port/dbname") from None
    return dsn


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection; failures become one-line :class:`DatabaseError`."""
    params = conninfo.conninfo_to_dict(dsn)
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", "kivi-otrs")
    try:
        return psycopg.connect(conninfo.make_conninfo("", **params), **kwargs)
    except psycopg.OperationalError as exc:
        first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise DatabaseError(
            f"cannot connect to the kivitendo database: {first}; check --dsn / {DSN_ENV} and that PostgreSQL is running"
        ) from None


def describe(dsn: str) -> str:
    """A printable description of a DSN without the password."""
    params = conninfo.conninfo_to_dict(dsn)
    params.pop("password", None)
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    return f"{params.get('user', '')}@{host}:{port}/{params.get('dbname', '')}"
