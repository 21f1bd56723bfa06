"""kivitendo releases: older client databases are refused before anything changes, and doctor says why."""

from __future__ import annotations

import psycopg
import pytest

from kivi_otrs import doctor, kivitendo, migrate
from kivi_otrs.errors import SchemaDriftError


def make_release(dsn: str, tag: str, drop_links: bool = False) -> None:
    """Turn the fixture into a database whose newest applied kivitendo release is ``tag``."""
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM public.schema_info")
        conn.execute("INSERT INTO public.schema_info (tag, login) VALUES (%s, 'admin'), ('some_upgrade', 'admin')",
                     (tag,))
        if drop_links:
            conn.execute("DROP TABLE public.customer_contacts CASCADE")


@pytest.mark.parametrize(("tags", "expected"), [
    (["release_4_1_0"], (4, 1, 0)), (["release_3_9_2", "release_4_0_0"], (4, 0, 0)),
    (["release_4_1_0", "release_4_10_0", "release_4_2_1"], (4, 10, 0)), (["some_upgrade"], (0, 0, 0)),
])
def test_release_is_the_newest_release_tag(kivi_dsn: str, tags: list[str], expected: tuple[int, int, int]) -> None:
    """Tags are compared as numbers (4.10 is newer than 4.2), untagged upgrades do not count."""
    with psycopg.connect(kivi_dsn) as conn:
        conn.execute("DELETE FROM public.schema_info")
        for tag in tags:
            conn.execute("INSERT INTO public.schema_info (tag, login) VALUES (%s, 'admin')", (tag,))
        assert kivitendo.release_of(conn) == expected


def test_database_without_schema_info_is_not_a_kivitendo_client(kivi_dsn: str) -> None:
    """A DSN naming the wrong database gets one line saying so."""
    with psycopg.connect(kivi_dsn) as conn:
        conn.execute("DROP TABLE public.schema_info")
        with pytest.raises(SchemaDriftError, match="not a kivitendo client database"):
            kivitendo.require_supported(conn)


def test_migrate_refuses_kivitendo_4_0_and_changes_nothing(kivi_dsn: str) -> None:
    """On a 4.0 database migrate names the version needed and leaves no kivi-otrs object behind."""
    make_release(kivi_dsn, "release_4_0_0")
    with pytest.raises(SchemaDriftError, match=r"at release 4\.0\.0; kivi-otrs needs kivitendo 4\.1\.0 or newer"):
        migrate.migrate(kivi_dsn)
    with psycopg.connect(kivi_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'kivi_otrs'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM public.custom_variable_configs WHERE name = 'otrs_may_report_tickets'"
                            ).fetchone() == (0,)


def test_doctor_says_not_there_yet_on_an_older_kivitendo(migrated_dsn: str) -> None:
    """A database set back to 4.0 (tables of 4.1 missing): 'not there yet' and 'run migrate', never 'gone'."""
    make_release(migrated_dsn, "release_4_0_0", drop_links=True)
    findings = doctor.diagnose(migrated_dsn)
    texts = [f.message for f in findings if f.check in ("schema-drift", "kivitendo-version")]
    assert any("at release 4.0.0" in t for t in texts)
    assert any("customer_contacts.contact_id is not there yet" in t for t in texts)
    assert not any("is gone" in t for t in texts)
