"""Order positions from billable tickets, claimed in the billing ledger.

One position per ticket. The flow of one user action (button click or CLI call):
1. read the order/customer and settings (:func:`load_target`);
2. fetch the closed tickets from OTRS (no database transaction held meanwhile);
3. in ONE transaction (:func:`claim`): lock the tickets, read what the ledger already
   holds for them, decide per ticket (new / already billed / skipped with a reason),
   render the texts and write the reservations -- two clicks at once serialise on the
   ticket locks, so the second one finds everything reserved and adds nothing.
A reservation becomes "billed" when kivitendo saves the position (ledger trigger),
and is offered again when it was not saved before ``billing.reservation_minutes``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from .errors import BillingError
from .render import Renderer, format_number

MINUTE_UNIT = "min"
MARKER_TEXT = re.compile(r"kivi-otrs:", re.IGNORECASE)

# Orders and their prefill article (the first position in a time unit), for one button click or a
# whole chunk of the monthly run.
ORDERS_SQL = """
SELECT oe.id, oe.ordnumber, oe.record_type::text AS record_type, oe.closed, cu.id AS customer_db_id,
       btrim(cu.customernumber) AS customer_number, cu.name AS customer_name, cu.hourly_rate,
       EXISTS (SELECT 1 FROM public.periodic_invoices_configs p WHERE p.oe_id = oe.id AND p.active) AS periodic
FROM public.oe oe JOIN public.customer cu ON cu.id = oe.customer_id
WHERE oe.id = ANY(%(ids)s)
"""
CUSTOMER_SQL = """
SELECT id AS customer_db_id, btrim(customernumber) AS customer_number, name AS customer_name, hourly_rate
FROM public.customer
WHERE (%(id)s::int IS NOT NULL AND id = %(id)s) OR (%(number)s::text IS NOT NULL AND btrim(customernumber) = %(number)s)
ORDER BY coalesce(obsolete, false), id
"""
PREFILLS_SQL = """
SELECT DISTINCT ON (oi.trans_id) oi.trans_id, oi.parts_id FROM public.orderitems oi
JOIN public.parts p ON p.id = oi.parts_id
WHERE oi.trans_id = ANY(%(ids)s) AND oi.unit = ANY(%(units)s)
ORDER BY oi.trans_id, oi.position, oi.id
"""
UNITS_SQL = "SELECT name, base_unit, factor FROM public.units"
PARTS_SQL = """
SELECT id, partnumber, description, unit, sellprice, obsolete FROM public.parts
WHERE id = ANY(%(ids)s) OR partnumber = ANY(%(numbers)s)
"""
RULES_SQL = "SELECT customer_number, queue, service, partnumber, billable FROM kivi_otrs.article_rule"
LOCK_SQL = """
SELECT pg_advisory_xact_lock(hashtextextended('kivi_otrs.ticket:' || t, 0))
FROM unnest(%(ids)s::bigint[]) t ORDER BY t
"""
ACTIVE_SQL = """
SELECT ticket_id, state, minutes, billed_minutes, oe_id, orderitems_id, claimed_by, claimed_at, reserved_until,
       (SELECT ordnumber FROM public.oe WHERE oe.id = l.oe_id) AS ordnumber,
       (SELECT invnumber FROM public.ar WHERE ar.id = l.invoice_id) AS invnumber
FROM kivi_otrs.ledger l
WHERE ticket_id = ANY(%(ids)s)
  AND (state IN ('billed', 'invoiced') OR (state = 'reserved' AND reserved_until > now()))
ORDER BY ticket_id, claimed_at
"""
INSERT_SQL = """
INSERT INTO kivi_otrs.ledger (ticket_id, ticket_number, customer_number, minutes, ticket_minutes, billed_minutes, qty,
                              unit, parts_id, state, oe_id, marker, period_start, period_end, ticket_closed,
                              reserved_until, claimed_by, source, otrs_data)
SELECT r.ticket_id, r.ticket_number, r.customer_number, r.minutes, r.ticket_minutes, r.billed_minutes, r.qty, r.unit,
       r.parts_id, 'reserved', r.oe_id, r.marker, r.period_start, r.period_end, r.ticket_closed,
       now() + make_interval(mins => %(reserve)s), r.claimed_by, r.source, r.otrs_data
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(ticket_id bigint, ticket_number text, customer_number text,
     minutes numeric, ticket_minutes numeric, billed_minutes numeric, qty numeric, unit text, parts_id int,
     oe_id int, marker uuid, period_start date, period_end date, ticket_closed timestamptz, claimed_by text,
     source text, otrs_data jsonb)
