"""Benchmark: OTRS customer search and login lookup on kivi-otrs' view vs the seed prototype view.

Generates a kivitendo-shaped dataset (default 100k customers, 500k contacts) in a
throwaway PostgreSQL (or --dsn), installs kivi-otrs, and runs the SQL OTRS issues
against both our view and the seed prototype's view adapted to kivitendo 4.1 (a plain
join, no extra indexes), same data, same run. Prints p50/p95 per query kind and the
ratio baseline/ours. Also measures what our live sync adds to a kivitendo contact save.

    python bench/bench_customer_backend.py                 # full size, ~3-5 minutes
    python bench/bench_customer_backend.py --customers 10000 --contacts 50000
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import psycopg

from kivi_otrs import migrate
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.sandbox import LocalCluster

GENERATE = """
INSERT INTO public.customer (id, name, customernumber, street, zipcode, city, taxzone_id, currency_id, country_id,
                             obsolete)
SELECT 100000000 + i,
       (ARRAY['Müller','Schmidt','Schneider','Fischer','Weber','Meyer','Wagner','Becker','Schulz','Hoffmann',
              'Media','Saturn','Bäcker','Größer','Technik','Service','Handel','Logistik','Bau','Energie'])[1 + i % 20]
       || ' ' || (ARRAY['GmbH','AG','KG','GmbH & Co. KG','e.K.','OHG'])[1 + (i / 20) % 6] || ' ' || i,
       (1000000 + i)::text, 'Straße ' || i, lpad((i % 99999)::text, 5, '0'),
       (ARRAY['Berlin','München','Köln','Hamburg','Wien','Zürich'])[1 + i % 6],
       (SELECT min(id) FROM public.tax_zones), 1, 1 + i % 5, i % 50 = 0
FROM generate_series(1, %(customers)s) i;

INSERT INTO public.contacts (cp_id, cp_givenname, cp_name, cp_email, cp_phone1, cp_gender)
SELECT 200000000 + i,
       (ARRAY['Anna','Bernd','Jürgen','Zoë','Hans','Olga','Lea','Otto','Maria','Peter'])[1 + i % 10],
       (ARRAY['Meyer','Schulz','Größer','Åström','Kaiser','König','Lehmann','Krüger','Wolf','Neumann'])[1 + (i / 10) % 10]
       || i,
       CASE WHEN i % 97 = 0 THEN 'broken-' || i ELSE 'user' || i || '@firma' || (i % 1000) || '.example' END,
       '+49 30 ' || i, CASE WHEN i % 2 = 0 THEN 'm' ELSE 'f' END
FROM generate_series(1, %(contacts)s) i;

INSERT INTO public.customer_contacts (customer_id, contact_id, main)
SELECT 100000000 + 1 + (i % %(customers)s), 200000000 + i, false FROM generate_series(1, %(contacts)s) i;

