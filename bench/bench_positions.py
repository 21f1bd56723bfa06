"""Benchmark: render and claim positions for many tickets in one order.

Measures kivi-otrs' claim (ticket locks, ledger lookup and the reservations in a
constant number of statements) against a baseline in the same run that makes the
same decisions and texts but locks and inserts one ticket per statement. Prints time
and SQL statements per position and the ratio.

    python bench/bench_positions.py                  # 1000 tickets
    python bench/bench_positions.py --tickets 5000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from kivi_otrs import config, migrate, positions
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.render import Renderer
from kivi_otrs.sandbox import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ticketdata import TicketData

PERIOD = (date(2026, 10, 1), date(2026, 10, 31))


class CountingCursor(psycopg.Cursor[Any]):
    statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        CountingCursor.statements += 1
        return super().execute(*args, **kwargs)


def tickets(n: int, offset: int) -> list[TicketData]:
    return [TicketData(offset + i, f"20261015{offset + i:08d}", f"Ticket {i} <Drucker & Co>", Decimal(5 + i % 90))
            for i in range(n)]


def ours(conn: psycopg.Connection[Any], target: positions.Target, batch: list[TicketData],
         bs: positions.BillingSettings) -> positions.Plan:
    return positions.claim(conn, target, batch, *PERIOD, bs, Renderer(), user="bench")  # type: ignore[arg-type]


def baseline(conn: psycopg.Connection[Any], target: positions.Target, batch: list[TicketData],
             bs: positions.BillingSettings) -> positions.Plan:
    """Same decisions and texts (dry run), then one lock and one INSERT per ticket."""
    plan = positions.claim(conn, target, batch, *PERIOD, bs, Renderer(), user="bench", dry_run=True)  # type: ignore[arg-type]
    by_number = {t.number: t for t in batch}
    with conn.transaction():
        for item in plan.new:
            ticket = by_number[item["ticket_number"]]
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('kivi_otrs.ticket:' || %s, 0))",
                         (ticket.ticket_id,))
            row = {"ticket_id": ticket.ticket_id, "ticket_number": ticket.number, "customer_number": ticket.customer_id,
                   "minutes": str(ticket.minutes), "ticket_minutes": str(ticket.minutes),
                   "billed_minutes": item["billed_minutes"], "qty": item["qty"], "unit": item["unit"],
                   "parts_id": plan.positions[0]["parts_id"], "oe_id": target.oe_id, "marker": item["marker"],
                   "period_start": PERIOD[0].isoformat(), "period_end": PERIOD[1].isoformat(),
                   "ticket_closed": None, "claimed_by": "bench", "source": "cli", "otrs_data": {}}
            conn.execute(positions.INSERT_SQL, {"rows": json.dumps([row]), "reserve": bs.reservation_minutes})
    return plan


def measure(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True, cursor_factory=CountingCursor) as conn:
        with conn.transaction():
            config.set_value(conn, "billing.default_part", "SYS-STD")
        bs = positions.BillingSettings.from_values(config.effective(conn))
        oe = conn.execute("SELECT id FROM public.oe WHERE ordnumber = 'A-2026-001'").fetchone()
        assert oe is not None
        target = positions.load_target(conn, order_id=oe[0])
        results = {}
        for name, fn, offset in (("baseline", baseline, 10_000_000), ("kivi-otrs", ours, 20_000_000)):
            batch = tickets(n, offset)
            CountingCursor.statements = 0
            start = time.perf_counter()
            plan = fn(conn, target, batch, bs)
            elapsed = time.perf_counter() - start
            assert len(plan.positions) == n, (name, plan.message())
            results[name] = (elapsed, CountingCursor.statements)
            print(f"{name:<10} {n} positions in {elapsed * 1000:8.1f} ms = {elapsed / n * 1000:.3f} ms/position, "
                  f"{CountingCursor.statements} statements = {CountingCursor.statements / n:.3f} per position")
        again_start = time.perf_counter()
        again = ours(conn, target, tickets(n, 20_000_000), bs)
        print(f"second click on the same {n} tickets: {len(again.positions)} new, {len(again.billed)} already "
              f"reserved, {(time.perf_counter() - again_start) * 1000:.1f} ms")
        (bt, bs_count), (ot, os_count) = results["baseline"], results["kivi-otrs"]
        print(f"ratio baseline/kivi-otrs: time {bt / ot:.1f}x, statements {bs_count / os_count:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1000)
    args = parser.parse_args()
    with LocalCluster() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = cluster.dsn("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_kivitendo(conn)
        migrate.migrate(dsn)
        measure(dsn, args.tickets)


if __name__ == "__main__":
    main()
