"""The monthly billing run (``kivi-otrs bill``): all customers' closed tickets at once.

OTRS is asked once for the whole period (batched, see :mod:`kivi_otrs.otrs`); the
tickets are grouped by CustomerID; the kivitendo customers are then billed in chunks
(one transaction, one set-based statement per step for the whole chunk): positions are
claimed in the ledger and written into either the customer's open sales order with
periodic invoices (``billing.run_target = periodic-order``, rows with
recurring_billing_mode 'once'), the month's open draft of an earlier run, or a new draft
sales order. A chunk that fails is rolled back and its customers are billed one
transaction each, so a failure for one customer rolls back only that customer and is
reported; re-running the same period adds nothing, because the ledger already holds
every billed ticket.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg

from . import config, db, positions
from .errors import KiviOtrsError
from .otrs import OtrsClient, Ticket, TicketResult, TicketStream
from .period import Period, resolve_period
from .render import Renderer

log = logging.getLogger(__name__)

AllTicketsFetcher = Callable[[config.OtrsSettings, Period], "list[Any] | TicketResult | TicketStream"]
WRITEBACK_PENDING_SQL = "SELECT count(*) FROM kivi_otrs.writeback WHERE state = 'pending'"

CUSTOMERS_SQL = """
SELECT DISTINCT ON (btrim(customernumber)) btrim(customernumber), id, name, hourly_rate, coalesce(obsolete, false)
FROM public.customer WHERE btrim(customernumber) = ANY(%(numbers)s)
ORDER BY btrim(customernumber), coalesce(obsolete, false), id
"""
# Every statement below serves a whole chunk of customers (set-based): a monthly run of 5,000
# customers costs a few hundred statements, not 5,000 transactions of twenty each.
PERIODIC_ORDERS_SQL = """
SELECT DISTINCT ON (btrim(cu.customernumber)) btrim(cu.customernumber), oe.id
FROM public.oe oe
JOIN public.periodic_invoices_configs p ON p.oe_id = oe.id AND p.active
JOIN public.customer cu ON cu.id = oe.customer_id
WHERE btrim(cu.customernumber) = ANY(%(numbers)s) AND oe.record_type = 'sales_order' AND NOT coalesce(oe.closed, false)
ORDER BY btrim(cu.customernumber), oe.id
"""
# From the ledger (index on customer_number, period_start) to the order by primary key (LATERAL: the
# run grows oe and the ledger faster than autovacuum analyses them, and kivitendo has no index on
# btrim(customernumber) or oe.customer_id).
MONTH_DRAFTS_SQL = """
SELECT DISTINCT ON (l.customer_number) l.customer_number, oe.id FROM kivi_otrs.ledger l
CROSS JOIN LATERAL (SELECT oe.id, oe.customer_id FROM public.oe oe
                    WHERE oe.id = l.oe_id AND oe.record_type::text = 'sales_order' AND NOT coalesce(oe.closed, false)
                    OFFSET 0) oe
CROSS JOIN LATERAL (SELECT cu.customernumber FROM public.customer cu WHERE cu.id = oe.customer_id OFFSET 0) cu
WHERE l.customer_number = ANY(%(numbers)s) AND l.period_start = %(first)s AND l.source = 'bill'
  AND l.state = 'billed' AND btrim(cu.customernumber) = l.customer_number
ORDER BY l.customer_number, oe.id DESC
"""
# kivitendo's own numbering of sales orders: the number in defaults.sonumber, incremented with its
# prefix and zero padding kept, skipping numbers in use, under the defaults row lock (as kivitendo does).
SONUMBER_SQL = "SELECT sonumber FROM public.defaults FOR UPDATE"
SONUMBERS_IN_USE_SQL = """
SELECT ordnumber FROM public.oe
WHERE lower(ordnumber) = ANY(%(lower)s) AND ordnumber = ANY(%(n)s)  -- kivitendo's index is on lower(ordnumber)
  AND customer_id IS NOT NULL AND record_type::text NOT LIKE '%%quotation'
"""
SONUMBER_SET_SQL = "UPDATE public.defaults SET sonumber = %(n)s"
# The delivery date as kivitendo sets it on a new sales order ("Lieferdatum im Verkaufsauftrag
# setzen": today + the interval, moved to Monday from a weekend); kivitendo's order screen refuses to
# save a sales order without one while "warn if no delivery date" is on (its default).
NEW_ORDERS_SQL = """
INSERT INTO public.oe (ordnumber, transdate, reqdate, customer_id, taxzone_id, currency_id, record_type,
                       transaction_description, intnotes, amount, netamount)
