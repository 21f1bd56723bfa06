"""Customer portal login: kivi-otrs portal set|reset|disable|list and the view Znuny's CustomerAuth::DB reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from conftest import set_flag
from psycopg import conninfo

from kivi_otrs import portal

ANNA = "anna.meyer@example.org"  # contacts 9101 (KIVI-1001) and 9107 (KIVI-1002)
BERND = "bernd.schulz@example.org"  # contact 9102
OTTO = "otto@alte-firma.example"  # contact of the obsolete customer KIVI-0999
GOOD = "Sommer-Regen-2026"


def run(dsn: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kivi_otrs", "portal", *args], capture_output=True, text=True,
                          input=stdin, env={"PATH": "/usr/bin:/bin", "KIVI_OTRS_DSN": dsn}, timeout=120)


def flag(conn: psycopg.Connection[Any], login: str, value: bool) -> None:
    row = conn.execute("SELECT contact_ids FROM kivi_otrs.customer_user WHERE login = %s", (login,)).fetchone()
    assert row is not None
    for cp_id in row[0]:
        set_flag(conn, cp_id, value)


def stored(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT login, password_hash, set_at FROM kivi_otrs.portal_password ORDER BY login").fetchall()


def auth_pw(conn: psycopg.Connection[Any], login: str) -> str | None:
    """What Znuny's CustomerAuth::DB reads: SELECT pw, login FROM the view WHERE login = ?."""
    row = conn.execute("SELECT pw, login FROM kivi_otrs.otrs_customer_auth WHERE login = %s", (login,)).fetchone()
    assert row is not None, login
    return None if row[0] is None else str(row[0])


def test_hash_is_znunys_bcrypt_form_and_verifies() -> None:
    """BCRYPT:cost:16-char salt:31-char hash; the right password verifies, another does not."""
    stored_hash = portal.znuny_bcrypt("Grüße-geheim-1")
    kind, cost, salt, digest = stored_hash.split(":")
    assert (kind, cost, len(salt), len(digest)) == ("BCRYPT", "12", 16, 31)
    assert portal.verify("Grüße-geheim-1", stored_hash)
    assert not portal.verify("Grüsse-geheim-1", stored_hash)


