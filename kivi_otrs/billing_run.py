"""The monthly billing run (``kivi-otrs bill``): all customers' closed tickets at once.

OTRS is asked once for the whole period (batched, see :mod:`kivi_otrs.otrs`); the
tickets are grouped by CustomerID; every kivitendo customer is then billed in its OWN
transaction: positions are claimed in the ledger and written into either the customer's
open sales order with periodic invoices (``billing.run_target = periodic-order``, rows
with recurring_billing_mode 'once') or a new draft sales order. A failure for one
customer rolls back only that customer and is reported; re-running the same period adds
nothing, because the ledger already holds every billed ticket.
"""

from __future__ import annotations

import getpass
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg

from . import config, db, positions
from .errors import KiviOtrsError
from .otrs import TicketResult, fetch_closed
from .period import Period, resolve_period
from .render import Renderer

AllTicketsFetcher = Callable[[config.OtrsSettings, Period], "list[Any] | TicketResult"]
WRITEBACK_PENDING_SQL = "SELECT count(*) FROM kivi_otrs.writeback WHERE state = 'pending'"

CUSTOMERS_SQL = """
SELECT DISTINCT ON (btrim(customernumber)) btrim(customernumber), id
FROM public.customer WHERE btrim(customernumber) = ANY(%(numbers)s)
ORDER BY btrim(customernumber), coalesce(obsolete, false), id
"""
PERIODIC_ORDER_SQL = """
SELECT oe.id FROM public.oe oe
JOIN public.periodic_invoices_configs p ON p.oe_id = oe.id AND p.active
JOIN public.customer cu ON cu.id = oe.customer_id
WHERE btrim(cu.customernumber) = %(number)s AND oe.record_type = 'sales_order' AND NOT coalesce(oe.closed, false)
ORDER BY oe.id LIMIT 1
"""
# From the ledger (index on customer_number, period_start) to the order: kivitendo has no index on
# btrim(customernumber) or oe.customer_id, so starting from oe scanned it once per customer.
MONTH_DRAFT_SQL = """
SELECT oe.id FROM kivi_otrs.ledger l
JOIN public.oe oe ON oe.id = l.oe_id
JOIN public.customer cu ON cu.id = oe.customer_id
WHERE l.customer_number = %(number)s AND l.period_start = %(first)s AND l.source = 'bill' AND l.state = 'billed'
  AND btrim(cu.customernumber) = %(number)s AND oe.record_type::text = 'sales_order' AND NOT coalesce(oe.closed, false)
ORDER BY oe.id DESC LIMIT 1
"""
# kivitendo's own numbering of sales orders: the number in defaults.sonumber, incremented with its
# prefix and zero padding kept, skipping numbers in use, under the defaults row lock (as kivitendo does).
SONUMBER_SQL = "SELECT sonumber FROM public.defaults FOR UPDATE"
SONUMBER_IN_USE_SQL = """
SELECT 1 FROM public.oe
WHERE lower(ordnumber) = lower(%(n)s) AND ordnumber = %(n)s  -- kivitendo's index is on lower(ordnumber)
  AND customer_id IS NOT NULL AND record_type::text NOT LIKE '%%quotation'
"""
SONUMBER_SET_SQL = "UPDATE public.defaults SET sonumber = %(n)s"
OBSOLETE_SQL = "SELECT coalesce(obsolete, false) FROM public.customer WHERE id = %(id)s"
NEW_ORDER_SQL = """
INSERT INTO public.oe (ordnumber, transdate, customer_id, taxzone_id, currency_id, record_type,
                       transaction_description, intnotes, amount, netamount)
SELECT %(ordnumber)s, current_date, cu.id, cu.taxzone_id, cu.currency_id, 'sales_order', %(description)s,
       %(notes)s, 0, 0
FROM public.customer cu WHERE cu.id = %(customer)s
RETURNING id
"""
ITEMS_SQL = """
INSERT INTO public.orderitems (trans_id, parts_id, description, longdescription, qty, sellprice, discount, unit,
                               position, recurring_billing_mode, price_factor)
SELECT %(oe)s, r.parts_id, r.description, r.longdescription, r.qty, coalesce(r.sellprice, p.sellprice, 0), 0, r.unit,
       (SELECT coalesce(max(position), 0) FROM public.orderitems WHERE trans_id = %(oe)s) + r.n,
       r.mode::public.items_recurring_billing_mode, 1
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(n int, parts_id int, description text, longdescription text, qty numeric,
     sellprice numeric, unit text, mode text)
JOIN public.parts p ON p.id = r.parts_id
RETURNING id, position
"""
TOTALS_SQL = """
UPDATE public.oe SET netamount = t.net, amount = t.net
FROM (SELECT sum(qty * sellprice * (1 - coalesce(discount, 0))) AS net FROM public.orderitems WHERE trans_id = %(oe)s) t
WHERE oe.id = %(oe)s
"""
AUDIT_SQL = """
INSERT INTO kivi_otrs.audit (actor, action, customer_number, oe_id, details)
VALUES (%(actor)s, %(action)s, %(customer)s, %(oe)s, %(details)s::jsonb)
"""