"""
REOFFER_SQL = """
UPDATE kivi_otrs.ledger SET state = 'released', released_at = now(), release_reason = 'offered again to the same order'
WHERE ticket_id = ANY(%(ids)s) AND state = 'reserved' AND orderitems_id IS NULL AND source = 'button'
  AND oe_id = %(oe_id)s AND claimed_at < now() - make_interval(secs => %(after)s)
"""
# A click whose answer never reached the screen has timed out in kivitendo's controller by then;
# two clicks closer together are a double click: the second finds the tickets reserved.
REOFFER_AFTER_SECONDS = 60
NOT_BILLED_SQL = """
SELECT t FROM unnest(%(ids)s::bigint[]) t
WHERE NOT EXISTS (SELECT 1 FROM kivi_otrs.ledger l
                  WHERE l.ticket_id = t
                    AND (l.state IN ('billed', 'invoiced') OR (l.state = 'reserved' AND l.reserved_until > now())))
"""
RELEASE_SQL = """
UPDATE kivi_otrs.ledger SET state = 'released', released_at = now(), release_reason = %(reason)s
WHERE state = 'reserved' AND (%(oe_id)s::int IS NULL OR oe_id = %(oe_id)s)
  AND (%(customer)s::text IS NULL OR customer_number = %(customer)s)
RETURNING ticket_number
"""


class TicketLike(Protocol):
    """What positions need of an OTRS ticket (kivi_otrs.otrs.Ticket provides it)."""

    ticket_id: int
    number: str
    title: str
    state: str
    queue: str
    service: str
    type: str
    customer_id: str
    customer_user: str
    closed: datetime | None
    time_units: Decimal
    minutes: Decimal


@dataclass(frozen=True)
class Target:
    """The order (or customer) positions are made for."""

    customer_db_id: int
    customer_number: str
    customer_name: str
    hourly_rate: Decimal | None
    oe_id: int | None = None
    ordnumber: str | None = None
    periodic: bool = False
    prefill_parts_id: int | None = None


@dataclass(frozen=True)
class Part:
    id: int
    partnumber: str
    description: str
    unit: str
    unit_minutes: Decimal | None
    sellprice: Decimal | None


@dataclass
class Plan:
    """The outcome of one claim: positions to add, tickets already billed, tickets skipped."""

    positions: list[dict[str, Any]] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)
    billed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    reservation_minutes: int = 0

    def message(self) -> str:
        total = len(self.new) + len(self.billed) + len(self.skipped)
        text = f"{len(self.new)} new position(s) from {total} closed ticket(s)"
        if self.billed:
            text += f"; {len(self.billed)} already billed or reserved"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "preview": {"new": self.new, "billed": self.billed,
                                                          "skipped": self.skipped}, "message": self.message(),
                "reservation_minutes": self.reservation_minutes}


@dataclass(frozen=True)
class BillingSettings:
    default_part: str
    increment: Decimal
    rounding_mode: str
    minimum: Decimal
    price_source: str
    reservation_minutes: int
    timezone: str

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> BillingSettings:
        return cls(default_part=values["billing.default_part"], increment=values["billing.rounding_increment_minutes"],
                   rounding_mode=values["billing.rounding_mode"], minimum=values["billing.minimum_minutes"],
                   price_source=values["billing.price_source"], reservation_minutes=values["billing.reservation_minutes"],
                   timezone=values["site.timezone"])


def unit_minutes(units: dict[str, tuple[str | None, Decimal | None]]) -> dict[str, Decimal]:
    """Minutes per unit for every kivitendo unit that resolves to ``min`` (Std = 60, Tag = 480)."""
    result: dict[str, Decimal] = {}
    for name in units:
        factor, current, seen = Decimal(1), name, set()
        while current != MINUTE_UNIT:
            base, step = units.get(current, (None, None))
            if base is None or current in seen or not step:
                break
            seen.add(current)
            factor *= Decimal(step)
            current = base
        if current == MINUTE_UNIT:
            result[name] = factor
    return result


def round_minutes(minutes: Decimal, increment: Decimal, mode: str, minimum: Decimal) -> Decimal:
    """Round to the increment (up or nearest), then apply the per-ticket minimum."""
    if increment > 0:
        steps = (minutes / increment).quantize(Decimal(1), rounding=ROUND_CEILING if mode == "up" else ROUND_HALF_UP)
        minutes = steps * increment
    return max(minutes, minimum)


def load_target(conn: psycopg.Connection[Any], order_id: int | None = None, customer_db_id: int | None = None,
                customer_number: str | None = None) -> Target:
    """The order (must be a sales order) or the customer to bill."""
    if order_id is not None:
        row = _orders(conn, [order_id]).get(order_id)
        if row is None:
            raise BillingError(f"order {order_id} not found or has no customer; save the order first")
        if row["record_type"] != "sales_order":
            raise BillingError(f"order {row['ordnumber']} is a {row['record_type']}, not a sales order")
        if not row["customer_number"]:
            raise BillingError(f"customer {row['customer_name']} has no customer number; give it one in kivitendo")
        if row["closed"]:
            raise BillingError(f"order {row['ordnumber']} is closed; open a new order for the tickets")
        return _order_target(row)
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(CUSTOMER_SQL, {"id": customer_db_id, "number": customer_number}).fetchall()
    if not rows:
        raise BillingError(f"customer {customer_number or customer_db_id} not found in kivitendo")
    row = rows[0]
    if not row["customer_number"]:
        raise BillingError(f"customer {row['customer_name']} has no customer number; give it one in kivitendo")
    return Target(row["customer_db_id"], row["customer_number"], row["customer_name"], row["hourly_rate"])


def order_targets(conn: psycopg.Connection[Any], order_ids: list[int]) -> dict[int, Target]:
    """Targets for orders already known to be open sales orders of a customer with a number (the run)."""
    return {oe_id: _order_target(row) for oe_id, row in _orders(conn, order_ids).items()}


def _orders(conn: psycopg.Connection[Any], order_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The orders with their customer and ``prefill_parts_id`` (two statements however many orders)."""
    if not order_ids:
        return {}
    minutes = unit_minutes(units(conn))
    prefill = dict(conn.execute(PREFILLS_SQL, {"ids": order_ids, "units": list(minutes)}).fetchall())
    rows = conn.cursor(row_factory=dict_row).execute(ORDERS_SQL, {"ids": order_ids}).fetchall()
    return {row["id"]: {**row, "prefill_parts_id": prefill.get(row["id"])} for row in rows}


