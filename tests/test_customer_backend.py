"""The OTRS customer backend views, queried with the SQL OTRS itself issues."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from conftest import flag_config_id, set_flag

from kivi_otrs import doctor, otrs_config

USERS = "kivi_otrs.otrs_customer_contacts"
COMPANIES = "kivi_otrs.otrs_customer_companies"


def user(conn: psycopg.Connection[Any], login: str) -> dict[str, Any] | None:
    """CustomerUserDataGet: OTRS's login lookup."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute(f"SELECT * FROM {USERS} WHERE LOWER(login) = LOWER(%s) LIMIT 1", (login,)).fetchone()


def search(conn: psycopg.Connection[Any], *words: str, valid_only: bool = True) -> list[str]:
    """CustomerSearch: every word must match (QueryCondition), LOWER(...) LIKE LOWER('%word%')."""
    where = " AND ".join("(LOWER(search_text) LIKE LOWER(%s))" for _ in words)
    if valid_only:
        where += " AND cp_valid_id IN (1)"
    rows = conn.execute(f"SELECT login FROM {USERS} WHERE {where} LIMIT 250", [f"%{w}%" for w in words]).fetchall()
    return sorted(r[0] for r in rows)


def test_only_contacts_allowed_to_report_are_valid(conn: psycopg.Connection[Any]) -> None:
    """Without the flag (default no) a contact is listed but invalid; setting it in kivitendo makes it valid."""
    assert user(conn, "anna.meyer@example.org")["cp_valid_id"] == 2  # type: ignore[index]
    set_flag(conn, 9101, True)
    assert user(conn, "anna.meyer@example.org")["cp_valid_id"] == 1  # type: ignore[index]
    set_flag(conn, 9101, False)
    assert user(conn, "anna.meyer@example.org")["cp_valid_id"] == 2  # type: ignore[index]


def test_contacts_without_value_row_follow_the_flag_default(conn: psycopg.Connection[Any]) -> None:
    """Changing the custom variable's default in kivitendo applies to contacts never saved since."""
    conn.execute("UPDATE public.custom_variable_configs SET default_value = '1' WHERE id = %s", (flag_config_id(conn),))
    assert user(conn, "bernd.schulz@example.org")["cp_valid_id"] == 1  # type: ignore[index]
    set_flag(conn, 9102, False)
    assert user(conn, "bernd.schulz@example.org")["cp_valid_id"] == 2  # type: ignore[index]


def test_flag_default_chosen_at_install(kivi_dsn: str) -> None:
    """migrate --flag-default creates the custom variable with default '1' and every contact may report."""
    from kivi_otrs import migrate

    migrate.migrate(kivi_dsn, migrate.InstallOptions(flag_default=True))
    with psycopg.connect(kivi_dsn) as c:
        cfg = c.execute(
            "SELECT type, module, default_value FROM public.custom_variable_configs WHERE name = 'otrs_may_report_tickets'"
        ).fetchone()
        assert cfg == ("bool", "Contacts", "1")
        assert user(c, "bernd.schulz@example.org")["cp_valid_id"] == 1  # type: ignore[index]


def test_login_lookup_is_case_insensitive_and_trimmed(conn: psycopg.Connection[Any]) -> None:
    """' Zoe.Astrom@Example.org ' in kivitendo is login zoe.astrom@example.org, found in any case."""
    row = user(conn, "ZOE.ASTROM@EXAMPLE.ORG")
    assert row is not None
    assert row["login"] == "zoe.astrom@example.org"
    assert row["cp_email"] == "Zoe.Astrom@Example.org"
    assert row["cp_givenname"] == "Zoë" and row["cp_name"] == "Åström"


def test_logins_are_unique_even_case_insensitively(conn: psycopg.Connection[Any]) -> None:
    """anna.meyer@ and ANNA.MEYER@ (two contacts, two customers) become one login."""
    dupes = conn.execute(f"SELECT LOWER(login), count(*) FROM {USERS} GROUP BY 1 HAVING count(*) > 1").fetchall()
    assert dupes == []
    row = user(conn, "anna.meyer@example.org")
    assert row is not None and row["customernumber"] == "KIVI-1001"  # the main contact wins


def test_shared_email_lists_every_eligible_customer(conn: psycopg.Connection[Any]) -> None:
    """The second contact with the same address adds its customer to UserCustomerIDs once eligible."""
    set_flag(conn, 9101, True)
    set_flag(conn, 9107, True)
    row = user(conn, "anna.meyer@example.org")
    assert row is not None
    assert row["customernumber"] == "KIVI-1001"
    assert row["customer_ids"] == "KIVI-1001;KIVI-1002"


def test_contact_at_two_customers_gets_both_customer_ids(conn: psycopg.Connection[Any]) -> None:
    """Jürgen works for two customers: primary is his main link, both are listed."""
    set_flag(conn, 9103, True)
    row = user(conn, "juergen.groesser@example.org")
    assert row is not None
    assert row["customernumber"] == "1000387"
    assert row["customer_ids"] == "1000387;KIVI-1001"


