"""Benchmark: the OTRS customer backend at kivitendo scale, on the SQL real Znuny 7.1.7 sends.

Builds a kivitendo 4.1 database (the real schema dump when KIVI_OTRS_KIVITENDO_SCHEMA names
it, else the project's fixture) with set-based SQL: by default 1,000,000 contacts at 200,000
customers, 10 % of the contacts at two customers. Then, in one run:

* **Search** (agent autocomplete, company search, login and incoming-mail lookups) with the
  exact SQL Znuny's CustomerUser::DB / CustomerCompany::DB send (LOWER(col) LIKE LOWER('%t%'),
  one LIKE per word ANDed, `valid IN (1)`, LIMIT 250, literals inlined as Znuny does), for
  10 %, 50 % and 90 % of the contacts allowed to report tickets; one- and two-word terms
  from common (a legal form, a city) to rare (one customer number, one e-mail). Baseline:
  the seed prototype's view, repaired for kivitendo 4.1, on the same data.
* **kivitendo's writes** with the live mirror against the same writes without kivi-otrs
  (its triggers disabled), alternating in blocks on the same data so that load from elsewhere
  on the machine hits both alike: one-row saves of a contact (a mirrored and an unmirrored
  column), a customer, a contact-customer link and the flag; a 50,000-contact import (one
  INSERT per contact and per link, as kivitendo's CSV import); one statement updating every
  contact (an unmirrored and a mirrored column). `--writes-only` skips the searches,
  `--searches-only` the writes.

    python bench/bench_customer_backend.py                       # 1M contacts, about 15 minutes
    python bench/bench_customer_backend.py --contacts 100000 --customers 20000 --import-rows 5000
    python bench/bench_customer_backend.py --writes-only --contacts 200000 --customers 40000
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import psycopg
from psycopg import sql

from kivi_otrs import migrate
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.sandbox import LocalCluster

CUSTOMER_BASE = 100_000_000
CONTACT_BASE = 200_000_000
IMPORT_BASE = 300_000_000

GENERATE = """
INSERT INTO public.customer (id, name, customernumber, street, zipcode, city, taxzone_id, currency_id, country_id,
                             obsolete)
SELECT {cu} + i,
       (ARRAY['Müller','Schmidt','Schneider','Fischer','Weber','Meyer','Wagner','Becker','Schulz','Hoffmann',
              'Media','Saturn','Bäcker','Größer','Technik','Service','Handel','Logistik','Bau','Energie'])[1 + i % 20]
       || ' ' || (ARRAY['GmbH','AG','KG','GmbH & Co. KG','e.K.','OHG'])[1 + (i / 20) % 6] || ' ' || i,
       (1000000 + i)::text, 'Straße ' || i, lpad((i % 99999)::text, 5, '0'),
       (ARRAY['Berlin','München','Köln','Hamburg','Wien','Zürich'])[1 + i % 6],
       (SELECT min(id) FROM public.tax_zones), 1, 1 + i % 5, i % 50 = 0
FROM generate_series(1, {customers}) i;

INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email, cp_phone1, cp_gender)
SELECT {ct} + i,
       (ARRAY['Anna','Bernd','Jürgen','Zoë','Hans','Olga','Lea','Otto','Maria','Peter'])[1 + i % 10],
       (ARRAY['Meyer','Schulz','Größer','Åström','Kaiser','König','Lehmann','Krüger','Wolf','Neumann'])[1 + (i / 10) % 10]
       || i,
       CASE WHEN i % 97 = 0 THEN 'broken-' || i ELSE 'user' || i || '@firma' || (i % 1000) || '.example' END,
       '+49 30 ' || i, CASE WHEN i % 2 = 0 THEN 'm' ELSE 'f' END
FROM generate_series(1, {contacts}) i;

INSERT INTO public.customer_contacts (customer_id, contact_id, main)
SELECT {cu} + 1 + (i % {customers}), {ct} + i, i <= {customers} FROM generate_series(1, {contacts}) i;

INSERT INTO public.customer_contacts (customer_id, contact_id, main)
SELECT {cu} + 1 + ((i + 7) % {customers}), {ct} + i, false
FROM generate_series(1, {contacts}) i WHERE i % 10 = 0;