def _order_target(row: dict[str, Any]) -> Target:
    return Target(row["customer_db_id"], row["customer_number"], row["customer_name"], row["hourly_rate"],
                  row["id"], row["ordnumber"], bool(row["periodic"]), row["prefill_parts_id"])


def units(conn: psycopg.Connection[Any]) -> dict[str, tuple[str | None, Decimal | None]]:
    return {name: (base, factor) for name, base, factor in conn.execute(UNITS_SQL).fetchall()}


class Catalog:
    """What article resolution needs of kivitendo, read once per transaction: units, rules, parts."""

    def __init__(self, conn: psycopg.Connection[Any], default_part: str, part_ids: list[int] | None = None) -> None:
        self.minutes = unit_minutes(units(conn))
        self.rules = conn.execute(RULES_SQL).fetchall()
        numbers = [r[3] for r in self.rules if r[3]] + ([default_part] if default_part else [])
        self.parts: dict[Any, Part] = {}
        for pid, number, desc, unit, price, _obsolete in conn.execute(
                PARTS_SQL, {"ids": sorted(set(part_ids or [])), "numbers": numbers}):
            part = Part(pid, number, desc or number, unit, self.minutes.get(unit), price)
            self.parts[pid] = part
            self.parts[number] = part
        self.default_part = default_part


