"""Bad input gets a specific one-line error (table-driven: input, expected message), against the real PostgreSQL.

Every CLI case runs through ``kivi_otrs.cli.main`` inside click's CliRunner isolation, so
the user sees exactly what is checked here: one line ``Error: ...`` and a non-zero exit,
or for click's own usage errors its ``Error:`` line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from yoyo.exceptions import LockTimeout

from kivi_otrs import config, doctor, migrate
from kivi_otrs.cli import main
from kivi_otrs.errors import TemplateError
from kivi_otrs.render import Renderer, sample_context
from kivi_otrs.reports import Report

SECRET = "S3cr3t-Pa55w0rd-never-shown"
CLEAN_ENV: dict[str, str | None] = {name: None for name in (
    "KIVI_OTRS_DSN", "KIVI_OTRS_OTRS_PASSWORD", "KIVI_OTRS_API_TOKEN", "KIVI_OTRS_OTRS_URL", "KIVI_OTRS_OTRS_USER",
    "KIVI_OTRS_SECRETS_FILE", "CREDENTIALS_DIRECTORY", "KIVI_OTRS_DEBUG")}


def kivi(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the kivi-otrs entry point as a user would; returns (exit code, stdout, stderr)."""
    with CliRunner().isolation(env={**CLEAN_ENV, **(env or {})}) as (out, err, _):
        code = 0
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue().decode(), err.getvalue().decode()


def assert_one_line_error(code: int, out: str, err: str, expected: str, usage: bool = False) -> None:
    lines = err.strip().splitlines()
    assert code != 0, (out, err)
    assert "Traceback" not in err and "Error: unexpected" not in err, err
    if not usage:
        assert len(lines) == 1, err
    assert lines[-1].startswith("Error: ") and expected in lines[-1], err