SELECT r.ordnumber, current_date, (SELECT d.day + CASE WHEN extract(isodow FROM d.day) >= 6
                                                       THEN 8 - extract(isodow FROM d.day)::int ELSE 0 END
                                   FROM (SELECT current_date + coalesce((to_jsonb(x) ->> 'delivery_date_interval')::int, 0)
                                                AS day, (to_jsonb(x) ->> 'deliverydate_on')::boolean AS day_on
                                         FROM public.defaults x LIMIT 1) d
                                   WHERE d.day_on),
       cu.id, cu.taxzone_id, cu.currency_id, 'sales_order', %(description)s, %(notes)s, 0, 0
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(ordnumber text, customer int)
JOIN public.customer cu ON cu.id = r.customer
ORDER BY r.ordnumber
RETURNING id, customer_id, ordnumber
"""
ITEMS_SQL = """
INSERT INTO public.orderitems (trans_id, parts_id, description, longdescription, qty, sellprice, discount, unit,
                               position, recurring_billing_mode, price_factor)
SELECT r.oe, r.parts_id, r.description, r.longdescription, r.qty, coalesce(r.sellprice, p.sellprice, 0), 0, r.unit,
       coalesce(m.top, 0) + r.n, r.mode::public.items_recurring_billing_mode, 1
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(oe int, n int, parts_id int, description text, longdescription text,
     qty numeric, sellprice numeric, unit text, mode text)
JOIN public.parts p ON p.id = r.parts_id
LEFT JOIN (SELECT trans_id, max(position) AS top FROM public.orderitems WHERE trans_id = ANY(%(oes)s)
           GROUP BY trans_id) m ON m.trans_id = r.oe
ORDER BY r.oe, r.n
"""
TOTALS_SQL = """
UPDATE public.oe SET netamount = t.net, amount = t.net
FROM (SELECT trans_id, sum(qty * sellprice * (1 - coalesce(discount, 0))) AS net FROM public.orderitems
      WHERE trans_id = ANY(%(oes)s) GROUP BY trans_id) t
WHERE oe.id = t.trans_id
"""
TIED_SQL = "SELECT count(*) FROM kivi_otrs.ledger WHERE marker = ANY(%(markers)s::uuid[]) AND state = 'billed'"
AUDIT_SQL = """
INSERT INTO kivi_otrs.audit (actor, action, customer_number, oe_id, details)
SELECT %(actor)s, 'bill', r.customer, r.oe, r.details
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(customer text, oe int, details jsonb)
"""
# A chunk is one transaction; its size keeps the ticket locks well inside PostgreSQL's lock table
# (64 per connection by default) and the ledger trigger on its per-ticket lock path (<= 1000 rows).
CHUNK_CUSTOMERS = 200
CHUNK_TICKETS = 500


@dataclass(frozen=True)
class Customer:
    number: str
    db_id: int
    name: str
    hourly_rate: Decimal | None
    obsolete: bool


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


def next_number(current: str | None) -> str:
    """The number after ``current`` the way kivitendo counts: prefix kept, trailing digits + 1, zero padding kept."""
    current = current or ""
    match = re.fullmatch(r"(.*?)(\d+)", current, flags=re.DOTALL)
    if match is None:
        return f"{current}1"
    prefix, digits = match.groups()
    return f"{prefix}{int(digits) + 1:0{len(digits)}d}"


def next_sonumbers(conn: psycopg.Connection[Any], count: int) -> list[str]:
    """Take the next ``count`` sales order numbers from kivitendo's number range (defaults.sonumber)."""
    row = conn.execute(SONUMBER_SQL).fetchone()
    if row is None:
        raise KiviOtrsError("kivitendo's defaults row is missing; open System -> Mandantenkonfiguration once")
    numbers: list[str] = []
    current = row[0]
    while len(numbers) < count:
        candidates = []
        for _ in range(count - len(numbers)):
            current = next_number(current)
            candidates.append(current)
        in_use = {r[0] for r in conn.execute(SONUMBERS_IN_USE_SQL,
                                             {"n": candidates, "lower": [c.lower() for c in candidates]})}
        numbers.extend(c for c in candidates if c not in in_use)
    if numbers:
        conn.execute(SONUMBER_SET_SQL, {"n": numbers[-1]})
    return numbers