@dataclass
class CustomerResult:
    customer_number: str
    status: str  # billed, nothing, failed, dry-run
    ordnumber: str | None = None
    positions: int = 0
    already_billed: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    period_start: str
    period_end: str
    tickets: int
    customers: list[CustomerResult] = field(default_factory=list)
    unknown_customers: list[dict[str, Any]] = field(default_factory=list)
    writeback: dict[str, int] = field(default_factory=dict)
    skipped_tickets: list[dict[str, Any]] = field(default_factory=list)
    writeback_pending: int = 0
    writeback_error: str | None = None
    aborted: str | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds: otrs, database, writeback

    @property
    def failed(self) -> list[CustomerResult]:
        return [c for c in self.customers if c.status == "failed"]

    def as_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, default=str)

    def text(self) -> str:
        counts: defaultdict[str, int] = defaultdict(int)
        for c in self.customers:
            counts[c.status] += 1
        lines = [f"Period {self.period_start} .. {self.period_end}: {self.tickets} closed tickets, "
                 f"{len(self.customers)} customers ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})"]
        for c in self.customers:
            if c.status in ("billed", "dry-run"):
                lines.append(f"  {c.customer_number:<14} {c.positions:>4} positions -> {c.ordnumber or '(dry run)'}"
                             + (f", {len(c.skipped)} skipped" if c.skipped else "")
                             + "".join(f"; {n}" for n in c.notes))
            elif c.status == "failed":
                lines.append(f"  {c.customer_number:<14} FAILED: {c.error}")
        for u in self.unknown_customers:
            lines.append(f"  unknown CustomerID {u['customer_id']!r}: {u['tickets']} tickets, {u['minutes']} min "
                         "(not a kivitendo customer number)")
        for c in self.customers:
            for s in c.skipped:
                lines.append(f"  {c.customer_number:<14} ticket {s.get('ticket_number') or s.get('ticket_id')} "
                             f"not billed: {s['reason']}")
        for s in self.skipped_tickets:
            lines.append(f"  ticket {s.get('ticket_number') or s.get('ticket_id')} not billed: {s['reason']}")
        if self.writeback_pending:
            lines.append(f"  write-back: {self.writeback_pending} ticket update(s) queued for OTRS"
                         + (f" ({self.writeback_error})" if self.writeback_error else "")
                         + "; run kivi-otrs writeback when OTRS is reachable")
        if self.aborted:
            lines.append(f"  STOPPED: {self.aborted}")
        return "\n".join(lines) + "\n"


def fetch_all_from_otrs(settings: config.OtrsSettings, period: Period,
                        stale_filter: Callable[[list[int]], list[int]] | None = None) -> TicketResult:
    """Every customer's billable closed tickets of the period in one batched fetch, and those left out."""
    return fetch_closed(settings, None, period, stale_filter)


