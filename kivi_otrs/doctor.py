"""``kivi-otrs doctor``: what an admin must fix, each finding with what to do.

Three groups of checks: the installation (migrations, views, triggers, role,
mirror health), schema drift (kivitendo columns we read are gone or retyped),
and data problems in kivitendo (e-mails, customer numbers, links).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from . import config, migrate

# kivitendo columns the customer backend reads, with the type families that work.
REQUIRED_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "contacts": {
        "cp_id": ("integer",), "cp_email": ("text", "character varying"), "cp_title": ("text", "character varying"),
        "cp_givenname": ("text", "character varying"), "cp_name": ("text", "character varying"),
        "cp_gender": ("character", "text", "character varying"), "cp_abteilung": ("text", "character varying"),
        "cp_position": ("text", "character varying"), "cp_phone1": ("text", "character varying"),
        "cp_mobile1": ("text", "character varying"), "cp_fax": ("text", "character varying"),
        "itime": ("timestamp without time zone",), "mtime": ("timestamp without time zone",),
    },
    "customer": {
        "id": ("integer",), "name": ("text", "character varying"), "customernumber": ("text", "character varying"),
        "department_1": ("text", "character varying"), "street": ("text", "character varying"),
        "zipcode": ("text", "character varying"), "city": ("text", "character varying"),
        "phone": ("text", "character varying"), "fax": ("text", "character varying"),
        "homepage": ("text", "character varying"), "email": ("text", "character varying"),
        "notes": ("text", "character varying"), "gln": ("text", "character varying"), "obsolete": ("boolean",),
        "country_id": ("integer",), "itime": ("timestamp without time zone",),
        "mtime": ("timestamp without time zone",),
    },
    "customer_contacts": {"customer_id": ("integer",), "contact_id": ("integer",), "main": ("boolean",)},
    "countries": {"id": ("integer",), "description_en": ("text", "character varying")},
    "custom_variable_configs": {"id": ("integer",), "default_value": ("text",)},
    "custom_variables": {
        "config_id": ("integer",), "trans_id": ("integer",), "bool_value": ("boolean",), "sub_module": ("text",),
    },
}

SYNC_TABLES = ("contacts", "customer", "customer_contacts", "custom_variables", "custom_variable_configs", "countries")

# Characters that OTRS's search-expression parser treats as operators, and the
# separators of UserCustomerIDs: such customer numbers cannot be searched exactly.
BAD_NUMBER_PATTERN = r"[[:space:]+*!&|()\"';,]|^-"

COLUMNS_SQL = """
SELECT table_name, column_name, data_type FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = ANY(%(tables)s)
"""
TRIGGERS_SQL = """
SELECT c.relname, count(*) FILTER (WHERE t.tgenabled <> 'D')
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND t.tgname LIKE 'kivi_otrs_sync_%%'
GROUP BY c.relname
"""
VIEWS_SQL = "SELECT table_name FROM information_schema.views WHERE table_schema = 'kivi_otrs'"
STATE_SQL = "SELECT key, value FROM kivi_otrs.install_state"
SYNC_SQL = "SELECT stale, last_error, last_error_at FROM kivi_otrs.sync_state"
# Trigram indexes grown well beyond their freshly built size per row answer searches several times slower.
INDEX_GROWTH = 1.3
ROLE_SQL = "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %(role)s"
ROLE_PUBLIC_READ_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
  AND has_table_privilege(%(role)s, c.oid, 'SELECT')
ORDER BY 1 LIMIT 10
"""
# Every column but change_time: the mirror keeps the time of the last save that changed
# something OTRS shows, while kivitendo's mtime moves with every save (also of columns
# OTRS never sees, which the sync trigger ignores). The customer users' searched and listed
# fields, (migration 0008) the shown-only fields of every contact and customer, and the companies.
MIRRORED = {
    "kivi_otrs.customer_user": (
        "kivi_otrs.customer_user_rows(NULL)",
        "login, cp_email, customernumber, customer_ids, cp_givenname, cp_name, name, cp_valid_id, create_time, "
        "search_text, cp_id, customer_db_id, contact_ids",
    ),
    "kivi_otrs.contact_login": (
        "kivi_otrs.contact_login_rows(NULL)",
        "cp_id, login, cp_title, gender, department, position, cp_phone1, cp_mobile1, cp_fax",
    ),
    "kivi_otrs.customer_number": (
        "kivi_otrs.customer_number_rows(NULL)",
        "customer_db_id, number, street, zipcode, city, country, phone, fax, homepage, gln",
    ),
    "kivi_otrs.customer_company": (
        "kivi_otrs.customer_company_rows(NULL)",
        "customer_id, name, department, street, zipcode, city, country, phone, fax, homepage, email, comments, gln, "
        "valid_id, create_time, search_text, customer_db_id",
    ),
}
MIRROR_DIFF_SQL = "SELECT " + " + ".join(
    f"(SELECT count(*) FROM ((SELECT {cols} FROM {table} EXCEPT SELECT {cols} FROM {fresh})"
    f" UNION ALL (SELECT {cols} FROM {fresh} EXCEPT SELECT {cols} FROM {table})) d)"
    for table, (fresh, cols) in MIRRORED.items()
)
LINK_DIFF_SQL = """
SELECT count(*) FROM (
    (SELECT contact_id, customer_id, main FROM kivi_otrs.contact_link
     EXCEPT SELECT contact_id, customer_id, main FROM public.customer_contacts)
    UNION ALL
    (SELECT contact_id, customer_id, main FROM public.customer_contacts
     EXCEPT SELECT contact_id, customer_id, main FROM kivi_otrs.contact_link)
) d
"""
MALFORMED_EMAIL_SQL = """
SELECT ct.cp_id, concat_ws(' ', ct.cp_givenname, ct.cp_name), ct.cp_email
FROM public.contacts ct
WHERE coalesce(btrim(ct.cp_email), '') <> '' AND kivi_otrs.login_of(ct.cp_email) IS NULL
  AND EXISTS (SELECT 1 FROM public.customer_contacts cc WHERE cc.contact_id = ct.cp_id)
ORDER BY ct.cp_id
"""
DUPLICATE_EMAIL_SQL = """
SELECT cl.login, string_agg(cl.cp_id::text, ', ' ORDER BY cl.cp_id)
FROM kivi_otrs.contact_login cl
GROUP BY cl.login HAVING count(*) > 1
ORDER BY cl.login
"""
NO_CUSTOMER_SQL = """
SELECT ct.cp_id, concat_ws(' ', ct.cp_givenname, ct.cp_name), ct.cp_email
FROM public.contacts ct
WHERE kivi_otrs.login_of(ct.cp_email) IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM public.customer_contacts cc WHERE cc.contact_id = ct.cp_id)
ORDER BY ct.cp_id
"""
SEVERAL_CUSTOMERS_SQL = """
SELECT cl.login, string_agg(DISTINCT btrim(cu.customernumber), ', ')
FROM kivi_otrs.contact_login cl
JOIN public.customer_contacts cc ON cc.contact_id = cl.cp_id
JOIN public.customer cu ON cu.id = cc.customer_id
GROUP BY cl.login HAVING count(DISTINCT cu.id) > 1
ORDER BY cl.login
"""
MISSING_NUMBER_SQL = """
SELECT cu.id, cu.name FROM public.customer cu
WHERE coalesce(btrim(cu.customernumber), '') = ''
  AND EXISTS (SELECT 1 FROM public.customer_contacts cc WHERE cc.customer_id = cu.id)
ORDER BY cu.id
"""
DUPLICATE_NUMBER_SQL = """
SELECT lower(btrim(customernumber)), string_agg(id::text || ' ' || name, ', ' ORDER BY id)
FROM public.customer WHERE coalesce(btrim(customernumber), '') <> ''
GROUP BY lower(btrim(customernumber)) HAVING count(*) > 1
ORDER BY 1
"""
ODD_NUMBER_SQL = """
SELECT id, name, customernumber FROM public.customer
WHERE coalesce(btrim(customernumber), '') <> ''
  AND (btrim(customernumber) ~ %(pattern)s OR customernumber <> btrim(customernumber))
ORDER BY id
"""