def test_hash_matches_crypt_eksblowfish_as_znuny_calls_it() -> None:
    """Perl's Crypt::Eksblowfish::Bcrypt (what Znuny uses) computes the same hash for our salt and password."""
    perl = shutil.which("perl")
    if perl is None or subprocess.run([perl, "-MCrypt::Eksblowfish::Bcrypt", "-e", "1"], capture_output=True).returncode:
        pytest.skip("perl with Crypt::Eksblowfish::Bcrypt (Debian libcrypt-eksblowfish-perl) is not installed")
    script = r"""
use strict; use warnings; use utf8;
my ($Stored) = @ARGV;
my $Pw = "Grüße-geheim-1";
utf8::encode($Pw);    # Znuny's EncodeOutput
my ($Cost, $Salt) = $Stored =~ m{^BCRYPT:(\d+):(.{16}):(.*)$}xms;
my $Octets = Crypt::Eksblowfish::Bcrypt::bcrypt_hash({ key_nul => 1, cost => $Cost, salt => $Salt }, $Pw);
print "BCRYPT:$Cost:$Salt:" . Crypt::Eksblowfish::Bcrypt::en_base64($Octets);
"""
    stored_hash = portal.znuny_bcrypt("Grüße-geheim-1", cost=10)
    result = subprocess.run([perl, "-MCrypt::Eksblowfish::Bcrypt", "-e", script, stored_hash], capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout == stored_hash


def test_set_list_reset_disable_through_the_cli(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """set stores a hash, list shows no hash, reset prints a new password once, disable removes it."""
    flag(conn, ANNA, True)
    result = run(migrated_dsn, "set", "Anna.Meyer@Example.org", "--password-stdin", stdin=GOOD + "\n")
    assert result.returncode == 0, result.stderr
    [(login, first_hash, set_at)] = stored(conn)
    assert login == ANNA and portal.verify(GOOD, first_hash) and set_at is not None
    assert auth_pw(conn, ANNA) == first_hash

    listing = run(migrated_dsn, "list")
    assert listing.returncode == 0 and ANNA in listing.stdout and "BCRYPT" not in listing.stdout
    assert listing.stdout.splitlines()[1].split()[:3] == [ANNA, "yes", "yes"]
    assert BERND in run(migrated_dsn, "list", "--all").stdout

    refused = run(migrated_dsn, "reset", ANNA)  # stdout is a pipe here
    assert refused.returncode == 8 and "--show" in refused.stderr and stored(conn)[0][1] == first_hash
    reset = run(migrated_dsn, "reset", ANNA, "--show")
    assert reset.returncode == 0, reset.stderr
    new_password = reset.stdout.strip()
    assert len(new_password) == 16 and len(reset.stdout.splitlines()) == 1
    assert portal.verify(new_password, str(auth_pw(conn, ANNA))) and not portal.verify(GOOD, str(auth_pw(conn, ANNA)))

    disabled = run(migrated_dsn, "disable", ANNA)
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
    assert auth_pw(conn, ANNA) is None and stored(conn)[0][1:] == (None, None)
    assert run(migrated_dsn, "disable", ANNA).stdout.strip().endswith("nothing changed.")
    assert run(migrated_dsn, "list").stdout.splitlines()[1].split()[:3] == [ANNA, "yes", "no"]


def test_invalid_logins_show_no_password_to_znuny(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """Unticking the flag or marking the customer obsolete hides the hash at once; ticking again restores it."""
    flag(conn, ANNA, True)
    assert run(migrated_dsn, "set", ANNA, "--password-stdin", stdin=GOOD).returncode == 0
    assert auth_pw(conn, ANNA) is not None
    flag(conn, ANNA, False)
    assert auth_pw(conn, ANNA) is None
    flag(conn, ANNA, True)
    assert auth_pw(conn, ANNA) is not None
    conn.execute("UPDATE public.customer SET obsolete = true WHERE customernumber IN ('KIVI-1001', 'KIVI-1002')")
    assert auth_pw(conn, ANNA) is None
    assert auth_pw(conn, BERND) is None  # valid or not: no password, no login
    assert conn.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_auth WHERE pw IS NOT NULL "
                        "AND login IN (SELECT login FROM kivi_otrs.otrs_customer_contacts "
                        "WHERE cp_valid_id <> 1)").fetchone() == (0,)


BAD_INPUT = [
    ("unknown login", "nobody@example.org", GOOD, "unknown login nobody@example.org"),
    ("contact without the flag", BERND, GOOD, "may not report tickets: tick 'Darf Tickets melden (OTRS)'"),
    ("obsolete customer", OTTO, GOOD, "belongs to an obsolete customer"),
    ("too short", ANNA, "kurz-123", "weak password for anna.meyer@example.org: use at least 10 characters"),
    ("the login itself", ANNA, "Anna.Meyer@example.org", "must not be the login"),
    ("the login's local part", ANNA, "ANNA.MEYER", "must not be the login"),
    ("one repeated character", ANNA, "aaaaaaaaaaaa", "at least 4 different characters"),
    ("control character", ANNA, "Sommer\tRegen-2026", "control characters"),
    ("longer than bcrypt hashes", ANNA, "Sommer-Regen-" + "x" * 70, "too long"),
    ("empty login", "  ", GOOD, "no login given"),
]


@pytest.mark.parametrize("login,password,message", [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_and_changes_nothing(conn: psycopg.Connection[Any], migrated_dsn: str, login: str,
                                                   password: str, message: str) -> None:
    """Unknown login, flag not set, obsolete customer, weak password: one line 'Error: ...', exit 8, nothing stored."""
    flag(conn, ANNA, True)
    result = run(migrated_dsn, "set", login, "--password-stdin", stdin=password + "\n")
    assert result.returncode == 8, result.stderr
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stored(conn) == []


def test_reset_and_disable_refuse_unknown_and_invalid_logins(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """reset names the flag / unknown login before generating anything; disable names an unknown login."""
    for login, message in ((BERND, "may not report tickets"), ("nobody@example.org", "unknown login")):
        result = run(migrated_dsn, "reset", login, "--show")
        assert result.returncode == 8 and message in result.stderr and result.stdout == ""
    result = run(migrated_dsn, "disable", "nobody@example.org")
    assert result.returncode == 8 and "unknown login" in result.stderr
    assert stored(conn) == []


def test_a_locked_out_role_gets_one_line_and_changes_nothing(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """A role without rights on kivi-otrs' tables (e.g. the OTRS LOGIN role) is refused with one line."""
    flag(conn, ANNA, True)
    conn.execute("DROP ROLE IF EXISTS kivi_portal_outsider")
    conn.execute("CREATE ROLE kivi_portal_outsider NOLOGIN IN ROLE kivi_otrs_reader")
    try:
        params = conninfo.conninfo_to_dict(migrated_dsn)
        params["options"] = "-c role=kivi_portal_outsider"
        dsn = conninfo.make_conninfo("", **params)
        for args in (("set", ANNA, "--password-stdin"), ("disable", ANNA), ("list",)):
            result = run(dsn, *args, stdin=GOOD)
            assert result.returncode == 8, (args, result.stderr)
            assert "role kivi_portal_outsider may not" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert stored(conn) == []
    finally:
        conn.execute("DROP ROLE kivi_portal_outsider")


def test_reader_role_reads_the_auth_view_and_nothing_new(conn: psycopg.Connection[Any]) -> None:
    """OTRS's role may SELECT kivi_otrs.otrs_customer_auth, not the password table, and may change nothing."""
    flag(conn, ANNA, True)
    portal.set_password(conn, ANNA, GOOD)
    conn.execute("SET ROLE kivi_otrs_reader")
    try:
        row = conn.execute("SELECT pw, login FROM kivi_otrs.otrs_customer_auth WHERE login = %s", (ANNA,)).fetchone()
        assert row is not None and portal.verify(GOOD, row[0])
        for statement in ("SELECT 1 FROM kivi_otrs.portal_password",
                          "UPDATE kivi_otrs.portal_password SET password_hash = NULL",
                          "DELETE FROM kivi_otrs.portal_password"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    finally:
        conn.execute("RESET ROLE")
    granted = conn.execute("""
        SELECT table_name, privilege_type FROM information_schema.role_table_grants
        WHERE grantee = 'kivi_otrs_reader' ORDER BY 1, 2""").fetchall()
    assert granted == [("otrs_customer_auth", "SELECT"), ("otrs_customer_companies", "SELECT"),
                       ("otrs_customer_contacts", "SELECT")]


def test_only_znuny_bcrypt_hashes_can_be_stored(conn: psycopg.Connection[Any]) -> None:
    """The table refuses plain text, unsalted SHA hex and standard $2b$ strings, whoever writes."""
    for value in (GOOD, "a" * 128, "$2b$12$abcdefghijklmnopqrstuuJ8Fq0p0W0rE2c1gJd3G1n5Y0xJb5y2e"):
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO kivi_otrs.portal_password (login, password_hash, set_at) VALUES (%s, %s, now())",
                         (ANNA, value))


def test_rollback_removes_the_password_table_and_view(migrated_dsn: str) -> None:
    """rollback drops kivi-otrs' portal objects along with the rest."""
    from kivi_otrs import migrate

    migrate.rollback(migrated_dsn)
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT to_regclass('kivi_otrs.portal_password')").fetchone() == (None,)


PERL_LOAD = r"""
use strict; use warnings;
use JSON::PP;
my ($File, $Package) = @ARGV;
require $File;
my $Self = {};
$Package->Load($Self);
print JSON::PP->new->canonical->encode({ map { $_ => $Self->{$_} } grep { /^Customer::Auth/ } keys %$Self });
"""


@pytest.mark.parametrize("slot,suffix", [(0, ""), (1, "1"), (9, "9")])
def test_otrs_config_portal_block_compiles_and_sets_znunys_auth_keys(tmp_path: Any, slot: int, suffix: str) -> None:
    """perl -c passes; Load sets Customer::AuthModule<slot> and its ::DB keys with the file's password."""
    perl = shutil.which("perl")
    if perl is None:
        pytest.skip("perl is not installed")
    from kivi_otrs import otrs_config

    secret = tmp_path / "pw"
    secret.write_text("Db-Geheim'1\n", encoding="utf-8")
    text = otrs_config.render("postgresql://owner:ownerpw@db.example:5433/firma", "otrs_kivi", "kivi_otrs_reader",
                              slot=slot, password_file=str(secret), portal_login=True)
    assert "Db-Geheim" not in text and "ownerpw" not in text
    module = tmp_path / "ZZZKiviOtrs.pm"
    module.write_text(text, encoding="utf-8")
    checked = subprocess.run([perl, "-c", str(module)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "syntax OK" in checked.stderr, checked.stderr
    loaded = subprocess.run([perl, "-e", PERL_LOAD, str(module), "Kernel::Config::Files::ZZZKiviOtrs"],
                            capture_output=True, text=True, timeout=60, check=True)
    prefix = "Customer::AuthModule::DB::"
    assert json.loads(loaded.stdout) == {
        f"Customer::AuthModule{suffix}": "Kernel::System::CustomerAuth::DB",
        f"{prefix}Table{suffix}": "kivi_otrs.otrs_customer_auth",
        f"{prefix}CustomerKey{suffix}": "login",
        f"{prefix}CustomerPassword{suffix}": "pw",
        f"{prefix}CryptType{suffix}": "bcrypt",
        f"{prefix}DSN{suffix}": "DBI:Pg:dbname=firma;host=db.example;port=5433",
        f"{prefix}User{suffix}": "otrs_kivi",
        f"{prefix}Password{suffix}": "Db-Geheim'1",
    }
    without = otrs_config.render("postgresql://u@db.example/firma", "otrs_kivi", "kivi_otrs_reader", slot=slot)
    assert "Customer::AuthModule" not in without


def test_portal_login_is_found_in_any_case_but_not_with_other_letters(conn: psycopg.Connection[Any],
                                                                       migrated_dsn: str) -> None:
    """Znuny's exact `WHERE login = ?` finds Anna.Meyer@Example.org; ß/ss and accents stay distinct; index used."""
    flag(conn, ANNA, True)
    assert run(migrated_dsn, "set", ANNA, "--password-stdin", stdin=GOOD + "\n").returncode == 0
    query = "SELECT pw, login FROM kivi_otrs.otrs_customer_auth WHERE login = %s"
    [(pw, login)] = conn.execute(query, ("Anna.Meyer@EXAMPLE.org",)).fetchall()
    assert login == ANNA and portal.verify(GOOD, pw)
    assert conn.execute("SELECT 'straße@x.de' = 'strasse@x.de' COLLATE kivi_otrs.login_ci, "
                        "'müller@x.de' = 'muller@x.de' COLLATE kivi_otrs.login_ci").fetchone() == (False, False)
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, ("X@y.z",)).fetchall())
    assert "customer_user_login_ci_idx" in plan