INSERT INTO public.custom_variables (config_id, trans_id, bool_value, sub_module)
SELECT {flag}, {ct} + i, (({ct} + i)::bigint * 7919) % 100 < 10, '' FROM generate_series(1, {contacts}) i;
"""
FLAG_CONFIG = """
INSERT INTO public.custom_variable_configs
    (name, description, type, module, default_value, searchable, includeable, included_by_default, sortkey, flags)
VALUES ('otrs_may_report_tickets', 'Darf Tickets melden (OTRS)', 'bool', 'Contacts', '0', true, true, false, 1, '')
RETURNING id
"""
GENERATED_SHARE = 10  # the share GENERATE ticks
SET_SHARE = "UPDATE public.custom_variables SET bool_value = (trans_id::bigint * 7919) % 100 < {pct} WHERE config_id = {flag}"

# The seed talk's view, repaired for kivitendo 4.1 (customer_contacts, countries), no indexes added.
SEED_VIEW = """
CREATE VIEW public.bench_seed_view AS
SELECT contacts.cp_title, contacts.cp_givenname, contacts.cp_name, contacts.cp_email, contacts.cp_phone1,
       contacts.cp_mobile1, 'dummy'::text AS cp_password, 1 AS cp_valid_id, customer.customernumber, customer.name,
       customer.street, customer.zipcode, customer.city, countries.description_en AS country, customer.phone,
       customer.fax, customer.homepage, customer.notes,
       CASE WHEN customer.obsolete IS NULL OR NOT customer.obsolete THEN 1 ELSE 2 END AS customer_valid_id,
       customer.itime AS create_time, customer.mtime AS change_time
FROM public.contacts
JOIN public.customer_contacts cc ON cc.contact_id = contacts.cp_id
JOIN public.customer ON customer.id = cc.customer_id
LEFT JOIN public.countries ON countries.id = customer.country_id
WHERE contacts.cp_email IS NOT NULL AND contacts.cp_email <> ''
"""
SEED_FIELDS = ["cp_givenname", "cp_name", "cp_email", "customernumber", "name"]

# Column lists as kivi-otrs' generated Znuny config maps them (kivi_otrs/otrs_config.py).
USER_COLUMNS = (
    "login, cp_email, customernumber, customer_ids, cp_title, cp_givenname, cp_name, gender, department, "
    "position, cp_phone1, cp_mobile1, cp_fax, name, street, zipcode, city, country, phone, fax, homepage, "
    "gln, cp_valid_id, create_time, change_time"
)
USER_VIEW = "kivi_otrs.otrs_customer_contacts"
COMPANY_VIEW = "kivi_otrs.otrs_customer_companies"


def znuny_like(column: str, words: list[str]) -> sql.Composed:
    """Znuny's QueryCondition for SearchCaseSensitive 0 on PostgreSQL: one LIKE per word, ANDed."""
    return sql.SQL(" AND ").join(
        sql.SQL("(LOWER({}) LIKE LOWER({}))").format(sql.SQL(column), sql.Literal(f"%{w}%")) for w in words
    )


def user_search(words: list[str]) -> sql.Composed:
    return sql.SQL("SELECT login, cp_givenname, cp_name, cp_email FROM {} WHERE {} AND cp_valid_id IN (1) LIMIT 250").format(
        sql.SQL(USER_VIEW), znuny_like("search_text", words)
    )


def seed_search(words: list[str]) -> sql.Composed:
    per_word = [sql.SQL("(") + sql.SQL(" OR ").join(znuny_like(f, [w]) for f in SEED_FIELDS) + sql.SQL(")") for w in words]
    return sql.SQL(
        "SELECT cp_email, cp_givenname, cp_name FROM public.bench_seed_view WHERE {} AND cp_valid_id IN (1) LIMIT 250"
    ).format(sql.SQL(" AND ").join(per_word))


def company_search(words: list[str]) -> sql.Composed:
    return sql.SQL("SELECT customer_id, name FROM {} WHERE {} AND valid_id IN (1) LIMIT 250").format(
        sql.SQL(COMPANY_VIEW), znuny_like("search_text", words)
    )