class ArticleResolver:
    """Which article bills a ticket: order prefill, customer rule, queue/service rule, default."""

    def __init__(self, catalog: Catalog, target: Target) -> None:
        self.target = target
        self.rules = catalog.rules
        self.parts = catalog.parts
        self.default_part = catalog.default_part

    def _rule(self, ticket: TicketLike) -> tuple[str | None, bool] | None:
        customer = self.target.customer_number
        candidates = [
            r for r in self.rules
            if (r[0] is None or r[0] == customer) and (r[1] is None or r[1] == ticket.queue)
            and (r[2] is None or r[2] == (ticket.service or ""))
        ]
        if not candidates:
            return None
        if any(not r[4] for r in candidates):  # a non-billable queue/service is never billed
            return None, False
        # most specific first: customer, then queue, then service
        best = max(candidates, key=lambda r: (r[0] is not None, r[1] is not None, r[2] is not None))
        return best[3], best[4]

    def resolve(self, ticket: TicketLike) -> tuple[Part | None, str]:
        """(part, source) or (None, reason why not billable); :attr:`last_code` names the reason for screens."""
        self.last_code: tuple[str, dict[str, str]] = ("", {})
        rule = self._rule(ticket)
        if rule is not None and not rule[1]:
            self.last_code = ("not_billable", {"queue": ticket.queue, "service": ticket.service})
            return None, f"queue {ticket.queue!r} / service {ticket.service!r} is configured as not billable"
        if self.target.prefill_parts_id and self.target.prefill_parts_id in self.parts:
            return self.parts[self.target.prefill_parts_id], "order"
        if rule is not None and rule[0]:
            part = self.parts.get(rule[0])
            if part is None:
                self.last_code = ("rule_part_missing", {"partnumber": rule[0]})
                return None, f"article rule names part {rule[0]!r}, which does not exist in kivitendo"
            return part, "rule"
        if self.default_part:
            part = self.parts.get(self.default_part)
            if part is None:
                self.last_code = ("default_part_missing", {"partnumber": self.default_part})
                return None, f"billing.default_part {self.default_part!r} does not exist in kivitendo"
            return part, "default"
        self.last_code = ("no_article", {})
        return None, "no hourly-rate article: set billing.default_part or an article rule"


@dataclass
class _Pending:
    """A ticket decided to be billed (part, minutes, quantity), not yet rendered."""

    ticket: TicketLike
    part: Part
    why: str
    open_minutes: Decimal
    billed_minutes: Decimal
    qty: Decimal
    delta: bool


def lock_tickets(conn: psycopg.Connection[Any], ids: list[int]) -> None:
    """Serialise with other claims and saves of these tickets until the transaction ends."""
    if ids:
        conn.execute(LOCK_SQL, {"ids": sorted(ids)})


