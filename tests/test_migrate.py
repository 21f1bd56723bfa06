"""Installing, re-running, removing and locking the kivi-otrs installation."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from kivi_otrs import migrate
from kivi_otrs.errors import DatabaseError, LockedError, MigrationError
from kivi_otrs.sandbox import find_pg_bin


def schema_dump(dsn: str) -> str:
    """pg_dump --schema-only without the random \\restrict key lines."""
    out = subprocess.run([str(find_pg_bin() / "pg_dump"), "--schema-only", "--no-owner", dsn],
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def data_counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM public.contacts), (SELECT count(*) FROM public.customer),"
            " (SELECT count(*) FROM public.custom_variable_configs), (SELECT count(*) FROM public.custom_variables)"
        ).fetchone()
        assert row is not None
        return tuple(row)


def test_rollback_leaves_the_schema_dump_identical(kivi_dsn: str) -> None:
    """install -> use -> rollback: pg_dump --schema-only equals the one before install."""
    before, counts = schema_dump(kivi_dsn), data_counts(kivi_dsn)
    migrate.migrate(kivi_dsn, migrate.InstallOptions(reader_role="kivi_otrs_rollback_test"))
    with psycopg.connect(kivi_dsn) as conn:
        cfg = conn.execute("SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id'").fetchone()
        conn.execute("INSERT INTO public.custom_variables (config_id, trans_id, bool_value) VALUES (%s, 9101, true)",
                     (cfg[0],))  # type: ignore[index]
    assert schema_dump(kivi_dsn) != before
    assert migrate.rollback(kivi_dsn) == list(reversed(migrate.available_ids()))
    assert schema_dump(kivi_dsn) == before
    assert data_counts(kivi_dsn) == counts
    with psycopg.connect(kivi_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'kivi_otrs_rollback_test'").fetchone() is None


def test_migrate_twice_is_a_no_op(migrated_dsn: str) -> None:
    """A second migrate applies nothing and keeps settings and data."""
    with psycopg.connect(migrated_dsn) as conn:
        conn.execute("INSERT INTO kivi_otrs.settings (key, value) VALUES ('otrs.user', 'agent')")
    before = schema_dump(migrated_dsn)
    assert migrate.migrate(migrated_dsn) == []
    assert schema_dump(migrated_dsn) == before
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT value FROM kivi_otrs.settings WHERE key = 'otrs.user'").fetchone() == ("agent",)
        assert conn.execute("SELECT count(*) FROM public.custom_variable_configs "
                            "WHERE name = 'otrs_may_report_tickets'").fetchone() == (1,)


def test_rollback_keeps_an_adopted_flag_and_role(kivi_dsn: str) -> None:
    """A flag custom variable and role that existed before install survive rollback with their values."""
    with psycopg.connect(kivi_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS kivi_pre_role")
        conn.execute("CREATE ROLE kivi_pre_role NOLOGIN")
        conn.execute(
            "INSERT INTO public.custom_variable_configs (id, name, description, type, module, default_value, searchable,"
            " includeable, included_by_default, sortkey) VALUES (77, 'otrs_may_report_tickets', 'Tickets', 'bool',"
            " 'Contacts', '0', true, true, false, 1)")
        conn.execute("INSERT INTO public.custom_variables (config_id, trans_id, bool_value) VALUES (77, 9102, true)")
    migrate.migrate(kivi_dsn, migrate.InstallOptions(reader_role="kivi_pre_role"))
    with psycopg.connect(kivi_dsn) as conn:
        assert conn.execute("SELECT cp_valid_id FROM kivi_otrs.otrs_customer_contacts "
                            "WHERE login = 'bernd.schulz@example.org'").fetchone() == (1,)
    migrate.rollback(kivi_dsn)
    with psycopg.connect(kivi_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM public.custom_variables WHERE config_id = 77").fetchone() == (1,)
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'kivi_pre_role'").fetchone() == (1,)
        conn.execute("DROP ROLE kivi_pre_role")


def test_a_login_role_is_refused_as_reader_role(kivi_dsn: str) -> None:
    """Using a role that can log in as the read role fails cleanly and installs nothing."""
    with psycopg.connect(kivi_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS kivi_login_role")
        conn.execute("CREATE ROLE kivi_login_role LOGIN")
    try:
        with pytest.raises(MigrationError, match="can log in"):
            migrate.migrate(kivi_dsn, migrate.InstallOptions(reader_role="kivi_login_role"))
        assert migrate.applied_ids(kivi_dsn) == []
    finally:
        with psycopg.connect(kivi_dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE kivi_login_role")


def test_invalid_role_name_is_rejected(kivi_dsn: str) -> None:
    """Role names are validated before anything touches the database."""
    with pytest.raises(MigrationError, match="invalid role name"):
        migrate.migrate(kivi_dsn, migrate.InstallOptions(reader_role='x"; DROP TABLE customer; --'))


def test_reader_role_reads_the_views_and_nothing_in_public(migrated_dsn: str) -> None:
    """The OTRS role sees both views, but neither kivitendo tables nor our tables nor functions."""
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE kivi_otrs_reader")
        assert conn.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_contacts").fetchone()[0] > 0  # type: ignore[index]
        assert conn.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_companies").fetchone()[0] > 0  # type: ignore[index]
        for forbidden in ("public.contacts", "public.customer", "kivi_otrs.customer_user", "kivi_otrs.settings"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {forbidden} LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT kivi_otrs.refresh_all()")
        role = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'kivi_otrs_reader'").fetchone()
        assert role == (False,)


def test_kivitendo_user_without_rights_on_our_schema_can_still_edit_contacts(migrated_dsn: str) -> None:
    """kivitendo's own database user keeps working: the sync triggers run with the installer's rights."""
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS kivi_app")
        conn.execute("CREATE ROLE kivi_app NOLOGIN")
        conn.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO kivi_app")
        conn.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO kivi_app")
        try:
            conn.execute("SET ROLE kivi_app")
            conn.execute("UPDATE public.contacts SET cp_email = 'b.schulz@example.org' WHERE cp_id = 9102")
            conn.execute("RESET ROLE")
            assert conn.execute("SELECT 1 FROM kivi_otrs.otrs_customer_contacts "
                                "WHERE login = 'b.schulz@example.org'").fetchone() == (1,)
            assert conn.execute("SELECT stale FROM kivi_otrs.sync_state").fetchone() == (False,)
        finally:
            conn.execute("RESET ROLE")
            conn.execute("DROP OWNED BY kivi_app")
            conn.execute("DROP ROLE kivi_app")


def test_concurrent_migrations_are_locked_out(kivi_dsn: str) -> None:
    """While one migrate holds the lock, a second one fails at once with a clear message."""
    holder_ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with migrate.install_lock(kivi_dsn):
            holder_ready.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holder_ready.wait(30)
        with pytest.raises(LockedError, match="another kivi-otrs migrate/rollback is running"):
            migrate.migrate(kivi_dsn)
    finally:
        release.set()
        thread.join()
    assert migrate.migrate(kivi_dsn) == migrate.available_ids()


def test_two_simultaneous_migrate_runs_install_once(kivi_dsn: str) -> None:
    """Two real migrate calls at once: one installs, the other is locked out or finds nothing to do."""
    results: list[object] = []

    def run() -> None:
        try:
            results.append(migrate.migrate(kivi_dsn))
        except LockedError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert migrate.available_ids() in results
    assert migrate.applied_ids(kivi_dsn) == migrate.available_ids()


def test_wrong_password_gives_one_line_error_without_the_password(kivi_dsn: str) -> None:
    """A failing connection names the problem, not the secret."""
    params = conninfo.conninfo_to_dict(kivi_dsn)
    params["password"] = "Very-Secret-42"
    bad = conninfo.make_conninfo(**params)
    with pytest.raises(DatabaseError) as info:
        migrate.migrate(bad)
    message = str(info.value)
    assert "Very-Secret-42" not in message and "\n" not in message
    assert "password authentication failed" in message


def test_wheel_ships_migrations_sql_and_templates(tmp_path: Path) -> None:
    """The built wheel contains everything migrate needs, not only the git checkout."""
    import zipfile

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("kivi_otrs-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kivi_otrs/migrations/0001.kivi_otrs-foundation.sql" in names
    assert "kivi_otrs/migrations/0001.kivi_otrs-foundation.rollback.sql" in names
    assert {p.name for p in (root / "sql").glob("*.sql")} <= {Path(n).name for n in names if n.startswith("kivi_otrs/sql/")}
    assert "kivi_otrs/demo/kivitendo-fixture.sql" in names
    assert "kivi_otrs/py.typed" in names