def seed_company_search(words: list[str]) -> sql.Composed:
    per_word = [
        sql.SQL("(") + sql.SQL(" OR ").join(znuny_like(f, [w]) for f in ["customernumber", "name"]) + sql.SQL(")") for w in words
    ]
    return sql.SQL("SELECT customernumber, name FROM public.customer WHERE {} LIMIT 250").format(sql.SQL(" AND ").join(per_word))


def login_lookup(view: str, column: str, value: str, columns: str = USER_COLUMNS) -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} WHERE LOWER({}) = LOWER({}) LIMIT 1").format(
        sql.SQL(columns), sql.SQL(view), sql.SQL(column), sql.Literal(value)
    )


def mail_lookup(view: str, column: str, value: str, valid: str, columns: str = "login") -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} WHERE LOWER({}) = LOWER({}) AND {} IN (1) LIMIT 250").format(
        sql.SQL(columns), sql.SQL(view), sql.SQL(column), sql.Literal(value), sql.SQL(valid)
    )


def timed(conn: psycopg.Connection[Any], queries: list[Any]) -> list[float]:
    samples = []
    for query in queries:
        start = time.perf_counter()
        cur = conn.execute(query)
        if cur.description is not None:
            cur.fetchall()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if len(samples) > 1 else samples[0]


ROWS: list[tuple[str, ...]] = []


def row(name: str, ours: list[float], base: list[float], target: str, met: bool, base_name: str) -> None:
    o50, o95, b50, b95 = pct(ours, 50), pct(ours, 95), pct(base, 50), pct(base, 95)
    ROWS.append(
        (
            name,
            f"{o50:.3f}",
            f"{o95:.3f}",
            f"{b50:.3f}",
            f"{b95:.3f}",
            base_name,
            f"{b95 / o95:.1f}x" if base_name in ("seed view", "before reindex") else f"{o50 / b50:.2f}x",
            target,
            "met" if met else "NOT met",
        )
    )
    print(" | ".join(ROWS[-1]), flush=True)


def search_terms(conn: psycopg.Connection[Any], rnd: random.Random, n: int, customers: int, contacts: int) -> list[list[str]]:
    """One- and two-word terms from common (every 6th row) to rare (one row), as agents type them."""
    common = ["gmbh", "Berlin", "München", "Anna", "Größer", "KG", "firma1", "Service"]
    terms: list[list[str]] = []
    for i in range(n):
        kind = i % 8
        c = rnd.randrange(1, contacts)
        cu = rnd.randrange(1, customers)
        if kind == 0:
            terms.append([rnd.choice(common)])  # common word
        elif kind == 1:
            terms.append([rnd.choice(common), rnd.choice(common)])  # two common words
        elif kind == 2:
            terms.append([f"user{c}@"])  # one e-mail
        elif kind == 3:
            terms.append([str(1000000 + cu)[2:]])  # part of a customer number
        elif kind == 4:
            terms.append([rnd.choice(["Meyer", "Åström", "Kaiser", "König"]) + str(c)[:3]])  # name prefix, mid
        elif kind == 5:
            terms.append([rnd.choice(["Zoë", "Jürgen", "Olga"]), rnd.choice(["Größer", "Krüger", "Wolf"]) + str(c)[:4]])
        elif kind == 6:
            terms.append([rnd.choice(["Saturn", "Media", "Bäcker"]), rnd.choice(["Wien", "Zürich", "ohg"])])
        else:
            terms.append(["xyzzy" + str(c)])  # finds nothing
    return terms


