"""Which kivitendo release a client database is at (its ``schema_info`` upgrade log).

kivitendo records every applied upgrade script in ``public.schema_info``; each release
adds a tag ``release_X_Y_Z``. kivi-otrs reads the 4.1 schema (contacts linked through
``customer_contacts``, ``customer.country_id``), so it refuses older databases before
changing anything, and ``doctor`` tells "not there yet" (older kivitendo) from "gone".
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from .errors import SchemaDriftError

MINIMUM = (4, 1, 0)
RELEASE_TAG = re.compile(r"release_(\d+)_(\d+)_(\d+)")
TAGS_SQL = """
SELECT tag FROM public.schema_info WHERE tag LIKE 'release\\_%%'
"""
HAS_SCHEMA_INFO_SQL = "SELECT to_regclass('public.schema_info') IS NOT NULL"


def release_of(conn: psycopg.Connection[Any]) -> tuple[int, int, int] | None:
    """The newest kivitendo release whose upgrades are applied, or None for a database without schema_info."""
    row = conn.execute(HAS_SCHEMA_INFO_SQL).fetchone()
    if not row or not row[0]:
        return None
    versions = []
    for (tag,) in conn.execute(TAGS_SQL).fetchall():
        match = RELEASE_TAG.fullmatch(str(tag))
        if match:
            versions.append((int(match[1]), int(match[2]), int(match[3])))
    return max(versions) if versions else (0, 0, 0)


def label(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version)) if version != (0, 0, 0) else "older than any tagged release"


def require_supported(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """Refuse (one line, nothing changed) a database that is not a kivitendo 4.1+ client database."""
    version = release_of(conn)
    if version is None:
        raise SchemaDriftError("this is not a kivitendo client database (no public.schema_info); "
                               "check the DSN's database name")
    if version < MINIMUM:
        raise SchemaDriftError(
            f"the kivitendo database is at release {label(version)}; kivi-otrs needs kivitendo "
            f"{label(MINIMUM)} or newer: upgrade kivitendo and log in once (it upgrades the database), "
            "then run kivi-otrs migrate")
    return version
