"""What keeps the customer backend fast at kivitendo scale (migration 0006), checked for correctness."""

from __future__ import annotations

from typing import Any

import psycopg
from conftest import set_flag

USERS = "kivi_otrs.otrs_customer_contacts"
COMPANIES = "kivi_otrs.otrs_customer_companies"
FRESH_USERS_DIFF = (
    "SELECT count(*) FROM ((SELECT * FROM kivi_otrs.customer_user EXCEPT SELECT * FROM kivi_otrs.customer_user_rows(NULL))"
    " UNION ALL (SELECT * FROM kivi_otrs.customer_user_rows(NULL) EXCEPT SELECT * FROM kivi_otrs.customer_user)) d"
)
FRESH_COMPANIES_DIFF = (
    "SELECT count(*) FROM ((SELECT * FROM kivi_otrs.customer_company EXCEPT SELECT * FROM kivi_otrs.customer_company_rows(NULL))"
    " UNION ALL (SELECT * FROM kivi_otrs.customer_company_rows(NULL) EXCEPT SELECT * FROM kivi_otrs.customer_company)) d"
)


def test_znuny_search_uses_the_trigram_index_of_valid_users(conn: psycopg.Connection[Any]) -> None:
    """Znuny's `cp_valid_id IN (1)` implies the partial index's predicate, so the valid-only index serves it."""
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            f"EXPLAIN SELECT login FROM {USERS} WHERE (LOWER(search_text) LIKE LOWER('%Meyer%')) "
            "AND (LOWER(search_text) LIKE LOWER('%anna%')) AND cp_valid_id IN (1) LIMIT 250"
        )
    )
    assert "customer_user_valid_search_trgm_idx" in plan, plan
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            f"EXPLAIN SELECT customer_id FROM {COMPANIES} WHERE (LOWER(search_text) LIKE LOWER('%Bäckerei%')) "
            "AND valid_id IN (1) LIMIT 250"
        )
    )
    assert "customer_company_valid_search_trgm_idx" in plan, plan


def test_saves_that_change_nothing_mirrored_keep_the_row_and_changes_update_it(conn: psycopg.Connection[Any]) -> None:
    """The mirror updates changed users in place, drops vanished logins and equals a fresh computation."""
    conn.execute("UPDATE public.contacts SET cp_phone1 = '+49 1' WHERE cp_id = 9101")
    conn.execute("UPDATE public.contacts SET cp_email = 'anders@example.org' WHERE cp_id = 9102")
    set_flag(conn, 9103, True)
    set_flag(conn, 9101, False)
    conn.execute("UPDATE public.contacts SET cp_email = NULL WHERE cp_id = 9104")
    assert conn.execute(FRESH_USERS_DIFF).fetchone() == (0,)
    phone = conn.execute(f"SELECT cp_phone1 FROM {USERS} WHERE login = 'anders@example.org'").fetchone()
    assert phone is not None


def test_customers_sharing_a_number_are_found_without_scanning_kivitendo(conn: psycopg.Connection[Any]) -> None:
    """Renumbering, padding, obsoleting and deleting customers that share a number keeps companies exact."""
    tz, cur = conn.execute("SELECT taxzone_id, currency_id FROM public.customer WHERE id = 9001").fetchone()  # type: ignore[misc]
    conn.execute(
        "INSERT INTO public.customer (id, name, customernumber, taxzone_id, currency_id, country_id) "
        "VALUES (9901, 'Zweitfirma', ' KIVI-1001 ', %s, %s, 1), (9902, 'Drittfirma', 'KIVI-9902', %s, %s, 1)",
        (tz, cur, tz, cur),
    )
    assert conn.execute(FRESH_COMPANIES_DIFF).fetchone() == (0,)
    conn.execute("UPDATE public.customer SET obsolete = true WHERE id = 9001")
    name = conn.execute(f"SELECT name FROM {COMPANIES} WHERE customer_id = 'KIVI-1001'").fetchone()
    assert name == ("Zweitfirma",)
    conn.execute("UPDATE public.customer SET customernumber = 'KIVI-1001' WHERE id = 9902")
    conn.execute("DELETE FROM public.customer WHERE id = 9901")
    assert conn.execute(f"SELECT name FROM {COMPANIES} WHERE customer_id = 'KIVI-1001'").fetchone() == ("Drittfirma",)
    assert conn.execute(f"SELECT 1 FROM {COMPANIES} WHERE customer_id = 'KIVI-9902'").fetchone() is None
    assert conn.execute(FRESH_COMPANIES_DIFF).fetchone() == (0,)
    assert conn.execute(FRESH_USERS_DIFF).fetchone() == (0,)