INSERT INTO public.customer_contacts (customer_id, contact_id, main)
SELECT 100000000 + 1 + ((i + 7) % %(customers)s), 200000000 + i, false
FROM generate_series(1, %(contacts)s) i WHERE i % 10 = 0;
"""

FLAGS = """
INSERT INTO public.custom_variables (config_id, trans_id, bool_value)
SELECT (SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id'), 200000000 + i, true
FROM generate_series(1, %(contacts)s) i WHERE i % 3 <> 0
"""

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

OURS_SEARCH = ("SELECT login FROM kivi_otrs.otrs_customer_contacts "
               "WHERE (LOWER(search_text) LIKE LOWER(%s)) AND cp_valid_id IN (1) LIMIT 250")
SEED_SEARCH = ("SELECT cp_email FROM public.bench_seed_view WHERE (LOWER(cp_givenname) LIKE LOWER(%s) "
               "OR LOWER(cp_name) LIKE LOWER(%s) OR LOWER(cp_email) LIKE LOWER(%s) "
               "OR LOWER(customernumber) LIKE LOWER(%s) OR LOWER(name) LIKE LOWER(%s)) AND cp_valid_id IN (1) LIMIT 250")
OURS_LOGIN = "SELECT * FROM kivi_otrs.otrs_customer_contacts WHERE LOWER(login) = LOWER(%s) LIMIT 1"
SEED_LOGIN = "SELECT * FROM public.bench_seed_view WHERE LOWER(cp_email) = LOWER(%s) LIMIT 1"


def timed(conn: psycopg.Connection[Any], query: str, params_list: list[tuple[str, ...]]) -> list[float]:
    samples = []
    for params in params_list:
        start = time.perf_counter()
        cur = conn.execute(query, params)
        if cur.description is not None:
            cur.fetchall()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


def report(name: str, ours: list[float], base: list[float], target_ms: float) -> None:
    o95, b95 = p(ours, 95), p(base, 95)
    print(f"{name:<14} ours p50 {p(ours, 50):8.3f} ms  p95 {o95:8.3f} ms | seed view p50 {p(base, 50):9.3f} ms  "
          f"p95 {b95:9.3f} ms | ratio p95 {b95 / o95:8.1f}x | target p95 < {target_ms} ms: "
          f"{'met' if o95 < target_ms else 'NOT met'}")


def run(dsn: str, customers: int, contacts: int, queries: int, seed: int) -> None:
    rnd = random.Random(seed)
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_kivitendo(conn, with_demo_data=False)
        t0 = time.perf_counter()
        conn.execute(GENERATE.replace("%(customers)s", str(customers)).replace("%(contacts)s", str(contacts)).encode())
        print(f"generated {customers} customers, {contacts} contacts in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    migrate.migrate(dsn)
    print(f"kivi-otrs migrate (install + full build of the backend) took {time.perf_counter() - t0:.1f} s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute(FLAGS.replace("%(contacts)s", str(contacts)).encode())
        print(f"set the flag on {contacts * 2 // 3} contacts through the live triggers in {time.perf_counter() - t0:.1f} s")
        stale = conn.execute("SELECT stale, last_error FROM kivi_otrs.sync_state").fetchone()
        if stale and stale[0]:
            raise SystemExit(f"the live sync failed during the bench: {stale[1]}")
        conn.execute(SEED_VIEW)
        conn.execute("ANALYZE")
        rows = conn.execute("SELECT count(*) FROM kivi_otrs.otrs_customer_contacts").fetchone()
        print(f"customer users: {rows[0] if rows else 0}")
        logins = [r[0] for r in conn.execute(
            "SELECT login FROM kivi_otrs.customer_user ORDER BY random() LIMIT %s", (queries,))]
        names = [r[0] for r in conn.execute(
            "SELECT cp_name FROM public.contacts ORDER BY random() LIMIT %s", (queries,))]
        terms = []
        for i in range(queries):
            kind = i % 3
            if kind == 0:  # part of a contact name
                name = names[i % len(names)]
                start = rnd.randrange(0, max(1, len(name) - 5))
                terms.append(name[start:start + 6])
            elif kind == 1:  # part of a customer number
                terms.append(str(1000000 + rnd.randrange(1, customers))[1:])
            else:  # a word of the company
                terms.append(rnd.choice(["Größer", "saturn", "logistik", "bäcker", "energie"]) + " "
                             + rnd.choice(["gmbh", "ag", "kg"]))
        cased = [login.upper() if i % 2 else login for i, login in enumerate(logins)]
        for _ in range(2):  # warm up both
            timed(conn, OURS_SEARCH, [(f"%{terms[0]}%",)])
            timed(conn, SEED_SEARCH, [(f"%{terms[0]}%",) * 5])
        ours_search = timed(conn, OURS_SEARCH, [(f"%{t}%",) for t in terms])
        slowest = sorted(zip(ours_search, terms, strict=True), reverse=True)[:3]
        print("slowest searches (ours): " + ", ".join(f"{t!r} {ms:.1f} ms" for ms, t in slowest))
        seed_n = max(10, queries // 10)
        seed_search = timed(conn, SEED_SEARCH, [(f"%{t}%",) * 5 for t in terms[:seed_n]])
        ours_login = timed(conn, OURS_LOGIN, [(x,) for x in cased])
        seed_login = timed(conn, SEED_LOGIN, [(x,) for x in cased[:seed_n]])
        print(f"queries: ours {queries} each, seed view {seed_n} each (it is slow)")
        report("search", ours_search, seed_search, 10)
        report("login lookup", ours_login, seed_login, 1)

        # What the live sync adds to a kivitendo contact save (UPDATE of one contact).
        ids = [200000000 + rnd.randrange(1, contacts) for _ in range(200)]
        with_sync = timed(conn, "UPDATE public.contacts SET cp_phone1 = cp_phone1 || '1' WHERE cp_id = %s",
                          [(str(i),) for i in ids])
    migrate.drop_views(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        without = timed(conn, "UPDATE public.contacts SET cp_phone1 = cp_phone1 || '1' WHERE cp_id = %s",
                        [(str(i),) for i in ids])
    print(f"contact save   with sync p50 {p(with_sync, 50):8.3f} ms  p95 {p(with_sync, 95):8.3f} ms | without "
          f"p50 {p(without, 50):8.3f} ms  p95 {p(without, 95):8.3f} ms | overhead p50 "
          f"{p(with_sync, 50) / p(without, 50):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dsn", help="an EMPTY database to fill (default: a throwaway local cluster)")
    args = parser.parse_args()
    if args.dsn:
        run(args.dsn, args.customers, args.contacts, args.queries, args.seed)
        return
    with LocalCluster() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        run(cluster.dsn("bench"), args.customers, args.contacts, args.queries, args.seed)


if __name__ == "__main__":
    main()