def bench_search(
    conn: psycopg.Connection[Any], share: int, queries: int, seed_every: int, rnd: random.Random, customers: int, contacts: int
) -> list[float]:
    terms = search_terms(conn, rnd, queries, customers, contacts)
    logins = [r[0] for r in conn.execute("SELECT login FROM kivi_otrs.customer_user TABLESAMPLE SYSTEM (1) LIMIT %s", (queries,))]
    cased = [x.upper() if i % 2 else x for i, x in enumerate(logins)]
    for words in terms[:20]:  # warm-up
        timed(conn, [user_search(words)])
    ours = timed(conn, [user_search(w) for w in terms])
    slow = sorted(zip(ours, terms, strict=True), key=lambda x: -x[0])[:3]
    print(f"  slowest searches at {share} %: " + ", ".join(f"{' '.join(t)!r} {ms:.1f} ms" for ms, t in slow))
    seed = timed(conn, [seed_search(w) for w in terms[::seed_every]])
    row(f"search, {share} % valid", ours, seed, "p95 < 3 ms", pct(ours, 95) < 3, "seed view")
    comp_terms = [t for t in terms if not t[0].startswith("user")]
    ours_c = timed(conn, [company_search(w) for w in comp_terms])
    seed_c = timed(conn, [seed_company_search(w) for w in comp_terms[::seed_every]])
    row(f"company search, {share} % valid", ours_c, seed_c, "p95 < 3 ms", pct(ours_c, 95) < 3, "seed view")
    ours_l = timed(conn, [login_lookup(USER_VIEW, "login", x) for x in cased])
    seed_l = timed(conn, [login_lookup("public.bench_seed_view", "cp_email", x, "*") for x in cased[::seed_every]])
    row(f"login lookup, {share} % valid", ours_l, seed_l, "p95 < 0.5 ms", pct(ours_l, 95) < 0.5, "seed view")
    ours_m = timed(conn, [mail_lookup(USER_VIEW, "cp_email", x, "cp_valid_id") for x in cased])
    seed_m = timed(
        conn, [mail_lookup("public.bench_seed_view", "cp_email", x, "cp_valid_id", "cp_email") for x in cased[::seed_every]]
    )
    row(f"mail lookup, {share} % valid", ours_m, seed_m, "p95 < 0.5 ms", pct(ours_m, 95) < 0.5, "seed view")
    return ours


# One-row saves as kivitendo issues them (mtime is set by kivitendo's own BEFORE trigger).
def write_cases(rnd: random.Random, customers: int, contacts: int, n: int, flag: int, base: int) -> dict[str, list[Any]]:
    ct = [CONTACT_BASE + rnd.randrange(1, contacts) for _ in range(n)]
    cu = [CUSTOMER_BASE + rnd.randrange(1, customers) for _ in range(n)]
    new_ids = [base + 900_000 + i for i in range(n)]
    return {
        "save contact (UPDATE contacts, 1 row)": [
            sql.SQL("UPDATE public.contacts SET cp_phone1 = {}, cp_givenname = cp_givenname WHERE cp_id = {}").format(
                sql.Literal(f"+49 {rnd.randrange(10**8)}"), sql.Literal(i)
            )
            for i in ct
        ],
        "save contact, unmirrored column (UPDATE contacts, 1 row)": [
            sql.SQL("UPDATE public.contacts SET cp_phone2 = {} WHERE cp_id = {}").format(
                sql.Literal(f"+49 {rnd.randrange(10**8)}"), sql.Literal(i)
            )
            for i in ct
        ],
        "save customer (UPDATE customer, 1 row)": [
            sql.SQL("UPDATE public.customer SET phone = {} WHERE id = {}").format(
                sql.Literal(f"+49 {rnd.randrange(10**8)}"), sql.Literal(i)
            )
            for i in cu
        ],
        "tick flag (UPDATE custom_variables, 1 row)": [
            sql.SQL(
                "UPDATE public.custom_variables SET bool_value = NOT bool_value "
                "WHERE config_id = {} AND trans_id = {} AND sub_module = ''"
            ).format(sql.Literal(flag), sql.Literal(i))
            for i in ct
        ],
        "new contact (INSERT contacts, 1 row)": [
            sql.SQL(
                "INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email) VALUES ({}, 'Neu', 'Kontakt', {})"
            ).format(sql.Literal(i), sql.Literal(f"neu{i}@example.org"))
            for i in new_ids
        ],
        "link contact (INSERT customer_contacts, 1 row)": [
            sql.SQL("INSERT INTO public.customer_contacts (customer_id, contact_id) VALUES ({}, {})").format(
                sql.Literal(c), sql.Literal(i)
            )
            for c, i in zip(cu, new_ids, strict=True)
        ],
    }


