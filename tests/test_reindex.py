"""kivi-otrs reindex: fresh search indexes without blocking kivitendo or OTRS, and doctor saying when."""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
import pytest
from conftest import flag_config_id

from kivi_otrs import doctor, migrate
from kivi_otrs.cli import main
from kivi_otrs.errors import MigrationError

USERS = "kivi_otrs.otrs_customer_contacts"
GIN_FILES = """
SELECT c.relname, c.relfilenode FROM pg_class c JOIN pg_am am ON am.oid = c.relam
WHERE c.relnamespace = 'kivi_otrs'::regnamespace AND am.amname = 'gin' ORDER BY 1
"""
INVALID = "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
SEARCH = f"SELECT login FROM {USERS} WHERE LOWER(search_text) LIKE LOWER('%%Bulk%%') AND cp_valid_id IN (1) LIMIT 250"


def gin_files(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute(GIN_FILES).fetchall())


def add_contacts(conn: psycopg.Connection[Any], n: int) -> None:
    """n flagged contacts with e-mails at the fixture's customers (set-based, as an import leaves them)."""
    conn.execute("INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email) "
                 "SELECT 600000 + i, 'Bulk', 'Kontakt ' || i, 'bulk' || i || '@example.org' FROM generate_series(1, %s) i",
                 (n,))
    conn.execute("INSERT INTO public.customer_contacts (customer_id, contact_id) "
                 "SELECT 9001 + i %% 3, 600000 + i FROM generate_series(1, %s) i", (n,))
    conn.execute("INSERT INTO public.custom_variables (config_id, trans_id, bool_value, sub_module) "
                 "SELECT %s, 600000 + i, true, '' FROM generate_series(1, %s) i", (flag_config_id(conn), n))


def test_reindex_rebuilds_every_search_index_while_otrs_reads(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """Every trigram index gets a new file; OTRS (autocommit, as Znuny's DBI) searches while it runs; no
    half-built index stays; searches answer the same."""
    before = gin_files(conn)
    assert {"customer_user_valid_search_trgm_idx", "customer_company_valid_search_trgm_idx"} <= set(before)
    found = conn.execute(SEARCH).fetchall()
    answers: list[list[Any]] = []
    with psycopg.connect(migrated_dsn, autocommit=True) as otrs:
        stop = threading.Event()

        def search() -> None:
            while not stop.is_set():
                answers.append(otrs.execute(SEARCH).fetchall())

        reader = threading.Thread(target=search)
        reader.start()
        try:
            rebuilt = migrate.reindex(migrated_dsn, wait="20s")
        finally:
            stop.set()
            reader.join()
    assert answers and all(a == found for a in answers)
    assert sorted(rebuilt) == sorted(before)
    after = gin_files(conn)
    assert all(after[name] != before[name] for name in before), (before, after)
    assert conn.execute(INVALID).fetchall() == []
    assert conn.execute(SEARCH).fetchall() == found


def test_reindex_gives_up_on_a_long_transaction_in_one_line(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                             caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction holding an older snapshot makes REINDEX CONCURRENTLY wait: after --wait it stops with one
    line saying to run it later, and leaves no half-built index; migrate in the same situation completes the
    backend and says the indexes were not rebuilt."""
    before = gin_files(conn)
    with psycopg.connect(migrated_dsn) as report:  # as pg_dump reads: one snapshot over both tables
        report.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        report.execute(f"SELECT count(*) FROM {USERS}").fetchone()
        report.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_companies").fetchone()
        with pytest.raises(MigrationError) as gave_up:
            migrate.reindex(migrated_dsn, wait="1s")
        message = str(gave_up.value)
        assert len(message.splitlines()) == 1 and "run kivi-otrs reindex again later" in message
        left = [r[0] for r in conn.execute(INVALID).fetchall()]  # what the old snapshot still holds stays...
        named = [f.examples for f in doctor.diagnose(migrated_dsn) if f.check == "search-index"]
        assert named == ([[f"kivi_otrs.{n}" for n in left]] if left else []), (left, named)  # ...and is named
        monkeypatch.setattr(migrate, "AFTER_BUILD_WAIT", "1s")  # 10 s in use
        with caplog.at_level(logging.WARNING, logger="kivi_otrs.migrate"):
            migrate.refresh(migrated_dsn)  # bounded too: finishes and says so
        assert "search indexes were not rebuilt" in caplog.text
        report.rollback()
    assert migrate.reindex(migrated_dsn) == sorted(before)  # drops what the old snapshot held, then rebuilds
    assert conn.execute(INVALID).fetchall() == []
    assert set(gin_files(conn)) == set(before)


def test_doctor_says_when_search_indexes_have_grown_and_reindex_clears_it(conn: psycopg.Connection[Any],
                                                                          migrated_dsn: str,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Mass changes of the flag grow the valid users' trigram index row by row; doctor names it against the
    size recorded when it was built, and kivi-otrs reindex clears the finding."""
    monkeypatch.setattr(migrate, "INDEX_SIZE_MIN_BYTES", 0)  # judged from 16 MB on; this test's index is small
    add_contacts(conn, 3000)
    main(["reindex", "--dsn", migrated_dsn])
    assert "Rebuilt" in capsys.readouterr().out
    assert not [f for f in doctor.diagnose(migrated_dsn) if f.check == "search-index"]
    for _ in range(3):  # a mass untick and tick, as an admin fixing the flag in bulk does
        conn.execute("UPDATE public.custom_variables SET bool_value = NOT bool_value WHERE trans_id > 600000")
        conn.execute("UPDATE public.custom_variables SET bool_value = NOT bool_value WHERE trans_id > 600000")
    conn.execute("VACUUM kivi_otrs.customer_user")
    findings = [f for f in doctor.diagnose(migrated_dsn) if f.check == "search-index"]
    assert len(findings) == 1 and findings[0].fix.startswith("run kivi-otrs reindex"), findings
    assert any("customer_user_valid_search_trgm_idx" in e for e in findings[0].examples), findings[0].examples
    migrate.reindex(migrated_dsn)
    assert not [f for f in doctor.diagnose(migrated_dsn) if f.check == "search-index"]
    assert len(conn.execute(SEARCH).fetchall()) == 250


def test_a_bad_wait_is_one_line_and_changes_nothing(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = gin_files(conn)
    with pytest.raises(SystemExit) as exited:
        main(["reindex", "--dsn", migrated_dsn, "--wait", "soon"])
    err = capsys.readouterr().err.strip()
    assert exited.value.code != 0 and len(err.splitlines()) == 1 and "lock_timeout" in err, err
    assert gin_files(conn) == before


def test_doctor_names_a_half_built_index_and_reindex_drops_it(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """What an interrupted REINDEX CONCURRENTLY leaves (an invalid *_ccnew index, still written to) is named by
    doctor and dropped by the next reindex."""
    add_contacts(conn, 10)
    with pytest.raises(psycopg.errors.UniqueViolation):  # fails after creating the index entry: left invalid
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY customer_user_valid_search_trgm_idx_ccnew "
                     "ON kivi_otrs.customer_user (cp_valid_id)")
    assert conn.execute(INVALID).fetchall() == [("customer_user_valid_search_trgm_idx_ccnew",)]
    findings = [f for f in doctor.diagnose(migrated_dsn) if f.check == "search-index"]
    assert [f.examples for f in findings] == [["kivi_otrs.customer_user_valid_search_trgm_idx_ccnew"]], findings
    migrate.reindex(migrated_dsn)
    assert conn.execute(INVALID).fetchall() == []
    assert not [f for f in doctor.diagnose(migrated_dsn) if f.check == "search-index"]