SAMPLE = 5


@dataclass
class Finding:
    severity: str  # "error" (OTRS misbehaves) or "warning" (data an admin should clean)
    check: str
    message: str
    fix: str
    examples: list[str] = field(default_factory=list)
    count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity, "check": self.check, "message": self.message, "fix": self.fix,
            "count": self.count, "examples": self.examples,
        }


def _rows(conn: psycopg.Connection[Any], query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def _installation(conn: psycopg.Connection[Any], out: list[Finding]) -> dict[str, str]:
    state = dict(_rows(conn, STATE_SQL))
    views = {r[0] for r in _rows(conn, VIEWS_SQL)}
    for view in ("otrs_customer_contacts", "otrs_customer_companies"):
        if view not in views:
            out.append(Finding("error", "views", f"view kivi_otrs.{view} is missing",
                               "run kivi-otrs views install (or kivi-otrs migrate)"))
    triggers = dict(_rows(conn, TRIGGERS_SQL))
    missing = [t for t in SYNC_TABLES if triggers.get(t, 0) < 3]
    if missing:
        out.append(Finding("error", "triggers",
                           f"sync triggers missing or disabled on public.{', public.'.join(missing)}: "
                           "kivitendo changes do not reach OTRS",
                           "run kivi-otrs views install"))
    flag_row = conn.execute(migrate.FLAG_STATE_SQL).fetchone()
    if flag_row and flag_row[0] is not None and not flag_row[1]:
        out.append(Finding("error", "flag",
                           f"the custom variable otrs_may_report_tickets (id {flag_row[0]}) was deleted in kivitendo: "
                           "no contact may report tickets",
                           "run kivi-otrs migrate (re-creates it), then tick it again for the contacts"))
    for key in config.stored_secrets(conn):
        env = config.SETTINGS[key].env
        out.append(Finding("warning", "secrets",
                           f"{key} is stored in plain text in kivi_otrs.settings, so every pg_dump of this database "
                           "carries it",
                           f"set {env}, a systemd credential {key} or '{key} = ...' in a secrets file of mode 0600 "
                           f"({config.SECRETS_FILE_ENV}), then run kivi-otrs config unset {key}"))
    stale, last_error, at = _rows(conn, SYNC_SQL)[0]
    if stale:
        out.append(Finding("error", "sync", f"the customer backend is stale since {at:%Y-%m-%d %H:%M}: {last_error}",
                           "fix the cause (see schema drift below), then run kivi-otrs refresh"))
    leftovers = [r[0] for r in _rows(conn, migrate.LEFTOVER_INDEXES_SQL)]
    if leftovers:
        out.append(Finding("warning", "search-index",
                           "an interrupted kivi-otrs reindex left a half-built index: it is never read but every "
                           "kivitendo save still writes to it", "run kivi-otrs reindex (drops it first)",
                           [f"kivi_otrs.{name}" for name in leftovers], len(leftovers)))
    built = {k.removeprefix(migrate.SEARCH_INDEX_KEY): float(v) for k, v in state.items()
             if k.startswith(migrate.SEARCH_INDEX_KEY)}
    grown = [(name, per_row / built[name]) for name, per_row in (migrate.search_index_sizes(conn) if built else [])
             if name in built and per_row > INDEX_GROWTH * built[name]]  # no size recorded: no table scans
    if grown:
        out.append(Finding("warning", "search-index",
                           "search indexes of the customer backend have grown well beyond their freshly built size "
                           "(many changes since they were built); OTRS customer searches get several times slower",
                           "run kivi-otrs reindex (does not block kivitendo or OTRS)",
                           [f"kivi_otrs.{name}: {ratio:.1f}x its size per row when built" for name, ratio in grown],
                           len(grown)))
    role = state.get("reader_role", "")
    role_row = _rows(conn, ROLE_SQL, {"role": role})
    if not role_row:
        out.append(Finding("error", "role", f"read role {role} does not exist", "run kivi-otrs migrate"))
    else:
        if role_row[0][0] or role_row[0][1]:
            out.append(Finding("error", "role", f"read role {role} can log in or is a superuser",
                               f"ALTER ROLE {role} NOLOGIN NOSUPERUSER; let OTRS log in as a member role"))
        readable = [r[0] for r in _rows(conn, ROLE_PUBLIC_READ_SQL, {"role": role})]
        if readable:
            out.append(Finding("error", "role", f"read role {role} can read kivitendo tables in public",
                               f"REVOKE SELECT ON ... FROM {role} (and from PUBLIC)", readable, len(readable)))
    return state


def _drift(conn: psycopg.Connection[Any], out: list[Finding]) -> bool:
    from . import kivitendo

    found = {(t, c): d for t, c, d in _rows(conn, COLUMNS_SQL, {"tables": list(REQUIRED_COLUMNS)})}
    with conn.transaction():
        release = kivitendo.release_of(conn)
    older = release is not None and release < kivitendo.MINIMUM
    if older:
        assert release is not None
        out.append(Finding("error", "kivitendo-version",
                           f"the kivitendo database is at release {kivitendo.label(release)}, older than the "
                           f"{kivitendo.label(kivitendo.MINIMUM)} kivi-otrs reads",
                           "upgrade kivitendo and log in once (it upgrades the database), then run kivi-otrs migrate"))
    drifted = False
    for table, columns in REQUIRED_COLUMNS.items():
        for column, types in columns.items():
            actual = found.get((table, column))
            if actual is None and older:
                drifted = True
                out.append(Finding("error", "schema-drift",
                                   f"kivitendo column public.{table}.{column} is not there yet "
                                   f"(kivitendo {kivitendo.label(kivitendo.MINIMUM)} adds it)",
                                   "upgrade kivitendo and log in once, then run kivi-otrs migrate"))
            elif actual is None:
                drifted = True
                out.append(Finding("error", "schema-drift", f"kivitendo column public.{table}.{column} is gone",
                                   "upgrade kivi-otrs to a release for this kivitendo version, then kivi-otrs migrate"))
            elif actual not in types:
                drifted = True
                out.append(Finding("error", "schema-drift",
                                   f"public.{table}.{column} is now {actual} (kivi-otrs reads {types[0]})",
                                   "upgrade kivi-otrs to a release for this kivitendo version, then kivi-otrs migrate"))
    if not drifted:
        try:
            with conn.transaction():
                diff = _rows(conn, MIRROR_DIFF_SQL)[0][0] + _rows(conn, LINK_DIFF_SQL)[0][0]
        except psycopg.Error as exc:
            out.append(Finding("error", "schema-drift",
                               f"the customer backend cannot be computed: {str(exc).strip().splitlines()[0]}",
                               "upgrade kivi-otrs to a release for this kivitendo version, then kivi-otrs migrate"))
            return True
        if diff:
            out.append(Finding("error", "sync", f"{diff} mirrored rows differ from kivitendo",
                               "run kivi-otrs refresh; if it comes back, check that the sync triggers are enabled",
                               count=diff))
    return drifted


def _data(conn: psycopg.Connection[Any], out: list[Finding]) -> None:
    checks: list[tuple[str, str, str, dict[str, Any] | None, str, str, Callable[[tuple[Any, ...]], str]]] = [
        ("error", "email", MALFORMED_EMAIL_SQL, None, "contacts with a malformed e-mail are not OTRS customer users",
         "correct the e-mail in kivitendo (contact form)", lambda r: f"contact {r[0]} {r[1]}: {r[2]!r}"),
        ("warning", "email", DUPLICATE_EMAIL_SQL, None,
         "e-mails used by several contacts are merged into one OTRS login (primary contact wins)",
         "give each person their own e-mail, or accept the merge", lambda r: f"{r[0]}: contacts {r[1]}"),
        ("warning", "contact", NO_CUSTOMER_SQL, None,
         "contacts without customer are not OTRS customer users (no CustomerID)",
         "link the contact to a customer in kivitendo", lambda r: f"contact {r[0]} {r[1]} <{r[2]}>"),
        ("warning", "contact", SEVERAL_CUSTOMERS_SQL, None,
         "e-mails at several customers: OTRS gets the primary customer as CustomerID, the others as UserCustomerIDs",
         "check that this is intended", lambda r: f"{r[0]}: {r[1]}"),
        ("error", "customernumber", MISSING_NUMBER_SQL, None,
         "customers with contacts but no customer number are not OTRS companies",
         "give the customer a customer number in kivitendo", lambda r: f"customer {r[0]} {r[1]}"),
        ("error", "customernumber", DUPLICATE_NUMBER_SQL, None,
         "customer numbers used more than once (OTRS compares case-insensitively): only one customer gets tickets",
         "make the customer numbers unique in kivitendo", lambda r: f"{r[0]}: {r[1]}"),
        ("warning", "customernumber", ODD_NUMBER_SQL, {"pattern": BAD_NUMBER_PATTERN},
         "customer numbers with spaces or characters OTRS's search treats as operators or list separators",
         "prefer customer numbers of letters, digits and inner dashes; kivi-otrs billing still matches them exactly",
         lambda r: f"customer {r[0]} {r[1]}: {r[2]!r}"),
    ]
    from .reports import COPIES_SQL, OVERBILLED_SQL, TIED_BY_NUMBER_SQL

    checks.append(("error", "ledger", OVERBILLED_SQL, None,
                   "tickets billed beyond their accounted time (positions saved before kivi-otrs 0.2 refused copies)",
                   "delete the duplicate position in kivitendo; the ledger releases it",
                   lambda r: f"ticket {r[0]} ({r[1]}): {r[2]} of {r[3]} min on {r[4]}"))
    checks.append(("error", "ledger", COPIES_SQL, None,
                   "ticket positions copied into another sales order (saved before kivi-otrs 0.2 refused copies)",
                   "remove the copied position from the second order; the ticket stays billed on the first",
                   lambda r: f"ticket {r[0]} ({r[1]}): billed on {r[2]}, copy on {r[3]}"))
    checks.append(("warning", "ledger", TIED_BY_NUMBER_SQL, None,
                   "ticket positions saved without their marker (an editor dropped it); tied by the ticket number",
                   "nothing to do; check the position text if the article or quantity was changed",
                   lambda r: f"ticket {r[0]} ({r[1]}) on {r[2]}"))
    for severity, check, query, params, message, fix, fmt in checks:
        try:
            with conn.transaction():
                rows = _rows(conn, query, params)
        except psycopg.Error:
            continue  # reported as schema drift
        if rows:
            out.append(Finding(severity, check, message, fix, [fmt(r) for r in rows[:SAMPLE]], len(rows)))


def diagnose(dsn: str) -> list[Finding]:
    """All findings for one database, most important first."""
    from . import db

    out: list[Finding] = []
    with db.connect(dsn) as conn:
        if not conn.execute("SELECT to_regclass('kivi_otrs.install_state')").fetchone()[0]:  # type: ignore[index]
            return [Finding("error", "install", "kivi-otrs is not installed in this database", "run kivi-otrs migrate")]
        pending = [m for m in migrate.available_ids() if m not in migrate.applied_ids(dsn)]
        if pending:
            out.append(Finding("error", "install", f"migrations not applied: {', '.join(pending)}",
                               "run kivi-otrs migrate"))
        _installation(conn, out)
        _drift(conn, out)
        _data(conn, out)
    order = {"error": 0, "warning": 1}
    return sorted(out, key=lambda f: order[f.severity])