def import_statements(base: int, rows: int, customers: int) -> list[Any]:
    out: list[Any] = []
    for i in range(rows):
        cid = base + i
        out.append(
            sql.SQL(
                "INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email, cp_phone1) "
                "VALUES ({}, 'Imp', {}, {}, '+49 40 1')"
            ).format(sql.Literal(cid), sql.Literal(f"Import{i}"), sql.Literal(f"imp{cid}@import.example"))
        )
        out.append(
            sql.SQL("INSERT INTO public.customer_contacts (customer_id, contact_id) VALUES ({}, {})").format(
                sql.Literal(CUSTOMER_BASE + 1 + i % customers), sql.Literal(cid)
            )
        )
    return out


BULKS = {
    "bulk": "UPDATE public.contacts SET cp_phone2 = coalesce(cp_phone2, '') || '9'",
    "bulk mirrored": "UPDATE public.contacts SET cp_phone1 = coalesce(cp_phone1, '') || '9'",
}
SYNC_TABLES = ["contacts", "customer", "customer_contacts", "custom_variables", "custom_variable_configs", "countries"]


def set_sync(conn: psycopg.Connection[Any], on: bool) -> None:
    """kivi-otrs' triggers on or off: "without kivi-otrs" measured on the same data, in the same session."""
    for table in SYNC_TABLES:
        for event in ("insert", "update", "delete"):
            conn.execute(
                sql.SQL("ALTER TABLE public.{} {} TRIGGER {}").format(
                    sql.Identifier(table), sql.SQL("ENABLE" if on else "DISABLE"), sql.Identifier(f"kivi_otrs_sync_{event}")
                )
            )


WARM_UP = 6  # statements per block before timing (see bench_writes)


