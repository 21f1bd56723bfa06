"""A real PostgreSQL for every database test (house style 12).

Order of preference: ``$KIVI_OTRS_TEST_DSN`` (a superuser DSN of a server the
suite may create databases on), a testcontainers PostgreSQL 15 when Docker
answers, else a throwaway cluster from the local PostgreSQL binaries.
Each test gets its own database cloned from a template with kivitendo + demo data.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from kivi_otrs import migrate
from kivi_otrs.config import OtrsSettings
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.otrs_double import OtrsDouble
from kivi_otrs.sandbox import LocalCluster

TEMPLATE = "kivi_otrs_template"
# kivi.KiviOtrs.position_fields (kivitendo/public/js/kivi.KiviOtrs.js): the fields of one position the
# button posts to kivitendo's add_multi_items after parts_id, in this order.
POSITION_FIELDS = (
    "qty_as_number",
    "description",
    "longdescription",
    "unit",
    "sellprice_as_number",
    "discount_as_percent",
    "recurring_billing_mode",
)
_counter = itertools.count()


def _docker_answers() -> bool:
    """True when a Docker engine answers /_ping on its socket (no engine on the CI machines)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: let testcontainers try it
    path = host[len("unix://"):]
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return sock.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")
        except OSError:
            return False


def _with_db(dsn: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """Superuser DSN of the test server."""
    env = os.environ.get("KIVI_OTRS_TEST_DSN")
    if env:
        yield env
        return
    if os.environ.get("KIVI_OTRS_TEST_DOCKER", "auto") != "no" and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            yield container.get_connection_url()
        return
    with LocalCluster() as cluster:
        yield cluster.dsn("postgres")


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> str:
    """A database with the kivitendo schema and demo data, used as template."""
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    with psycopg.connect(_with_db(pg_admin_dsn, TEMPLATE)) as conn:
        load_kivitendo(conn)
    return TEMPLATE


def new_database(admin_dsn: str, template: str | None) -> str:
    name = f"kivi_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(query)
    return _with_db(admin_dsn, name)


def drop_database(admin_dsn: str, dsn: str) -> None:
    name = conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


@pytest.fixture
def kivi_dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A fresh kivitendo database with demo data, kivi-otrs not installed."""
    dsn = new_database(pg_admin_dsn, template_db)
    yield dsn
    drop_database(pg_admin_dsn, dsn)


@pytest.fixture
def migrated_dsn(kivi_dsn: str) -> str:
    """A fresh kivitendo database with kivi-otrs installed."""
    migrate.migrate(kivi_dsn)
    return kivi_dsn


@pytest.fixture
def conn(migrated_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a migrated database (each statement is a kivitendo action)."""
    with psycopg.connect(migrated_dsn, autocommit=True) as connection:
        yield connection


def flag_config_id(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute("SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id'").fetchone()
    assert row is not None
    return int(row[0])


def set_flag(connection: psycopg.Connection[Any], cp_id: int, value: bool | None) -> None:
    """What kivitendo's contact form does when the flag is saved."""
    cfg = flag_config_id(connection)
    connection.execute("DELETE FROM public.custom_variables WHERE config_id = %s AND trans_id = %s", (cfg, cp_id))
    if value is not None:
        connection.execute(
            "INSERT INTO public.custom_variables (config_id, trans_id, bool_value, sub_module) VALUES (%s, %s, %s, '')",
            (cfg, cp_id, value),
        )


@pytest.fixture
def otrs() -> Iterator[OtrsDouble]:
    """The OTRS stand-in on a free loopback port, without tickets."""
    with OtrsDouble() as double:
        yield double


def otrs_settings_for(double: OtrsDouble, **overrides: Any) -> OtrsSettings:
    values: dict[str, Any] = {"base_url": double.base_url, "webservice": double.webservice, "user": double.user,
                              "password": double.password, "connect_timeout": 2.0, "read_timeout": 5.0}
    values.update(overrides)
    return OtrsSettings(**values)