def next_number(current: str | None) -> str:
    """The number after ``current`` the way kivitendo counts: prefix kept, trailing digits + 1, zero padding kept."""
    current = current or ""
    match = re.fullmatch(r"(.*?)(\d+)", current, flags=re.DOTALL)
    if match is None:
        return f"{current}1"
    prefix, digits = match.groups()
    return f"{prefix}{int(digits) + 1:0{len(digits)}d}"


def next_sonumber(conn: psycopg.Connection[Any]) -> str:
    """Take the next sales order number from kivitendo's number range (defaults.sonumber) and advance it."""
    row = conn.execute(SONUMBER_SQL).fetchone()
    if row is None:
        raise KiviOtrsError("kivitendo's defaults row is missing; open System -> Mandantenkonfiguration once")
    number = next_number(row[0])
    while conn.execute(SONUMBER_IN_USE_SQL, {"n": number}).fetchone():
        number = next_number(number)
    conn.execute(SONUMBER_SET_SQL, {"n": number})
    return number


def _target_for(conn: psycopg.Connection[Any], number: str, customer_db_id: int, run_target: str, first: Any,
                period_label: str) -> tuple[positions.Target, bool]:
    if run_target == "periodic-order":
        row = conn.execute(PERIODIC_ORDER_SQL, {"number": number}).fetchone()
        if row:
            return positions.load_target(conn, order_id=row[0]), False
    # A later run for the same month adds to the month's open draft instead of a second order.
    row = conn.execute(MONTH_DRAFT_SQL, {"number": number, "first": first}).fetchone()
    if row:
        return positions.load_target(conn, order_id=row[0]), False
    row = conn.execute(NEW_ORDER_SQL, {"ordnumber": next_sonumber(conn), "customer": customer_db_id,
                                       "description": f"OTRS-Tickets {period_label}",
                                       "notes": "Entwurf aus kivi-otrs bill; beim Speichern rechnet kivitendo die Summen "
                                                "und Steuern neu"}).fetchone()
    assert row is not None
    return positions.load_target(conn, order_id=row[0]), True


def run(dsn: str, period_spec: str | None = None, date_from: Any = None, date_to: Any = None,
        customers: list[str] | None = None, dry_run: bool = False, fetch_all: AllTicketsFetcher | None = None,
        progress: Callable[[str, int, int], None] | None = None, user: str | None = None) -> RunSummary:
    """Bill every customer with billable tickets in the period; see the module docstring."""
    user = user or getpass.getuser()
    with db.connect(dsn) as conn:
        values = config.effective(conn)
        otrs_settings = config.otrs_settings(values)
        billing = positions.BillingSettings.from_values(values)
        renderer = Renderer.from_database(conn, values["billing.language"], values["billing.number_format"])
        conn.commit()
        period = resolve_period(period_spec or values["billing.period"], values["site.timezone"],
                                date_from=date_from, date_to=date_to)
        first, last = period.start.date(), (period.end - timedelta(seconds=1)).date()
        started = time.perf_counter()
        fetched: list[Any] | TicketResult
        if fetch_all is None:  # from OTRS; a stale write-back field never hides a ticket billed nowhere
            fetched = fetch_all_from_otrs(otrs_settings, period, lambda ids: positions.not_billed(conn, ids))
        else:
            fetched = fetch_all(otrs_settings, period)
        tickets, otrs_skipped = ((fetched.tickets, fetched.skipped) if isinstance(fetched, TicketResult)
                                 else (fetched, []))
        groups: dict[str, list[Any]] = defaultdict(list)
        for t in tickets:
            if customers is None or t.customer_id in customers:
                groups[t.customer_id].append(t)
        del fetched, tickets
        summary = RunSummary(first.isoformat(), last.isoformat(), sum(len(g) for g in groups.values()),
                             skipped_tickets=list(otrs_skipped))
        summary.phases["otrs"] = time.perf_counter() - started
        started = time.perf_counter()
        known = dict(conn.execute(CUSTOMERS_SQL, {"numbers": list(groups)}).fetchall())
        conn.commit()
        billable = sum(1 for n in groups if n in known)
        done = 0
        for number in sorted(groups):
            if number not in known:
                summary.unknown_customers.append({
                    "customer_id": number, "tickets": len(groups[number]),
                    "minutes": str(sum((t.minutes for t in groups[number]), Decimal(0)))})
                continue
            if progress:
                done += 1
                progress(number, done, billable)
            result = _bill_customer(conn, number, known[number], groups.pop(number), first, last, billing,
                                    renderer, values, user, dry_run)
            summary.customers.append(result)
            if conn.closed or conn.broken:
                summary.phases["database"] = time.perf_counter() - started
                result.error = "lost the database connection"
                billed = sum(1 for c in summary.customers if c.status == "billed")
                summary.aborted = (f"lost the database connection after {len(summary.customers) - 1} customer(s) "
                                   f"({billed} billed); run kivi-otrs bill again: it bills only what is missing")
                return summary
        summary.phases["database"] = time.perf_counter() - started
        if values.get("writeback.enabled") and not dry_run:
            from .writeback import process

            started = time.perf_counter()
            try:
                summary.writeback = process(conn, otrs_settings, values["writeback.field"])
            except KiviOtrsError as exc:
                summary.writeback_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            summary.writeback_pending = int(conn.execute(WRITEBACK_PENDING_SQL).fetchone()[0])  # type: ignore[index]
            conn.commit()
            summary.phases["writeback"] = time.perf_counter() - started
    return summary