def _chunks(numbers: list[str], sizes: dict[str, int]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    tickets = 0
    for number in numbers:
        if chunks[-1] and (len(chunks[-1]) >= CHUNK_CUSTOMERS or tickets + sizes[number] > CHUNK_TICKETS):
            chunks.append([])
            tickets = 0
        chunks[-1].append(number)
        tickets += sizes[number]
    return [c for c in chunks if c]


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
        # The month's tickets go into a temporary table as they arrive (batch by batch), grouped and
        # read back chunk by chunk: memory stays flat however many tickets the month has.
        spool = _Spool(conn, customers)
        if fetch_all is None:  # from OTRS; a stale write-back field never hides a ticket billed nowhere
            with OtrsClient(otrs_settings) as client:
                found = TicketResult()
                spool.load(client.iter_closed_tickets(None, period, lambda ids: positions.not_billed(conn, ids),
                                                      found))
            otrs_skipped = found.skipped
        else:
            fetched = fetch_all(otrs_settings, period)
            if isinstance(fetched, TicketStream):
                spool.load(fetched.tickets)
                otrs_skipped = fetched.result.skipped
            elif isinstance(fetched, TicketResult):
                spool.load(fetched.tickets)
                otrs_skipped = fetched.skipped
            else:
                spool.load(fetched)
                otrs_skipped = []
            del fetched
        sizes, minutes = spool.sizes()
        summary = RunSummary(first.isoformat(), last.isoformat(), sum(sizes.values()),
                             skipped_tickets=list(otrs_skipped))
        summary.phases["otrs"] = time.perf_counter() - started
        started = time.perf_counter()
        known = {r[0]: Customer(*r) for r in conn.execute(CUSTOMERS_SQL, {"numbers": list(sizes)}).fetchall()}
        conn.commit()
        for number in sorted(sizes):
            if number not in known:
                summary.unknown_customers.append({"customer_id": number, "tickets": sizes[number],
                                                  "minutes": str(minutes[number])})
        billable = sorted(n for n in sizes if n in known)
        job = _Job(first, last, billing, renderer, values["billing.run_target"], user, dry_run)
        for chunk in _chunks(billable, sizes):
            lost = 1  # customers a lost connection took with it (the one being billed, or the whole chunk)
            try:
                groups = spool.tickets(chunk)
                results = _bill_chunk(conn, [(known[n], groups[n]) for n in chunk], job)
            except Exception as exc:  # any failure: bill the chunk's customers one by one
                line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                log.warning("billing chunk of %d customers (%s .. %s) failed (%s%s); billing them one by one",
                            len(chunk), chunk[0], chunk[-1], type(exc).__name__, db.redact(f": {line}" if line else ""))
                if not (conn.closed or conn.broken):
                    results = []
                    for n in chunk:
                        results.append(_bill_one(conn, known[n], groups[n], job))
                        if conn.closed or conn.broken:
                            break
                elif isinstance(exc, psycopg.Error):  # none of the chunk was billed
                    results = [CustomerResult(n, "failed", error="lost the database connection") for n in chunk]
                    lost = len(chunk)
                else:
                    raise
            summary.customers.extend(results)
            if progress:
                for r in results:
                    progress(r.customer_number, len(summary.customers), len(billable))
            if conn.closed or conn.broken:
                summary.phases["database"] = time.perf_counter() - started
                summary.customers[-1].status = "failed"
                summary.customers[-1].error = "lost the database connection"
                billed = sum(1 for c in summary.customers if c.status == "billed")
                summary.aborted = (f"lost the database connection after {len(summary.customers) - lost} customer(s) "
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


SPOOL_SQL = """
CREATE TEMP TABLE IF NOT EXISTS kivi_otrs_run_tickets (
    ticket_id bigint, number text, title text, state text, state_type text, queue text, service text, type text,
    customer_id text, customer_user text, closed timestamptz, time_units numeric, minutes numeric)
"""
SPOOL_FIELDS = ("ticket_id", "number", "title", "state", "state_type", "queue", "service", "type", "customer_id",
                "customer_user", "closed", "time_units", "minutes")


class _Spool:
    """The run's tickets in a temporary table of the run's own session (dropped with it)."""

    BATCH = 1000

    def __init__(self, conn: psycopg.Connection[Any], customers: list[str] | None) -> None:
        self.conn = conn
        self.customers = set(customers) if customers is not None else None
        try:
            conn.execute(SPOOL_SQL)
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()
            names = conn.execute(
                "SELECT format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user)"
            ).fetchone()
            conn.rollback()
            raise KiviOtrsError("kivi-otrs bill keeps the month's tickets in a temporary table, and this database "
                                f"role may not create one; {names[0] if names else 'GRANT TEMPORARY'}") from None
        conn.execute("TRUNCATE kivi_otrs_run_tickets")
        conn.commit()

    def load(self, tickets: Iterable[Any]) -> None:
        """Store the tickets a batch at a time (the source may ask the database between items)."""
        batch: list[tuple[Any, ...]] = []
        for t in tickets:
            if self.customers is None or t.customer_id in self.customers:
                batch.append(tuple(_clean(getattr(t, f, "")) for f in SPOOL_FIELDS))
            if len(batch) >= self.BATCH:
                self._write(batch)
                batch = []
        self._write(batch)
        self.conn.execute("CREATE INDEX IF NOT EXISTS kivi_otrs_run_tickets_customer "
                          "ON kivi_otrs_run_tickets (customer_id)")
        self.conn.execute("ANALYZE kivi_otrs_run_tickets")
        self.conn.commit()

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        if batch:
            with self.conn.cursor().copy(f"COPY kivi_otrs_run_tickets ({', '.join(SPOOL_FIELDS)}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
            self.conn.commit()

    def sizes(self) -> tuple[dict[str, int], dict[str, Decimal]]:
        """Tickets and minutes per CustomerID."""
        rows = self.conn.execute("SELECT customer_id, count(*), coalesce(sum(minutes), 0) FROM kivi_otrs_run_tickets "
                                 "GROUP BY customer_id").fetchall()
        self.conn.commit()
        return {r[0]: int(r[1]) for r in rows}, {r[0]: r[2] for r in rows}

    def tickets(self, numbers: list[str]) -> dict[str, list[Ticket]]:
        """The tickets of these customers (one chunk)."""
        result: dict[str, list[Ticket]] = {n: [] for n in numbers}
        rows = self.conn.execute(f"SELECT {', '.join(SPOOL_FIELDS)} FROM kivi_otrs_run_tickets "
                                 "WHERE customer_id = ANY(%(numbers)s)", {"numbers": numbers}).fetchall()
        self.conn.commit()
        for row in rows:
            ticket = Ticket(*row)
            result[ticket.customer_id].append(ticket)
        return result


def _clean(value: Any) -> Any:
    return value.replace("\x00", "") if isinstance(value, str) else value


@dataclass(frozen=True)
class _Job:
    first: Any
    last: Any
    billing: positions.BillingSettings
    renderer: Renderer
    run_target: str
    user: str
    dry_run: bool


def _bill_one(conn: psycopg.Connection[Any], customer: Customer, tickets: list[Any], job: _Job) -> CustomerResult:
    """One customer in its own transaction: its failure is reported and touches no other customer."""
    try:
        return _bill_chunk(conn, [(customer, tickets)], job)[0]
    except (KiviOtrsError, psycopg.Error) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CustomerResult(customer.number, "failed", error=db.redact(text))
    except (ArithmeticError, ValueError, TypeError, KeyError) as exc:  # one bad ticket or value: this customer only
        return CustomerResult(customer.number, "failed",
                              error=db.redact(f"unexpected data ({type(exc).__name__}: {exc})"[:300]))


def _existing_targets(conn: psycopg.Connection[Any], numbers: list[str], job: _Job) -> dict[str, positions.Target]:
    """The open order each customer's positions go to, where there is one: the periodic order (if so
    configured), else the month's draft from an earlier run of the same period."""
    orders: dict[str, int] = {}
    if job.run_target == "periodic-order":
        orders.update(conn.execute(PERIODIC_ORDERS_SQL, {"numbers": numbers}).fetchall())
    rest = [n for n in numbers if n not in orders]
    if rest:
        orders.update(conn.execute(MONTH_DRAFTS_SQL, {"numbers": rest, "first": job.first}).fetchall())
    return {t.customer_number: t for t in positions.order_targets(conn, list(orders.values())).values()}


def _bill_chunk(conn: psycopg.Connection[Any], chunk: list[tuple[Customer, list[Any]]], job: _Job) -> list[CustomerResult]:
    """Bill a chunk of customers in ONE transaction with set-based statements (raises if anything fails)."""
    numbers = [c.number for c, _ in chunk]
    results = {c.number: CustomerResult(c.number, "nothing") for c, _ in chunk}
    with conn.transaction():
        # Every lookup of the chunk is by key; the run grows the ledger and oe faster than autovacuum
        # analyses them, and a plan from "the ledger is empty" statistics would scan it once per chunk.
        # (jit off: the disabled seq scans' cost would otherwise make every tiny query compile code)
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL jit = off")
        targets = _existing_targets(conn, numbers, job)
        catalog = positions.Catalog(conn, job.billing.default_part,
                                    [t.prefill_parts_id for t in targets.values() if t.prefill_parts_id])
        by_customer = {c.number: list({t.ticket_id: t for t in tickets}.values()) for c, tickets in chunk}
        ids = [t.ticket_id for tickets in by_customer.values() for t in tickets]
        if not job.dry_run:
            if any(n not in targets for n in numbers):
                # kivitendo's own saves lock the number range first and the tickets (ledger trigger)
                # second: the same order here, or a save and this chunk could deadlock each other.
                conn.execute(SONUMBER_SQL)
            positions.lock_tickets(conn, ids)
        active = positions.active_entries(conn, ids)
        plans: dict[str, positions.Plan] = {}
        pending: dict[str, list[Any]] = {}
        for customer, _ in chunk:
            target = targets.get(customer.number) or positions.Target(
                customer.db_id, customer.number, customer.name, customer.hourly_rate)
            plans[customer.number] = plan = positions.Plan(reservation_minutes=job.billing.reservation_minutes)
            pending[customer.number] = positions.classify(target, by_customer[customer.number], active,
                                                          positions.ArticleResolver(catalog, target), job.billing,
                                                          plan)
            targets[customer.number] = target
        new_orders = [c for c, _ in chunk if pending[c.number] and targets[c.number].oe_id is None]
        if new_orders and not job.dry_run:
            ordnumbers = next_sonumbers(conn, len(new_orders))
            created = conn.execute(NEW_ORDERS_SQL, {
                "rows": json.dumps([{"ordnumber": o, "customer": c.db_id} for o, c in zip(ordnumbers, new_orders,
                                                                                          strict=True)]),
                "description": f"OTRS-Tickets {job.first:%Y-%m}",
                "notes": "Entwurf aus kivi-otrs bill; beim Speichern rechnet kivitendo die Summen und Steuern neu",
            }).fetchall()
            by_db_id = {c.db_id: c.number for c in new_orders}
            for oe_id, customer_db_id, ordnumber in created:
                number = by_db_id[customer_db_id]
                targets[number] = replace(targets[number], oe_id=oe_id, ordnumber=ordnumber)
        ledger_rows: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        for customer, _ in chunk:
            number, plan, target = customer.number, plans[customer.number], targets[customer.number]
            rows = positions.render(target, pending[number], job.first, job.last, job.billing, job.renderer, job.user,
                                    "bill", plan)
            result = results[number]
            result.positions, result.already_billed, result.skipped = len(plan.positions), len(plan.billed), plan.skipped
            if job.dry_run:
                result.status = "dry-run" if plan.positions else "nothing"
                continue
            if customer.obsolete:
                result.notes.append("the customer is marked obsolete in kivitendo")
            if not plan.positions:
                continue
            ledger_rows.extend(rows)
            items.extend({"oe": target.oe_id, "n": i, "parts_id": p["parts_id"], "description": p["description"],
                          "longdescription": p["longdescription"], "qty": new["qty"], "sellprice": new["sellprice"],
                          "unit": p["unit"], "mode": p.get("recurring_billing_mode", "always")}
                         for i, (p, new) in enumerate(zip(plan.positions, plan.new, strict=True), start=1))
            audit.append({"customer": number, "oe": target.oe_id,
                          "details": {"period": [str(job.first), str(job.last)],
                                      "tickets": [n["ticket_number"] for n in plan.new]}})
            result.status, result.ordnumber = "billed", target.ordnumber
        if ledger_rows:
            oes = sorted({i["oe"] for i in items})
            positions.reserve(conn, ledger_rows, job.billing)
            # the ledger trigger ties the positions to the reservations and queues the write-back entries
            conn.execute(ITEMS_SQL, {"rows": json.dumps(items), "oes": oes})
            markers = [r["marker"] for r in ledger_rows]
            tied = conn.execute(TIED_SQL, {"markers": markers}).fetchone()
            if tied is None or tied[0] != len(markers):
                # the trigger only warned (stale ledger): untied reservations would be offered again
                # once they expire; roll back and bill these customers one by one instead
                raise KiviOtrsError(f"the billing ledger tied {tied[0] if tied else 0} of {len(markers)} "
                                    "positions; run kivi-otrs doctor")
            conn.execute(TOTALS_SQL, {"oes": oes})
            conn.execute(AUDIT_SQL, {"actor": job.user, "rows": json.dumps(audit)})
    return [results[n] for n in numbers]