def active_entries(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The ledger entries that bill or reserve these tickets, per ticket, oldest first."""
    active: dict[int, list[dict[str, Any]]] = {}
    for row in conn.cursor(row_factory=dict_row).execute(ACTIVE_SQL, {"ids": sorted(ids)}):
        active.setdefault(row["ticket_id"], []).append(row)
    return active


def classify(target: Target, tickets: list[TicketLike], active: dict[int, list[dict[str, Any]]],
             resolver: ArticleResolver, settings: BillingSettings, plan: Plan) -> list[_Pending]:
    """Decide per ticket: skipped (reason), already billed (where), or to bill (returned, in ticket order)."""
    tz = ZoneInfo(settings.timezone)
    pending: list[_Pending] = []
    for ticket in sorted(tickets, key=lambda t: t.ticket_id):
        info = _info(ticket)
        if ticket.customer_id != target.customer_number:
            plan.skipped.append({**info, "reason": f"ticket belongs to customer {ticket.customer_id!r}",
                                 "reason_code": "other_customer", "reason_args": {"customer_id": ticket.customer_id}})
            continue
        if ticket.minutes <= 0:
            plan.skipped.append({**info, "reason": "no accounted time", "reason_code": "no_time", "reason_args": {}})
            continue
        entries = active.get(ticket.ticket_id, [])
        claimed = sum((Decimal(e["minutes"]) for e in entries), Decimal(0))
        open_minutes = ticket.minutes - claimed
        if open_minutes <= 0:
            plan.billed.append({**info, **_where_billed(entries[-1], tz)})
            continue
        # Round the ticket's total, not each delta: 7 -> 14 -> 21 -> 28 minutes billed in four steps
        # with 15-minute rounding up come to 30 minutes, as if billed once.
        already = sum((Decimal(e["billed_minutes"]) for e in entries), Decimal(0))
        billed_minutes = round_minutes(ticket.minutes, settings.increment, settings.rounding_mode,
                                       settings.minimum) - already
        if billed_minutes <= 0:
            plan.billed.append({**info, **_where_billed(entries[-1], tz),
                                "reason": f"the {open_minutes} new minute(s) are covered by the rounding of "
                                          f"the {already} minute(s) already billed"})
            continue
        part, why = resolver.resolve(ticket)
        if part is None:
            code, args = resolver.last_code
            plan.skipped.append({**info, "reason": why, "reason_code": code, "reason_args": args})
            continue
        if part.unit_minutes is None:
            plan.skipped.append({**info, "reason_code": "unit_not_time",
                                 "reason_args": {"partnumber": part.partnumber, "unit": part.unit},
                                 "reason": f"article {part.partnumber} has unit {part.unit!r}, "
                                           "not a time unit based on min"})
            continue
        qty = (billed_minutes / part.unit_minutes).quantize(Decimal("0.00001"))
        pending.append(_Pending(ticket, part, why, open_minutes, billed_minutes, qty, claimed > 0))
    return pending


def render(target: Target, pending: list[_Pending], period_start: date, period_end: date,
           settings: BillingSettings, renderer: Renderer, user: str, source: str, plan: Plan) -> list[dict[str, Any]]:
    """Texts and prices of the decided tickets into ``plan``; returns the ledger rows to reserve them."""
    tz = ZoneInfo(settings.timezone)
    rows: list[dict[str, Any]] = []
    for p in pending:
        ticket, part = p.ticket, p.part
        info = _info(ticket)
        marker = uuid.uuid4()
        closed_local = ticket.closed.astimezone(tz) if ticket.closed else None
        context = {
            "ticket": {"id": ticket.ticket_id, "number": ticket.number, "title": _unmarked(ticket.title),
                       "state": ticket.state, "queue": ticket.queue, "service": ticket.service, "type": ticket.type,
                       "customer_id": ticket.customer_id, "customer_user": ticket.customer_user,
                       "closed": f"{closed_local:%Y-%m-%d %H:%M}" if closed_local else ""},
            "minutes": p.open_minutes, "billed_minutes": p.billed_minutes, "qty": p.qty, "unit": part.unit,
            "part": {"partnumber": part.partnumber, "description": part.description},
            "period": {"start": period_start.isoformat(), "end": period_end.isoformat()},
            "customer": {"number": target.customer_number, "name": target.customer_name},
            "order": {"ordnumber": target.ordnumber or ""},
        }
        description = renderer.render("description", context)
        longdescription = renderer.render("longdescription", context) + f"<!-- kivi-otrs:{marker} -->"
        position: dict[str, Any] = {
            "parts_id": part.id,
            "qty_as_number": format_number(p.qty, renderer.number_format, 2),
            "description": description,
            "longdescription": longdescription,
            "unit": part.unit,
        }
        price = _price(part, target, settings.price_source)
        if price is not None:
            position["sellprice_as_number"] = format_number(price, renderer.number_format, 2)
        info["sellprice"] = str(price) if price is not None else None
        # Ticket time is one-off; the ledger trigger enforces it on save whatever the screen posts.
        position["recurring_billing_mode"] = "once"
        plan.positions.append(position)
        plan.new.append({**info, "billed_minutes": _plain(p.billed_minutes), "qty": str(p.qty), "unit": part.unit,
                         "partnumber": part.partnumber, "article_source": p.why, "marker": str(marker),
                         "delta": p.delta})
        rows.append({
            "ticket_id": ticket.ticket_id, "ticket_number": ticket.number, "customer_number": ticket.customer_id,
            "minutes": str(p.open_minutes), "ticket_minutes": str(ticket.minutes),
            "billed_minutes": _plain(p.billed_minutes), "qty": str(p.qty), "unit": part.unit, "parts_id": part.id,
            "oe_id": target.oe_id, "marker": str(marker), "period_start": period_start.isoformat(),
            "period_end": period_end.isoformat(),
            "ticket_closed": ticket.closed.isoformat() if ticket.closed else None, "claimed_by": user,
            "source": source,
            "otrs_data": {"TicketID": ticket.ticket_id, "TicketNumber": ticket.number, "Title": ticket.title,
                          "State": ticket.state, "Queue": ticket.queue, "TimeUnit": str(ticket.time_units),
                          "Closed": ticket.closed.isoformat() if ticket.closed else None},
        })
    return rows


def reserve(conn: psycopg.Connection[Any], rows: list[dict[str, Any]], settings: BillingSettings) -> None:
    """Write the reservations (one statement, whatever the number of rows)."""
    if rows:
        conn.execute(INSERT_SQL, {"rows": json.dumps(rows), "reserve": settings.reservation_minutes})


def claim(conn: psycopg.Connection[Any], target: Target, tickets: list[TicketLike], period_start: date,
          period_end: date, settings: BillingSettings, renderer: Renderer, user: str, source: str = "button",
          dry_run: bool = False) -> Plan:
    """Decide, render and (unless dry_run) reserve positions for the tickets, in one transaction."""
    plan = Plan(reservation_minutes=settings.reservation_minutes)
    by_id = {t.ticket_id: t for t in tickets}
    ids = sorted(by_id)
    with conn.transaction():
        catalog = Catalog(conn, settings.default_part, [target.prefill_parts_id] if target.prefill_parts_id else [])
        if not dry_run and ids:
            lock_tickets(conn, ids)
            if source == "button" and target.oe_id is not None:
                # An unsaved reservation for this same saved order (a click after a timeout, a reload) never
                # blocks the user: it is given back and offered again. Should both rows reach the order, the
                # database refuses the second at save time ("doppelte Position").
                conn.execute(REOFFER_SQL, {"ids": ids, "oe_id": target.oe_id, "after": REOFFER_AFTER_SECONDS})
        active = active_entries(conn, ids)
        pending = classify(target, list(by_id.values()), active, ArticleResolver(catalog, target), settings, plan)
        rows = render(target, pending, period_start, period_end, settings, renderer, user, source, plan)
        if dry_run:
            for position in plan.positions:
                position["longdescription"] = position["longdescription"].rsplit("<!-- kivi-otrs:", 1)[0]
        else:
            reserve(conn, rows, settings)
    return plan


def _info(ticket: TicketLike) -> dict[str, Any]:
    return {"ticket_id": ticket.ticket_id, "ticket_number": ticket.number, "title": ticket.title,
            "minutes": str(ticket.minutes)}


def _where_billed(entry: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """Where a ticket is billed or reserved, for the summary (state, document, deadline)."""
    result = {"state": entry["state"], "oe_id": entry["oe_id"], "orderitems_id": entry["orderitems_id"],
              "ordnumber": entry["ordnumber"], "invnumber": entry.get("invnumber"),
              "claimed_by": entry["claimed_by"]}
    if entry["state"] == "reserved":
        until = entry["reserved_until"].astimezone(tz)
        result["reserved_until"] = entry["reserved_until"].isoformat()
        where = f"order {entry['ordnumber']}" if entry["ordnumber"] else "an unsaved order"
        result["where"] = f"reserved until {until:%H:%M} by {entry['claimed_by']} for {where}"
    elif entry["state"] == "invoiced":
        result["where"] = (f"invoiced in {entry['invnumber'] or 'an invoice'}"
                           + (f" (order {entry['ordnumber']})" if entry["ordnumber"] else ""))
    else:
        result["where"] = f"billed on order {entry['ordnumber']}"
    return result


def _plain(value: Decimal) -> str:
    """45.00 -> '45', 7.50 -> '7.5' (never exponent notation)."""
    return f"{value.normalize():f}"


def _unmarked(text: str) -> str:
    """OTRS text never carries something that looks like our marker (customer-controlled titles)."""
    return MARKER_TEXT.sub("kivi-otrs\u2024", text)


def _price(part: Part, target: Target, source: str) -> Decimal | None:
    if source == "customer_hourly_rate" and target.hourly_rate is not None and part.unit_minutes:
        return (Decimal(target.hourly_rate) * part.unit_minutes / 60).quantize(Decimal("0.01"))
    if source == "part" and part.sellprice is not None:
        return Decimal(part.sellprice)
    return None


def release(conn: psycopg.Connection[Any], oe_id: int | None, customer_number: str | None, reason: str) -> list[str]:
    """Give up unsaved reservations (of an order or a customer) so the tickets are offered again."""
    if oe_id is None and customer_number is None:
        raise BillingError("name the order (--order-id) or the customer (--customer) whose reservations to release")
    with conn.transaction():
        rows = conn.execute(RELEASE_SQL, {"oe_id": oe_id, "customer": customer_number, "reason": reason}).fetchall()
    return sorted({r[0] for r in rows})


def not_billed(conn: psycopg.Connection[Any], ticket_ids: list[int]) -> list[int]:
    """Of these tickets (whose OTRS write-back field is set), those no live kivitendo document bills."""
    with conn.transaction():
        return [int(r[0]) for r in conn.execute(NOT_BILLED_SQL, {"ids": ticket_ids}).fetchall()]


def reservation_deadline(minutes: int) -> datetime:
    return datetime.now().astimezone() + timedelta(minutes=minutes)