def bench_writes(dsn: str, args: argparse.Namespace, flag: int, base: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every write case with the live mirror and without it (triggers disabled), interleaved in blocks.

    The machine is shared: blocks of each case alternate between the two modes (``--rounds``), so
    load from elsewhere hits both alike. The import alternates in chunks, each its own transaction.
    Returns (with, without); new rows get ids from base on.
    """
    ours: dict[str, Any] = {}
    without: dict[str, Any] = {}
    rnd = random.Random(args.seed)
    rounds = args.rounds
    with psycopg.connect(dsn, autocommit=True) as conn:
        per_block = max(WARM_UP + 1, args.writes // rounds + WARM_UP)
        cases = write_cases(rnd, args.customers, args.contacts, 2 * rounds * per_block, flag, base)
        for r in range(rounds):
            for on in (True, False):
                set_sync(conn, on)
                offset = (2 * r + (0 if on else 1)) * per_block
                for name, stmts in cases.items():
                    block = stmts[offset : offset + per_block]
                    # The first WARM_UP of each block warm up: switching the triggers is DDL and throws away the
                    # session's plans, and PostgreSQL plans a statement anew for its first five executions
                    # before it keeps a generic plan; kivitendo's FastCGI processes keep their session and its
                    # plans. Inserts use fresh ids.
                    timed(conn, block[:WARM_UP])
                    (ours if on else without).setdefault(name, []).extend(timed(conn, block[WARM_UP:]))
        chunks = 2 * rounds
        rows = args.import_rows // chunks
        stmts = import_statements(base + 2_000_000, rows * chunks, args.customers)
        for c in range(chunks):
            on = c % 2 == 0
            set_sync(conn, on)
            start = time.perf_counter()
            with conn.transaction():
                timed(conn, stmts[2 * rows * c : 2 * rows * (c + 1)])
            key = "import"
            target = ours if on else without
            target[key] = [target.get(key, [0.0])[0] + (time.perf_counter() - start) * 1000]
        for key, statement in {} if args.skip_bulk else BULKS.items():
            for on in (True, False):
                set_sync(conn, on)
                start = time.perf_counter()
                conn.execute(statement)
                (ours if on else without)[key] = [(time.perf_counter() - start) * 1000]
        set_sync(conn, True)
        state = conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone()
        if state and state[0]:
            raise SystemExit(f"the live sync failed during the write bench: {state[1]}")
    return ours, without


def build(dsn: str, args: argparse.Namespace) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_kivitendo(conn, with_demo_data=False)
        t0 = time.perf_counter()
        flag = conn.execute(FLAG_CONFIG).fetchone()[0]  # type: ignore[index]
        conn.execute(
            GENERATE.format(
                cu=CUSTOMER_BASE, ct=CONTACT_BASE, customers=args.customers, contacts=args.contacts, flag=flag
            ).encode()
        )
        conn.execute("ANALYZE")
        print(f"generated {args.customers} customers, {args.contacts} contacts in {time.perf_counter() - t0:.1f} s", flush=True)
    return int(flag)


def run(dsn: str, args: argparse.Namespace) -> None:
    flag = build(dsn, args)
    t0 = time.perf_counter()
    migrate.migrate(dsn)  # adopts the flag created above
    print(f"kivi-otrs migrate (install + full build of the backend) took {time.perf_counter() - t0:.1f} s", flush=True)
    rnd = random.Random(args.seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SEED_VIEW)
        for share in [] if args.writes_only else args.shares:
            t0 = time.perf_counter()
            if share != GENERATED_SHARE:
                conn.execute(SET_SHARE.format(pct=share, flag=flag))
            conn.execute("VACUUM ANALYZE kivi_otrs.customer_user")
            state = conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone()
            if state and state[0]:
                raise SystemExit(f"the live sync failed during the bench: {state[1]}")
            valid = conn.execute(
                "SELECT round(100.0 * avg((cp_valid_id = 1)::int), 1), count(*) FROM kivi_otrs.customer_user"
            ).fetchone()
            print(
                f"flag set for {share} % of contacts through the live triggers in {time.perf_counter() - t0:.1f} s;"
                f" {valid[0]} % of {valid[1]} customer users valid",
                flush=True,
            )  # type: ignore[index]
            # The flag change above went row by row through the live triggers into the trigram indexes:
            # search as the triggers left them, then after kivi-otrs reindex (what doctor advises).
            grown = timed(conn, [user_search(w) for w in search_terms(conn, random.Random(share), args.queries,
                                                                      args.customers, args.contacts)])
            t0 = time.perf_counter()
            migrate.reindex(dsn)
            print(f"kivi-otrs reindex took {time.perf_counter() - t0:.1f} s", flush=True)
            ours = bench_search(conn, share, args.queries, args.seed_every, rnd, args.customers, args.contacts)
            row(f"search, {share} % valid, after reindex", ours, grown, "", True, "before reindex")
    with_sync, without = ({}, {}) if args.searches_only else bench_writes(dsn, args, flag, IMPORT_BASE)
    for name in with_sync:
        if name == "import":
            label, limit = f"import {args.import_rows} contacts (2 statements each)", 2.0
        elif name == "bulk":
            label, limit = f"UPDATE all {args.contacts} contacts, unmirrored column (1 statement)", 3.0
        elif name == "bulk mirrored":
            label, limit = f"UPDATE all {args.contacts} contacts, cp_phone1 (1 statement)", 3.0
        else:
            label, limit = name, 2.0
        ratio = pct(with_sync[name], 50) / pct(without[name], 50)
        row(label, with_sync[name], without[name], f"<= {limit:g}x", ratio <= limit, "without kivi-otrs")
    print()
    print("| case | ours p50 ms | ours p95 ms | baseline p50 ms | baseline p95 ms | baseline | ratio | target | |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    print("ratio: seed view (or before reindex) p95 / ours p95 for reads; ours p50 / without p50 for writes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=400, help="searches per valid share")
    parser.add_argument("--seed-every", type=int, default=20, help="run every n-th query on the slow seed view too")
    parser.add_argument("--shares", type=int, nargs="+", default=[10, 50, 90])
    parser.add_argument("--writes", type=int, default=205, help="one-row saves per kind")
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=10, help="blocks per mode the writes alternate in")
    parser.add_argument("--writes-only", action="store_true", help="skip the searches: only kivitendo's writes")
    parser.add_argument("--searches-only", action="store_true", help="skip kivitendo's writes: only the searches")
    parser.add_argument("--skip-bulk", action="store_true", help="skip the statements updating every contact")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dsn", help="an EMPTY database to fill (default: a throwaway local cluster)")
    args = parser.parse_args()
    if args.dsn:
        run(args.dsn, args)
        return
    with LocalCluster() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        run(cluster.dsn("bench"), args)


if __name__ == "__main__":
    main()
