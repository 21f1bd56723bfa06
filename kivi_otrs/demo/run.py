"""``make demo``: the whole job on a throwaway PostgreSQL and the local OTRS stand-in.

Nothing outside a temporary directory is touched: a private PostgreSQL cluster is
started (as the ``postgres`` system user when run as root), a kivitendo 4.1 schema
with demo customers is loaded, kivi-otrs is installed, the OTRS stand-in serves the
demo tickets, and the real ``kivi-otrs`` commands run against both. Everything is
stopped and removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from decimal import Decimal
from typing import Any

import psycopg
import requests
from psycopg import sql

from .. import cli
from ..endpoint import EndpointServer, load_client
from ..otrs_double import OtrsDouble
from ..sandbox import LocalCluster
from . import load_kivitendo

MAY_REPORT = (9101, 9102, 9103, 9104, 9107, 9109)  # ticked in kivitendo's contact form


def step(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(3, 86 - len(title)), flush=True)


def kivi(*args: str) -> int:
    """Run one real ``kivi-otrs`` command in-process (the DSN comes from $KIVI_OTRS_DSN)."""
    print(f"$ kivi-otrs {' '.join(args)}", flush=True)
    try:
        cli.main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        print(f"(exit status {code})")
        return code
    finally:
        sys.stdout.flush()
    return 0


def table(conn: psycopg.Connection[Any], query: str) -> None:
    cur = conn.execute(query)
    names = [d.name for d in cur.description or []]
    rows = [["" if v is None else str(v) for v in row] for row in cur.fetchall()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def tick_flags(conn: psycopg.Connection[Any]) -> None:
    """What kivitendo's contact form writes when "Darf Tickets melden (OTRS)" is ticked."""
    config_id = conn.execute("SELECT id FROM public.custom_variable_configs WHERE name = 'otrs_may_report_tickets' "
                             "AND module = 'Contacts'").fetchone()
    assert config_id is not None
    for cp_id in MAY_REPORT:
        conn.execute("INSERT INTO public.custom_variables (config_id, trans_id, bool_value, sub_module) "
                     "VALUES (%s, %s, true, '')", (config_id[0], cp_id))


def save_order(conn: psycopg.Connection[Any], oe_id: int, positions: list[dict[str, Any]]) -> None:
    """What kivitendo does when the user saves the order with the rows the button added."""
    start = conn.execute("SELECT coalesce(max(position), 0) FROM public.orderitems WHERE trans_id = %s",
                         (oe_id,)).fetchone()
    assert start is not None
    for offset, p in enumerate(positions, start=1):
        qty = Decimal(p["qty_as_number"].replace(".", "").replace(",", "."))
        conn.execute(
            "INSERT INTO public.orderitems (trans_id, parts_id, description, longdescription, qty, unit, sellprice, "
            "position, recurring_billing_mode) SELECT %s, p.id, %s, %s, %s, %s, p.sellprice, %s, %s "
            "FROM public.parts p WHERE p.id = %s",
            (oe_id, p["description"], p["longdescription"], qty, p["unit"], start[0] + offset,
             p.get("recurring_billing_mode", "always"), p["parts_id"]))


def main() -> None:
    print("kivi-otrs demo: throwaway PostgreSQL + demo kivitendo data + local OTRS stand-in", flush=True)
    with LocalCluster() as cluster, OtrsDouble() as otrs:
        admin = cluster.dsn("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("kivitendo_demo")))
        dsn = cluster.dsn("kivitendo_demo")
        with psycopg.connect(dsn) as conn:
            source = load_kivitendo(conn)
        print(f"PostgreSQL on port {cluster.port}; database kivitendo_demo loaded from the {source}")
        os.environ["KIVI_OTRS_DSN"] = dsn
        tickets = otrs.seed_demo()
        os.environ["KIVI_OTRS_OTRS_PASSWORD"] = otrs.password
        print(f"OTRS stand-in at {otrs.base_url} with {len(tickets)} tickets")

        step("1. Install kivi-otrs into the kivitendo database")
        kivi("migrate")
        kivi("migrate")
        kivi("status")

        step("2. The customer backend OTRS reads (contacts who may report tickets)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            tick_flags(conn)
            table(conn, "SELECT login, customernumber AS customer_id, customer_ids, cp_givenname AS first_name, "
                        "cp_name AS last_name, cp_valid_id AS valid FROM kivi_otrs.otrs_customer_contacts ORDER BY login")
            print()
            table(conn, "SELECT customer_id, name, city, valid_id FROM kivi_otrs.otrs_customer_companies "
                        "ORDER BY customer_id")
        kivi("doctor")
        step("3. Kernel/Config/Files/ZZZKiviOtrs.pm for OTRS (reads the password from a file, holds none)")
        kivi("otrs-config", "--db-user", "otrs_kivi")

        step("4. Connect to OTRS and look at last month's closed tickets")
        kivi("config", "set", "otrs.base_url", otrs.base_url)
        kivi("config", "set", "otrs.user", otrs.user)
        kivi("config", "set", "billing.default_part", "SYS-STD")
        kivi("config", "show")
        kivi("check-otrs")
        kivi("tickets")

        step("5. The order-screen button: positions for order A-2026-001 (periodic invoices)")
        token = secrets.token_urlsafe(24)
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT id FROM public.oe WHERE ordnumber = 'A-2026-001'").fetchone()
            assert row is not None
            oe_id = int(row[0])
        server = EndpointServer([load_client(dsn, token=token)], port=0)
        server.start_background()
        print(f"kivi-otrs serve listens on {server.url} (loopback only, Bearer token required)")
        headers = {"Authorization": f"Bearer {token}", "X-Kivitendo-User": "demo"}
        plan = requests.post(f"{server.url}/positions", json={"order_id": oe_id}, headers=headers, timeout=30).json()
        print(f'POST /positions {{"order_id": {oe_id}}} ->')
        print(json.dumps({"positions": plan["positions"], "skipped": plan["preview"]["skipped"]}, ensure_ascii=False,
                         indent=2))
        with psycopg.connect(dsn, autocommit=True) as conn:
            save_order(conn, oe_id, plan["positions"])
        print("(the user saves the order in kivitendo; the positions are now billed)")
        again = requests.post(f"{server.url}/positions", json={"order_id": oe_id}, headers=headers, timeout=30).json()
        billed = again["preview"]["billed"]
        print(f"second click: {len(again['positions'])} new positions, {len(billed)} already billed"
              + (f" ({billed[0]['where']})" if billed else ""))
        server.shutdown()

        step("6. Monthly billing run for everybody else")
        kivi("bill")
        kivi("bill")
        kivi("report", "billed")
        kivi("report", "reconcile")
        print(f"\nOTRS stand-in answered {sum(otrs.calls.values())} requests: "
              + ", ".join(f"{k} {v}" for k, v in sorted(otrs.calls.items())))
    print("\nDemo finished; the throwaway PostgreSQL and the OTRS stand-in are gone.")


if __name__ == "__main__":
    main()