def test_obsolete_customer_makes_contact_invalid(conn: psycopg.Connection[Any]) -> None:
    """A contact of an obsolete customer cannot report, even with the flag; un-obsoleting fixes it live."""
    set_flag(conn, 9108, True)
    assert user(conn, "otto@alte-firma.example")["cp_valid_id"] == 2  # type: ignore[index]
    conn.execute("UPDATE public.customer SET obsolete = false WHERE id = 9004")
    assert user(conn, "otto@alte-firma.example")["cp_valid_id"] == 1  # type: ignore[index]


def test_malformed_emails_and_contacts_without_customer_are_left_out(conn: psycopg.Connection[Any]) -> None:
    """hans.kaputt(at)example.org and Olga without customer never become OTRS logins."""
    logins = {r[0] for r in conn.execute(f"SELECT login FROM {USERS}")}
    assert "olga@example.org" not in logins
    assert not any("kaputt" in login for login in logins)


def test_no_password_column_is_offered(conn: psycopg.Connection[Any]) -> None:
    """Unlike the seed view there is no constant password: OTRS customer login is impossible."""
    cols = {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'kivi_otrs' "
        "AND table_name = 'otrs_customer_contacts'")}
    assert not any("pass" in c or c == "pw" for c in cols)


def test_search_matches_words_across_fields_with_umlauts(conn: psycopg.Connection[Any]) -> None:
    """'Größer' and 'müller & söhne' are found in any case, several words must all match."""
    for cp_id in (9101, 9103):
        set_flag(conn, cp_id, True)
    assert search(conn, "GRÖSSER") == []  # no umlaut folding: ß is not ss
    assert search(conn, "Größer") == ["juergen.groesser@example.org"]
    assert search(conn, "MÜLLER & SÖHNE") == ["anna.meyer@example.org"]
    assert search(conn, "anna", "kivi-1001") == ["anna.meyer@example.org"]
    assert search(conn, "anna", "1000387") == []


def test_search_hides_invalid_users_only_when_asked(conn: psycopg.Connection[Any]) -> None:
    """OTRS lists invalid users only without the valid filter."""
    assert search(conn, "bernd") == []
    assert search(conn, "bernd", valid_only=False) == ["bernd.schulz@example.org"]


def test_incoming_mail_lookup_by_email(conn: psycopg.Connection[Any]) -> None:
    """PostMaster search: LOWER(email) = LOWER(?) finds the one login."""
    rows = conn.execute(f"SELECT login FROM {USERS} WHERE LOWER(cp_email) = LOWER(%s)",
                        ("bernd.schulz@EXAMPLE.org",)).fetchall()
    assert rows == [("bernd.schulz@example.org",)]


def test_customer_id_list(conn: psycopg.Connection[Any]) -> None:
    """SELECT DISTINCT(customer_id) ... valid IN (1) lists customers with a reporting contact."""
    set_flag(conn, 9102, True)
    set_flag(conn, 9109, True)
    rows = conn.execute(f"SELECT DISTINCT(customernumber) FROM {USERS} WHERE cp_valid_id IN (1)").fetchall()
    assert sorted(r[0] for r in rows) == ["KD 4711", "KIVI-1002"]