def stored(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT key, value FROM kivi_otrs.settings").fetchall())


# --- config set: every key checked against its range --------------------------------------------------------------

CONFIG_SET_CASES: list[tuple[list[str], str]] = [
    (["billing.minimum_minutes", "Infinity"], "billing.minimum_minutes: expected a number from 0 to 1440 minutes"),
    (["billing.minimum_minutes", "NaN"], "billing.minimum_minutes: expected a number from 0 to 1440 minutes"),
    (["billing.minimum_minutes", "-1"], "billing.minimum_minutes: expected a number from 0 to 1440 minutes"),
    (["billing.minimum_minutes", "1e3"], "billing.minimum_minutes: expected a number from 0 to 1440 minutes"),
    (["billing.minimum_minutes", "0.00001"], "with at most 4 decimal places"),
    (["otrs.read_timeout", "inf"], "otrs.read_timeout: expected a number from 0.1 to 3600 seconds"),
    (["otrs.read_timeout", "0"], "otrs.read_timeout: expected a number from 0.1 to 3600 seconds"),
    (["otrs.connect_timeout", "1e400"], "otrs.connect_timeout: expected a number from 0.1 to 300 seconds"),
    (["billing.reservation_minutes", "99999999999"],
     "billing.reservation_minutes: expected a whole number from 1 to 10080 minutes"),
    (["billing.reservation_minutes", "0"], "expected a whole number from 1 to 10080 minutes"),
    (["billing.reservation_minutes", "1.5"], "expected a whole number from 1 to 10080 minutes"),
    (["billing.language", "xx"], "billing.language: expected a language with shipped templates: de, en"),
    (["billing.rounding_increment_minutes", "-15"],
     "billing.rounding_increment_minutes: expected a number from 0 to 1440 minutes"),
    (["billing.rounding_increment_minutes", "--", "-15"], "expected a number from 0 to 1440 minutes"),
    (["billing.rounding_increment_minutes", "1_5"], "expected a number from 0 to 1440 minutes"),
    (["otrs.batch_size", "0"], "otrs.batch_size: expected a whole number from 1 to 1000 tickets"),
    (["otrs.batch_size", "100000"], "otrs.batch_size: expected a whole number from 1 to 1000 tickets"),
    (["otrs.search_limit", "10001"], "otrs.search_limit: expected a whole number from 1 to 10000 tickets"),
    (["otrs.search_limit", "\u0663"], "otrs.search_limit: expected a whole number from 1 to 10000 tickets"),
    (["billing.period", "last-0-days"], "billing.period: expected previous-month, current-month or last-N-days"),
    (["billing.period", "last-99999-days"], "with N from 1 to 3660"),
    (["billing.period", "last-\u0663-days"], "with N from 1 to 3660"),
    (["otrs.base_url", "http://"], "otrs.base_url: expected an http:// or https:// URL"),
    (["otrs.base_url", "https://help desk/"], "otrs.base_url: expected an http:// or https:// URL"),
    (["otrs.base_url", "https://agent:pw@helpdesk/"], "with a host and no user, query or fragment"),
    (["otrs.base_url", "https://helpdesk:99999/"], "with a valid host and port"),
    (["otrs.webservice", "a/b"], "otrs.webservice: expected a web service name without / ? # % or \\"),
    (["otrs.webservice", ""], "otrs.webservice: expected a web service name"),
    (["otrs.user", "a\nb"], "otrs.user: expected an agent login on one line"),
    (["otrs.timezone", "../../etc/passwd"], "otrs.timezone: expected an IANA time zone"),
    (["site.timezone", "Mars/Olympus"], "site.timezone: expected an IANA time zone"),
    (["otrs.time_unit", "seconds"], "otrs.time_unit: expected minutes or hours"),
    (["otrs.verify_tls", "maybe"], "otrs.verify_tls: expected true or false"),
    (["billing.states", "[]"], "billing.states: expected a JSON list of 1 to 50 state names"),
    (["billing.states", '[1, 2]'], "billing.states: expected a JSON list of 1 to 50 state names"),
    (["billing.default_part", "x" * 201], "billing.default_part: expected a part number of at most 200 characters"),
    (["billing.rounding_mode", "down"], "billing.rounding_mode: expected up or nearest"),
    (["billing.number_format", "1 000,00"], "billing.number_format: expected one of"),
    (["billing.price_source", "list"], "billing.price_source: expected empty"),
    (["billing.run_target", "invoice"], "billing.run_target: expected new-order or periodic-order"),
    (["writeback.field", "Kivi Order"], "writeback.field: expected an OTRS dynamic field name of letters and digits"),
    (["writeback.enabled", "2"], "writeback.enabled: expected true or false"),
    (["otrs.nope", "1"], "unknown setting 'otrs.nope'"),
    (["otrs.password", SECRET], "otrs.password is a secret and is not stored in the database by default"),
    (["api.token", SECRET], "api.token is a secret and is not stored in the database by default"),
    (["api.token", "short", "--store-in-database"], "api.token: expected a token of 16 to 1000 printable"),
    (["api.token", "with space 0123456789", "--store-in-database"], "api.token: expected a token of 16"),
]


@pytest.mark.parametrize("args,expected", CONFIG_SET_CASES, ids=[" ".join(a)[:40] for a, _ in CONFIG_SET_CASES])
def test_config_set_refuses_out_of_range_values_in_one_line(migrated_dsn: str, args: list[str], expected: str) -> None:
    """config set names the key and the allowed range in one line and stores nothing."""
    before = stored(migrated_dsn)
    code, out, err = kivi(["config", "set", "--dsn", migrated_dsn, *args])
    assert_one_line_error(code, out, err, expected)
    assert SECRET not in out + err
    assert stored(migrated_dsn) == before


@pytest.mark.parametrize("key,value", [("billing.rounding_increment_minutes", "0"), ("billing.minimum_minutes", "7.5"),
                                       ("otrs.read_timeout", "0.5"), ("billing.reservation_minutes", "10080"),
                                       ("billing.language", "en"), ("billing.period", "last-30-days")])
def test_config_set_accepts_values_at_the_edges_of_the_range(migrated_dsn: str, key: str, value: str) -> None:
    """Values inside the range are stored as given."""
    code, _out, err = kivi(["config", "set", "--dsn", migrated_dsn, key, value])
    assert code == 0, err
    assert stored(migrated_dsn)[key] == value


# --- values already stored (older release, psql) ------------------------------------------------------------------

STORED_CASES: list[tuple[str, str, str]] = [
    ("billing.minimum_minutes", "Infinity", "expected a number from 0 to 1440 minutes"),
    ("billing.minimum_minutes", "NaN", "expected a number from 0 to 1440 minutes"),
    ("otrs.read_timeout", "inf", "expected a number from 0.1 to 3600 seconds"),
    ("billing.reservation_minutes", "99999999999", "expected a whole number from 1 to 10080 minutes"),
    ("billing.language", "xx", "expected a language with shipped templates: de, en"),
    ("billing.rounding_increment_minutes", "-15", "expected a number from 0 to 1440 minutes"),
    ("otrs.batch_size", "0", "expected a whole number from 1 to 1000 tickets"),
    ("api.token", "short", "expected a token of 16 to 1000 printable ASCII characters without spaces "
                             "(e.g. from: openssl rand -hex 32)"),
]


@pytest.mark.parametrize("key,value,expected", STORED_CASES, ids=[f"{k}={v}" for k, v, _ in STORED_CASES])
def test_invalid_stored_values_name_the_key_and_the_fix(conn: psycopg.Connection[Any], migrated_dsn: str, key: str,
                                                         value: str, expected: str) -> None:
    """A stored value out of range stops the next command with the key, the range and the config set that fixes it."""
    conn.execute("INSERT INTO kivi_otrs.settings (key, value) VALUES (%s, %s)", (key, value))
    code, out, err = kivi(["report", "billed", "--month", "2026-10", "--dsn", migrated_dsn])
    assert_one_line_error(code, out, err,
                          f"setting {key} (stored in kivi_otrs.settings) is invalid: {expected}; "
                          f"fix it with kivi-otrs config set {key} VALUE")
    code, out, _ = kivi(["config", "show", "--dsn", migrated_dsn])
    assert code == 0 and f"INVALID: {expected}" in out


def test_invalid_environment_value_names_the_variable_but_not_the_secret(migrated_dsn: str) -> None:
    """A bad secret from the environment names the variable to fix, never the value."""
    code, out, err = kivi(["report", "billed", "--month", "2026-10", "--dsn", migrated_dsn],
                          env={"KIVI_OTRS_API_TOKEN": "tiny-secret"})
    assert_one_line_error(code, out, err, "setting api.token (from env KIVI_OTRS_API_TOKEN) is invalid")
    assert "fix the environment variable KIVI_OTRS_API_TOKEN" in err and "tiny-secret" not in err


# --- secrets ------------------------------------------------------------------------------------------------------

@dataclass
class SecretsCase:
    id: str
    content: str | None  # secrets file text; None: no file at the path
    mode: int
    expected: str


SECRETS_FILE_CASES = [
    SecretsCase("world-readable", f"otrs.password = {SECRET}\n", 0o644, "is readable by group or others (mode 0644); "
                "run chmod 600"),
    SecretsCase("group-readable", f"otrs.password = {SECRET}\n", 0o640, "(mode 0640); run chmod 600"),
    SecretsCase("missing", None, 0o600, "does not exist; create it (mode 0600)"),
    SecretsCase("no-equals", f"# kivi-otrs\n{SECRET}\n", 0o600, "line 2: expected 'KEY = VALUE' with KEY one of "
                "otrs.password, api.token"),
    SecretsCase("not-a-secret-key", "otrs.base_url = https://x/\n", 0o600, "line 1: expected 'KEY = VALUE'"),
]


@pytest.mark.parametrize("case", SECRETS_FILE_CASES, ids=[c.id for c in SECRETS_FILE_CASES])
def test_bad_secrets_file_is_a_one_line_error_without_the_secret(migrated_dsn: str, tmp_path: Path,
                                                                 case: SecretsCase) -> None:
    """A secrets file that is readable by others, missing or malformed is named with what to do."""
    path = tmp_path / "kivi-otrs.secrets"
    if case.content is not None:
        path.write_text(case.content, encoding="utf-8")
        path.chmod(case.mode)
    code, out, err = kivi(["--secrets-file", str(path), "config", "show", "--dsn", migrated_dsn])
    assert_one_line_error(code, out, err, f"secrets file {path} ")
    assert case.expected in err and SECRET not in out + err


def test_secrets_come_from_file_credentials_and_environment_never_shown(migrated_dsn: str, tmp_path: Path) -> None:
    """otrs.password from a 0600 file, api.token from systemd credentials; show masks both; env wins over both."""
    secrets = tmp_path / "secrets"
    secrets.write_text(f"# kivi-otrs\notrs.password = {SECRET}\n", encoding="utf-8")
    secrets.chmod(0o600)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api.token").write_text("token-from-systemd-0123456789\n", encoding="utf-8")
    env = {"KIVI_OTRS_SECRETS_FILE": str(secrets), "CREDENTIALS_DIRECTORY": str(credentials)}
    code, out, err = kivi(["config", "show", "--dsn", migrated_dsn], env=env)
    assert code == 0, err
    assert "otrs.password" in out and f"(secrets file {secrets})" in out
    assert "(systemd credential api.token)" in out
    assert SECRET not in out + err and "token-from-systemd" not in out + err
    with psycopg.connect(migrated_dsn) as conn:
        config.use_secrets_file(None)
        os.environ.update(env)
        try:
            values = config.effective(conn)
        finally:
            for name in env:
                os.environ.pop(name)
    assert values["otrs.password"] == SECRET and values["api.token"] == "token-from-systemd-0123456789"
    code, out, _ = kivi(["config", "show", "--dsn", migrated_dsn], env={**env, "KIVI_OTRS_OTRS_PASSWORD": "x"})
    assert "(env KIVI_OTRS_OTRS_PASSWORD)" in out
    assert stored(migrated_dsn) == {}


def test_storing_a_secret_needs_the_flag_warns_and_doctor_reports_it(migrated_dsn: str) -> None:
    """--store-in-database stores with a warning; doctor warns until config unset removes it."""
    code, out, err = kivi(["config", "set", "--dsn", migrated_dsn, "otrs.password", SECRET, "--store-in-database"])
    assert code == 0 and "otrs.password saved." in out
    assert "warning: otrs.password is stored in plain text" in err and SECRET not in out + err
    assert stored(migrated_dsn)["otrs.password"] == SECRET
    warned = [f for f in doctor.diagnose(migrated_dsn) if f.check == "secrets"]
    assert len(warned) == 1 and "otrs.password is stored in plain text" in warned[0].message
    assert SECRET not in str(warned[0].as_dict())
    assert kivi(["config", "unset", "--dsn", migrated_dsn, "otrs.password"])[0] == 0
    assert "otrs.password" not in stored(migrated_dsn)
    assert not [f for f in doctor.diagnose(migrated_dsn) if f.check == "secrets"]


# --- a database without kivi-otrs ---------------------------------------------------------------------------------

NOT_INSTALLED_COMMANDS = [
    ["config", "show"],
    ["config", "set", "billing.language", "de"],
    ["config", "unset", "billing.language"],
    ["report", "billed", "--month", "2026-10"],
    ["template", "show", "description"],
]


@pytest.mark.parametrize("args", NOT_INSTALLED_COMMANDS, ids=[" ".join(a) for a in NOT_INSTALLED_COMMANDS])
def test_database_without_kivi_otrs_says_run_migrate(kivi_dsn: str, args: list[str]) -> None:
    """No 'relation kivi_otrs.settings does not exist': the user is told to install."""
    code, out, err = kivi([*args, "--dsn", kivi_dsn])
    assert_one_line_error(code, out, err, "kivi-otrs is not installed in this database; run kivi-otrs migrate")
    assert "relation" not in err


# --- templates: on save and at render ------------------------------------------------------------------------------

TEMPLATE_CASES: list[tuple[str, bytes, str]] = [
    ("huge-string", b"{{ 'x' * 10**8 }}", "builds a text or list longer than 65536 characters (64 KiB)"),
    ("huge-range", b"{% for i in range(10**9) %}{% endfor %}", "asks for a range of 1000000000 items (at most 10000)"),
    ("nested-loops", b"{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
     "loops over more than 10000 items"),
    ("doubling", b"{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "longer than 65536 characters"),
    ("doubling-block", b"{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s %}{{ ns.s }}{{ ns.s }}"
     b"{% endset %}{% endfor %}", "outputs a value longer than 65536 characters"),
    ("join-bomb", b"{{ range(9999)|map('string')|map('center', 60000)|join }}", "joins a text longer than 65536"),
    ("ljust", b"{{ ticket.title.ljust(10**8) }}", "asks str.ljust for more than 65536 characters"),
    ("format-width", b"{{ '%0100000000d' % 1 }}", "formats a text wider than 65536 characters"),
    ("replace-bomb", b"{{ ticket.title|replace('', 'x' * 60000) }}", "replaces into a text longer than 65536"),
    ("power", b"{{ 2 ** (10**10) }}", "computes a power larger than 4096 bits"),
    ("exponential-macro", b"{% macro f(n) %}{% if n < 60 %}{{ f(n+1) }}{{ f(n+1) }}{% endif %}{% endmacro %}{{ f(0) }}",
     "took longer than 2 seconds to render"),
    ("recursion", b"{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}", "recurses too deeply"),
    ("division", b"{{ minutes / 0 }}", "failed: division by zero"),
    ("long-output", b"{% for i in range(9000) %}{{ ticket.number }}{% endfor %}", "renders more than 65536 characters"),
    ("unknown-var", b"{{ nope }}", "uses an unknown variable ('nope' is undefined)"),
    ("sandbox", b"{{ ticket.__class__ }}", "tried something the sandbox forbids"),
    ("syntax", b"{{ ticket.title ", "line 1: unexpected end of template"),
]


@pytest.mark.parametrize("name,body,expected", TEMPLATE_CASES, ids=[c[0] for c in TEMPLATE_CASES])
def test_template_set_refuses_templates_over_the_limits(migrated_dsn: str, tmp_path: Path, name: str, body: bytes,
                                                        expected: str) -> None:
    """template set trial-renders within size, item and time limits and stores nothing on failure."""
    path = tmp_path / f"{name}.j2"
    path.write_bytes(body)
    started = time.monotonic()
    code, out, err = kivi(["template", "set", "description", str(path), "--dsn", migrated_dsn])
    assert time.monotonic() - started < 10
    assert_one_line_error(code, out, err, expected)
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kivi_otrs.template").fetchone() == (0,)


TEMPLATE_FILE_CASES: list[tuple[str, bytes, list[str], str]] = [
    ("latin1", "Nummer: {{ ticket.number }} Größe".encode("latin-1"), [],
     "is not UTF-8 text (byte 0xf6 at offset 30); save it as UTF-8"),
    ("nul", b"{{ ticket.number }}\x00", [], "contains a NUL character; remove it"),
    ("too-big", b"x" * (16 * 1024 + 1), [], "has 16385 characters; at most 16384 (16 KiB) are allowed"),
    ("language", b"{{ ticket.number }}", ["--language", "xx"], "Invalid value for '--language'"),
]


@pytest.mark.parametrize("name,body,extra,expected", TEMPLATE_FILE_CASES, ids=[c[0] for c in TEMPLATE_FILE_CASES])
def test_template_set_refuses_bad_files_naming_the_file(migrated_dsn: str, tmp_path: Path, name: str, body: bytes,
                                                        extra: list[str], expected: str) -> None:
    """Non-UTF-8, NUL, oversized files and unknown languages are one clean error (the file named where it matters)."""
    path = tmp_path / f"{name}.j2"
    path.write_bytes(body)
    code, out, err = kivi(["template", "set", "description", str(path), *extra, "--dsn", migrated_dsn])
    assert_one_line_error(code, out, err, expected, usage=name == "language")
    if name == "latin1":
        assert str(path) in err


RENDER_CASES = [(name, body.decode(), expected) for name, body, expected in TEMPLATE_CASES
                if name in ("huge-string", "huge-range", "nested-loops", "join-bomb", "exponential-macro", "division")]


@pytest.mark.parametrize("name,body,expected", RENDER_CASES, ids=[c[0] for c in RENDER_CASES])
def test_templates_stored_past_the_check_fail_cleanly_at_render(conn: psycopg.Connection[Any], name: str, body: str,
                                                                expected: str) -> None:
    """A template that reached the table another way (psql, older release) fails one position with a TemplateError."""
    conn.execute("INSERT INTO kivi_otrs.template (name, language, body) VALUES ('description', 'de', %s)", (body,))
    renderer = Renderer.from_database(conn, "de", "1.000,00")
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        renderer.render("description", sample_context())
    assert time.monotonic() - started < 5
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert renderer.render("longdescription", sample_context())  # the shipped one still renders


def test_shipped_template_that_is_not_utf8_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken shipped template file (bad package build) is named, not an 'unexpected UnicodeDecodeError'."""
    import kivi_otrs.render as render

    for lang in ("de",):
        folder = tmp_path / "templates" / "positions" / lang
        folder.mkdir(parents=True)
        (folder / "description.j2").write_bytes(b"\xff\xfe{{ ticket.number }}")
        (folder / "longdescription.j2").write_text("{{ ticket.title }}", encoding="utf-8")
    monkeypatch.setattr(render, "resource_dir", lambda kind: tmp_path / kind)
    with pytest.raises(TemplateError, match=r"description.j2 is not UTF-8 text \(byte 0xff at offset 0\)"):
        Renderer("de")


# --- reports: CSV formula injection --------------------------------------------------------------------------------

CSV_CASES = [
    ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
    ("+49 30 1234", "'+49 30 1234"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("  =1+1", "'  =1+1"),
    ("Beamer defekt", "Beamer defekt"),
    ("a=b", "a=b"),
]


@pytest.mark.parametrize("title,cell", CSV_CASES, ids=[repr(t) for t, _ in CSV_CASES])
def test_csv_neutralises_formula_cells(title: str, cell: str) -> None:
    """Text cells a spreadsheet would evaluate get a leading apostrophe; numbers stay numbers."""
    import csv
    import io
    from decimal import Decimal

    report = Report("t", ["title", "minutes"], [[title, Decimal("-15")]])
    rows = list(csv.reader(io.StringIO(report.csv(), newline="")))
    assert rows[1] == [cell, "-15"]


# --- sync trigger: custom variable definitions ---------------------------------------------------------------------

CUSTOM_VARIABLE_STATEMENTS = [
    ("insert", "INSERT INTO public.custom_variable_configs (name, description, type, module, default_value, searchable, "
               "includeable, included_by_default, sortkey, flags, first_tab) VALUES ('colour', 'Farbe', 'text', 'CT', "
               "'', true, true, false, 99, '', false)"),
    ("update", "UPDATE public.custom_variable_configs SET description = 'Farbe!' WHERE name = 'colour'"),
    ("delete", "DELETE FROM public.custom_variable_configs WHERE name = 'colour'"),
]


def test_any_custom_variable_definition_change_keeps_the_backend_fresh(conn: psycopg.Connection[Any]) -> None:
    """Creating, changing and deleting an unrelated custom variable does not mark the backend stale."""
    for label, statement in CUSTOM_VARIABLE_STATEMENTS:
        conn.execute(statement)
        state = conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone()
        assert state == (False, None), label


def test_migrate_recreates_a_deleted_flag_definition(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """An admin deletes the flag in kivitendo: doctor names it, migrate re-creates it, rollback still removes it."""
    old = conn.execute("SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id'").fetchone()[0]  # type: ignore[index]
    conn.execute("DELETE FROM public.custom_variables WHERE config_id = %s", (old,))
    conn.execute("DELETE FROM public.custom_variable_configs WHERE id = %s", (old,))
    assert conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone() == (False, None)
    assert any(f.check == "flag" for f in doctor.diagnose(migrated_dsn))
    code, _, err = kivi(["migrate", "--dsn", migrated_dsn])
    assert code == 0 and "was deleted in kivitendo; re-created it (default unticked)" in err
    new = conn.execute("SELECT c.id, c.default_value FROM public.custom_variable_configs c WHERE c.name = "
                       "'otrs_may_report_tickets' AND c.module = 'Contacts'").fetchone()
    assert new is not None and new[0] != old and new[1] == "0"
    state = dict(conn.execute("SELECT key, value FROM kivi_otrs.install_state").fetchall())
    assert state["flag_config_id"] == str(new[0]) and state["flag_config_created"] == "true"
    assert not any(f.check == "flag" for f in doctor.diagnose(migrated_dsn))
    assert kivi(["migrate", "--dsn", migrated_dsn])[2] == ""  # nothing to repair the second time
    migrate.rollback(migrated_dsn)
    assert conn.execute("SELECT count(*) FROM public.custom_variable_configs WHERE name = "
                        "'otrs_may_report_tickets'").fetchone() == (0,)


# --- migrate after a crash ------------------------------------------------------------------------------------------

def test_migrate_clears_the_lock_row_of_a_killed_migrate(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """yoyo's lock row of a kill -9'd migrate is removed at once (the advisory lock shows nobody holds it)."""
    conn.execute("INSERT INTO kivi_otrs.yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    started = time.monotonic()
    code, out, err = kivi(["migrate", "--dsn", migrated_dsn])
    assert code == 0 and "up to date" in out, err
    assert time.monotonic() - started < 15
    assert "removed the migration lock of process 999999, which is no longer running" in err
    assert conn.execute("SELECT count(*) FROM kivi_otrs.yoyo_lock").fetchone() == (0,)


def test_break_lock_removes_a_stale_row_but_not_a_running_migrate(conn: psycopg.Connection[Any],
                                                                   migrated_dsn: str) -> None:
    """break-lock clears a dead holder's row, and refuses while a migrate holds the advisory lock."""
    conn.execute("INSERT INTO kivi_otrs.yoyo_lock (locked, ctime, pid) VALUES (1, now(), 424242)")
    with migrate.install_lock(migrated_dsn):
        code, out, err = kivi(["break-lock", "--dsn", migrated_dsn])
        assert_one_line_error(code, out, err, "another kivi-otrs migrate/rollback is running on this database")
    assert conn.execute("SELECT count(*) FROM kivi_otrs.yoyo_lock").fetchone() == (1,)
    code, out, err = kivi(["break-lock", "--dsn", migrated_dsn])
    assert code == 0 and "Removed the migration lock of process 424242." in out
    assert conn.execute("SELECT count(*) FROM kivi_otrs.yoyo_lock").fetchone() == (0,)


@pytest.mark.parametrize("text", ["Process 4711 has locked this database (run yoyo break-lock to remove this lock)",
                                  "Database locked (run yoyo break-lock to remove this lock)"])
def test_lock_timeout_names_only_kivi_otrs_break_lock(text: str) -> None:
    """A lock that outlives the wait names kivi-otrs break-lock, never yoyo's own command."""
    message = str(migrate._lock_timeout(LockTimeout(text)))
    assert "kivi-otrs break-lock" in message and "yoyo" not in message
    assert ("process 4711" in message) == ("4711" in text)


# kept last: the number of table rows, for the report
BAD_INPUT_CASES: list[Any] = [*CONFIG_SET_CASES, *STORED_CASES, *SECRETS_FILE_CASES, *NOT_INSTALLED_COMMANDS,
                              *TEMPLATE_CASES, *TEMPLATE_FILE_CASES, *RENDER_CASES, *CSV_CASES,
                              *CUSTOM_VARIABLE_STATEMENTS]
