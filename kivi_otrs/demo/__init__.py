"""Demo and test data: a kivitendo 4.1 fixture schema and awkward sample records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REAL_SCHEMA_ENV = "KIVI_OTRS_KIVITENDO_SCHEMA"


def _sql_without_psql_meta(text: str) -> str:
    """pg_dump output minus psql backslash commands (\\restrict ...)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("\\"))


def load_kivitendo(conn: psycopg.Connection[Any], with_demo_data: bool = True) -> str:
    """Create a kivitendo 4.1 client schema (and demo data) in an empty database.

    Uses the real 4.1.0 schema dump when ``$KIVI_OTRS_KIVITENDO_SCHEMA`` names one,
    else the fixture written for kivi-otrs. Returns which schema was loaded.
    """
    real = os.environ.get(REAL_SCHEMA_ENV)
    if real:
        conn.execute(_sql_without_psql_meta(Path(real).read_text(encoding="utf-8")).encode())
        conn.execute("SELECT pg_catalog.set_config('search_path', '\"$user\", public', false)")
        source = f"kivitendo 4.1.0 schema dump {real}"
    else:
        conn.execute((HERE / "kivitendo-fixture.sql").read_bytes())
        source = "kivi-otrs kivitendo 4.1 fixture"
    conn.execute((HERE / "kivitendo-base-data.sql").read_bytes())
    if with_demo_data:
        conn.execute((HERE / "kivitendo-demo-data.sql").read_bytes())
    return source