def test_companies_view(conn: psycopg.Connection[Any]) -> None:
    """Customers become companies by customer number; obsolete ones are invalid; search works."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    rows = {r["customer_id"]: r for r in cur.execute(f"SELECT * FROM {COMPANIES}")}
    assert set(rows) == {"KIVI-1001", "KIVI-1002", "1000387", "KIVI-0999", "KD 4711"}
    assert rows["KIVI-0999"]["valid_id"] == 2
    assert rows["KIVI-1001"]["name"] == "Müller & Söhne GmbH"
    assert rows["KIVI-1001"]["country"] == "Germany"
    hits = conn.execute(f"SELECT customer_id FROM {COMPANIES} WHERE LOWER(search_text) LIKE LOWER(%s)",
                        ("%bäckerei%",)).fetchall()
    assert hits == [("KIVI-1002",)]


def test_changes_in_kivitendo_reach_the_views_live(conn: psycopg.Connection[Any]) -> None:
    """New contact, new link, changed e-mail, renamed customer and deletion show up without refresh."""
    conn.execute("INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email) "
                 "VALUES (9200, 'Neu', 'Kontakt', 'neu@example.org')")
    assert user(conn, "neu@example.org") is None  # no customer yet
    conn.execute("INSERT INTO public.customer_contacts (customer_id, contact_id) VALUES (9002, 9200)")
    assert user(conn, "neu@example.org")["customernumber"] == "KIVI-1002"  # type: ignore[index]
    conn.execute("UPDATE public.contacts SET cp_email = 'neu2@example.org' WHERE cp_id = 9200")
    assert user(conn, "neu@example.org") is None
    assert user(conn, "neu2@example.org") is not None
    conn.execute("UPDATE public.customer SET name = 'Bäckerei Schulz & Co. KG' WHERE id = 9002")
    assert user(conn, "neu2@example.org")["name"] == "Bäckerei Schulz & Co. KG"  # type: ignore[index]
    conn.execute("UPDATE public.customer SET customernumber = 'KIVI-2002' WHERE id = 9002")
    companies = {r[0] for r in conn.execute(f"SELECT customer_id FROM {COMPANIES}")}
    assert "KIVI-2002" in companies and "KIVI-1002" not in companies
    assert user(conn, "neu2@example.org")["customernumber"] == "KIVI-2002"  # type: ignore[index]
    conn.execute("DELETE FROM public.contacts WHERE cp_id = 9200")
    assert user(conn, "neu2@example.org") is None
    conn.execute("DELETE FROM public.customer WHERE id = 9002")
    assert user(conn, "bernd.schulz@example.org") is None
    assert "KIVI-2002" not in {r[0] for r in conn.execute(f"SELECT customer_id FROM {COMPANIES}")}


def test_mirror_equals_fresh_computation_after_many_changes(conn: psycopg.Connection[Any]) -> None:
    """After a burst of kivitendo edits the live mirror equals a from-scratch computation."""
    conn.execute("UPDATE public.contacts SET cp_email = upper(cp_email) WHERE cp_id IN (9101, 9102)")
    conn.execute("UPDATE public.customer_contacts SET main = false WHERE contact_id = 9103 AND customer_id = 9003")
    conn.execute("UPDATE public.customer SET obsolete = true WHERE id = 9003")
    for cp_id in (9101, 9103, 9104, 9107):
        set_flag(conn, cp_id, True)
    conn.execute("UPDATE public.countries SET description_en = 'Deutschland (DE)' WHERE iso2 = 'DE'")
    diff = conn.execute(doctor.MIRROR_DIFF_SQL).fetchone()
    assert diff == (0,)
    assert user(conn, "anna.meyer@example.org")["country"] == "Deutschland (DE)"  # type: ignore[index]


def test_rolled_back_kivitendo_change_leaves_views_unchanged(conn: psycopg.Connection[Any]) -> None:
    """The mirror is written in kivitendo's transaction: a rollback undoes both."""
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute("UPDATE public.contacts SET cp_email = 'weg@example.org' WHERE cp_id = 9102")
        conn.execute("SELECT 1/0")
    assert user(conn, "bernd.schulz@example.org") is not None
    assert user(conn, "weg@example.org") is None


def test_generated_otrs_config_names_only_existing_view_columns(conn: psycopg.Connection[Any]) -> None:
    """Every column in the Config.pm blocks exists in the installed views, and the SQL OTRS builds from it runs."""
    for view, columns in otrs_config.referenced_columns().items():
        schema, name = view.split(".")
        existing = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (schema, name))}
        assert columns <= existing, columns - existing
        conn.execute(f"SELECT {', '.join(sorted(columns))} FROM {view} LIMIT 1")
    text = otrs_config.render("postgresql://u:secret@db.example:5433/firma", "otrs_kivi", "kivi_otrs_reader")
    assert "DBI:Pg:dbname=firma;host=db.example;port=5433" in text
    assert "secret" not in text
    assert "Table               => 'kivi_otrs.otrs_customer_contacts'" in text
    assert "CustomerKey => 'login'" in text and "CustomerValid => 'cp_valid_id'" in text


def test_bulk_statements_are_mirrored_completely(conn: psycopg.Connection[Any]) -> None:
    """Thousands of contacts, links and flags in single statements (an import) all arrive, nothing goes stale."""
    n = 3000
    conn.execute("INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email) "
                 "SELECT 500000 + i, 'Bulk', 'Kontakt ' || i, 'bulk' || i || '@example.org' FROM generate_series(1, %s) i",
                 (n,))
    conn.execute("INSERT INTO public.customer_contacts (customer_id, contact_id) "
                 "SELECT 9001 + i %% 3, 500000 + i FROM generate_series(1, %s) i", (n,))
    conn.execute("INSERT INTO public.custom_variables (config_id, trans_id, bool_value) "
                 "SELECT %s, 500000 + i, true FROM generate_series(1, %s) i", (flag_config_id(conn), n))
    assert conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone() == (False, None)
    valid = conn.execute(f"SELECT count(*) FROM {USERS} WHERE login LIKE 'bulk%%' AND cp_valid_id = 1").fetchone()
    assert valid == (n,)
    conn.execute("UPDATE public.contacts SET cp_email = replace(cp_email, 'bulk', 'massen') WHERE cp_id > 500000")
    assert conn.execute(f"SELECT count(*) FROM {USERS} WHERE login LIKE 'massen%%'").fetchone() == (n,)
    assert conn.execute(f"SELECT count(*) FROM {USERS} WHERE login LIKE 'bulk%%'").fetchone() == (0,)
