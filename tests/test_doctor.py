"""kivi-otrs doctor: each data problem an admin must fix, with what to do."""

from __future__ import annotations

import psycopg

from kivi_otrs import doctor


def by_message(findings: list[doctor.Finding], fragment: str) -> doctor.Finding:
    matches = [f for f in findings if fragment in f.message]
    assert matches, [f.message for f in findings]
    return matches[0]


def test_doctor_finds_the_demo_data_problems(migrated_dsn: str) -> None:
    """Malformed and duplicate e-mails, contacts without customer, odd and duplicate customer numbers."""
    with psycopg.connect(migrated_dsn) as conn:
        conn.execute("INSERT INTO public.customer (name, customernumber, taxzone_id, currency_id, country_id) "
                     "SELECT 'Doppelt GmbH', 'kivi-1001', min(id), 1, 1 FROM public.tax_zones")
        conn.execute("INSERT INTO public.customer (id, name, customernumber, taxzone_id, currency_id, country_id) "
                     "SELECT 9300, 'Ohne Nummer', NULL, min(id), 1, 1 FROM public.tax_zones")
        conn.execute("INSERT INTO public.customer_contacts (customer_id, contact_id) VALUES (9300, 9106)")
    findings = doctor.diagnose(migrated_dsn)
    malformed = by_message(findings, "malformed e-mail")
    assert malformed.severity == "error" and "hans.kaputt(at)example.org" in malformed.examples[0]
    assert "anna.meyer@example.org: contacts 9101, 9107" in by_message(findings, "used by several contacts").examples
    assert "kivi-1001" in by_message(findings, "used more than once").examples[0]
    assert any("'KD 4711'" in e for e in by_message(findings, "operators").examples)
    assert any("Ohne Nummer" in e for e in by_message(findings, "no customer number").examples)
    assert all(f.fix for f in findings)


def test_doctor_reports_contacts_without_customer(migrated_dsn: str) -> None:
    """Olga has an e-mail but no customer: listed with the fix."""
    finding = by_message(doctor.diagnose(migrated_dsn), "without customer")
    assert any("olga@example.org" in e for e in finding.examples)
    assert "link the contact" in finding.fix


def test_doctor_on_an_uninstalled_database(kivi_dsn: str) -> None:
    """Says to run migrate instead of failing."""
    findings = doctor.diagnose(kivi_dsn)
    assert [(f.check, f.fix) for f in findings] == [("install", "run kivi-otrs migrate")]


def test_doctor_notices_disabled_triggers_and_a_diverged_mirror(migrated_dsn: str) -> None:
    """Someone disabled our triggers and edited contacts: doctor says the mirror differs."""
    with psycopg.connect(migrated_dsn) as conn:
        conn.execute("ALTER TABLE public.contacts DISABLE TRIGGER kivi_otrs_sync_update")
        conn.execute("UPDATE public.contacts SET cp_name = 'Geändert' WHERE cp_id = 9102")
    checks = {(f.check, f.severity) for f in doctor.diagnose(migrated_dsn)}
    assert ("triggers", "error") in checks and ("sync", "error") in checks


def test_doctor_flags_a_reader_role_that_can_read_kivitendo(migrated_dsn: str) -> None:
    """A GRANT on public tables to the OTRS role is reported."""
    with psycopg.connect(migrated_dsn) as conn:
        conn.execute("GRANT SELECT ON public.customer TO kivi_otrs_reader")
    finding = by_message(doctor.diagnose(migrated_dsn), "can read kivitendo tables")
    assert finding.examples == ["customer"]