def _bill_customer(conn: psycopg.Connection[Any], number: str, customer_db_id: int, tickets: list[Any], first: Any,
                   last: Any, billing: positions.BillingSettings, renderer: Renderer, values: dict[str, Any], user: str,
                   dry_run: bool) -> CustomerResult:
    result = CustomerResult(number, "nothing")
    try:
        with conn.transaction():
            if dry_run:
                target = positions.load_target(conn, customer_number=number)
                plan = positions.claim(conn, target, tickets, first, last, billing, renderer, user=user,
                                       source="bill", dry_run=True)
                result.status = "dry-run" if plan.positions else "nothing"
            else:
                target, created = _target_for(conn, number, customer_db_id, values["billing.run_target"], first,
                                              f"{first:%Y-%m}")
                if conn.execute(OBSOLETE_SQL, {"id": customer_db_id}).fetchone() == (True,):
                    result.notes.append("the customer is marked obsolete in kivitendo")
                plan = positions.claim(conn, target, tickets, first, last, billing, renderer, user=user,
                                       source="bill")
                if not plan.positions:
                    if created:
                        raise _NothingToBill
                else:
                    rows = [{"n": i, "parts_id": p["parts_id"], "description": p["description"],
                             "longdescription": p["longdescription"], "qty": item["qty"],
                             "sellprice": item["sellprice"], "unit": p["unit"],
                             "mode": p.get("recurring_billing_mode", "always")}
                            for i, (p, item) in enumerate(zip(plan.positions, plan.new, strict=True), start=1)]
                    conn.execute(ITEMS_SQL, {"oe": target.oe_id, "rows": json.dumps(rows)})
                    conn.execute(TOTALS_SQL, {"oe": target.oe_id})
                    # write-back entries are queued by the ledger trigger when the positions are tied
                    conn.execute(AUDIT_SQL, {"actor": user, "action": "bill", "customer": number, "oe": target.oe_id,
                                             "details": json.dumps({"period": [str(first), str(last)],
                                                                    "tickets": [n["ticket_number"] for n in plan.new]})})
                    result.status, result.ordnumber = "billed", target.ordnumber
            result.positions = len(plan.positions)
            result.already_billed = len(plan.billed)
            result.skipped = plan.skipped
    except _NothingToBill:
        result.status = "nothing"
    except (KiviOtrsError, psycopg.Error) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.status, result.error = "failed", db.redact(text)
    except (ArithmeticError, ValueError, TypeError, KeyError) as exc:  # one bad ticket or value: this customer only
        result.status, result.error = "failed", db.redact(f"unexpected data ({type(exc).__name__}: {exc})"[:300])
    return result


class _NothingToBill(Exception):
    """Roll back the draft order created for a customer whose tickets were all billed already."""
