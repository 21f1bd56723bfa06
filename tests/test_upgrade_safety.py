"""kivitendo's own upgrades must never be blocked by kivi-otrs objects."""

from __future__ import annotations

import psycopg
import pytest

from kivi_otrs import doctor, migrate

# What kivitendo's upgrade scripts do: drop and retype columns we read, then touch rows,
# all in one transaction per script (like 4.1.0 dropping contacts.cp_cv_id).
UPGRADE_SCRIPT = [
    "ALTER TABLE public.contacts DROP COLUMN cp_position",
    "ALTER TABLE public.contacts ALTER COLUMN cp_gender TYPE text",
    "ALTER TABLE public.contacts ALTER COLUMN cp_email TYPE varchar(200)",
    "ALTER TABLE public.customer ALTER COLUMN customernumber TYPE varchar(64)",
    "ALTER TABLE public.customer DROP COLUMN gln",
    "ALTER TABLE public.customer_contacts ALTER COLUMN main DROP DEFAULT",
    "UPDATE public.contacts SET cp_title = coalesce(cp_title, '')",
    "UPDATE public.customer SET name = name || ''",
    "INSERT INTO public.schema_info (tag, login) VALUES ('release_9_9_0', 'admin')",
]


def run_upgrade(dsn: str) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        for statement in UPGRADE_SCRIPT:
            conn.execute(statement)


def test_seed_style_view_blocks_the_upgrade(kivi_dsn: str) -> None:
    """Control: a plain view over kivitendo columns (the seed prototype) makes the same upgrade fail."""
    with psycopg.connect(kivi_dsn) as conn:
        conn.execute("CREATE VIEW public.seed_view AS SELECT cp_position, cp_email FROM public.contacts")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        run_upgrade(kivi_dsn)


def test_upgrade_dropping_and_retyping_columns_succeeds_with_kivi_otrs_installed(migrated_dsn: str) -> None:
    """The upgrade commits; OTRS keeps reading the last good data; doctor names the drift."""
    with psycopg.connect(migrated_dsn) as conn:
        before = conn.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_contacts").fetchone()
    run_upgrade(migrated_dsn)
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT 1 FROM public.schema_info WHERE tag = 'release_9_9_0'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_contacts").fetchone() == before
        stale, error = conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone()  # type: ignore[misc]
    assert stale is True and "cp_position" in error
    findings = doctor.diagnose(migrated_dsn)
    messages = [f.message for f in findings if f.check == "schema-drift"]
    assert "kivitendo column public.contacts.cp_position is gone" in messages
    assert "kivitendo column public.customer.gln is gone" in messages
    assert any(f.check == "sync" and "stale" in f.message for f in findings)
    assert not any("cp_email" in m or "customernumber" in m for m in messages)  # varchar still works


def test_views_drop_and_install_around_an_upgrade(migrated_dsn: str) -> None:
    """views drop removes every object touching kivitendo tables; views install brings them back with fresh data."""
    migrate.drop_views(migrated_dsn)
    with psycopg.connect(migrated_dsn) as conn:
        triggers = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'kivi_otrs_%'").fetchone()
        views = conn.execute("SELECT count(*) FROM information_schema.views WHERE table_schema = 'kivi_otrs'").fetchone()
        assert triggers == (0,) and views == (0,)
        conn.execute("UPDATE public.contacts SET cp_email = 'während@example.org' WHERE cp_id = 9102")
        conn.commit()
    migrate.install_views(migrated_dsn)
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT 1 FROM kivi_otrs.otrs_customer_contacts "
                            "WHERE login = 'während@example.org'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'kivi_otrs_%'").fetchone() == (24,)


def test_refresh_after_compatible_retype_clears_stale(migrated_dsn: str) -> None:
    """A retype we can still read: refresh rebuilds and doctor is clean of errors again."""
    with psycopg.connect(migrated_dsn) as conn, conn.transaction():
        conn.execute("ALTER TABLE public.contacts ALTER COLUMN cp_email TYPE varchar(200)")
        conn.execute("UPDATE kivi_otrs.sync_state SET stale = true, last_error = 'simulated', last_error_at = now()")
    migrate.refresh(migrated_dsn)
    errors = [f for f in doctor.diagnose(migrated_dsn) if f.severity == "error" and f.check in ("sync", "schema-drift")]
    assert errors == []

