"""Reports from the billing ledger: what was billed per customer and month, and
reconciliation lists an admin works through.

Formats: a text table, CSV, and a self-contained HTML page a customer can receive
(every value HTML-escaped: ticket titles come from OTRS).
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from .billing_run import CUSTOMERS_SQL
from .doctor import SEVERAL_CUSTOMERS_SQL
from .render import format_number

BILLED_SQL = """
SELECT l.customer_number, cu.name AS customer_name, l.ticket_number, l.otrs_data ->> 'Title' AS title,
       l.ticket_closed, l.minutes, l.billed_minutes, l.qty, l.unit, oe.ordnumber, l.state, l.claimed_by, l.claimed_at
FROM kivi_otrs.ledger l
LEFT JOIN public.oe oe ON oe.id = l.oe_id
LEFT JOIN LATERAL (SELECT name FROM public.customer c WHERE btrim(c.customernumber) = l.customer_number
                   ORDER BY coalesce(c.obsolete, false), c.id LIMIT 1) cu ON true
WHERE l.state IN ('billed', 'invoiced') AND l.period_start >= %(start)s AND l.period_start < %(end)s
  AND (%(customer)s::text IS NULL OR l.customer_number = %(customer)s)
ORDER BY l.customer_number, l.ticket_closed NULLS LAST, l.ticket_number
"""
RELEASED_SQL = """
SELECT l.customer_number, l.ticket_number, l.otrs_data ->> 'Title' AS title, l.minutes, l.released_at, l.release_reason
FROM kivi_otrs.ledger l
WHERE l.state = 'released' AND l.release_reason = 'position deleted'
  AND NOT EXISTS (SELECT 1 FROM kivi_otrs.ledger b WHERE b.ticket_id = l.ticket_id AND b.state <> 'released')
ORDER BY l.released_at DESC
"""
OVERBILLED_SQL = """
SELECT ticket_number, customer_number, sum(minutes) AS billed, max(ticket_minutes) AS accounted,
       string_agg(DISTINCT coalesce((SELECT ordnumber FROM public.oe WHERE oe.id = l.oe_id), '?'), ', ') AS orders
FROM kivi_otrs.ledger l
WHERE state IN ('billed', 'invoiced')
GROUP BY ticket_id, ticket_number, customer_number
HAVING sum(minutes) > max(ticket_minutes)
ORDER BY ticket_number
"""
COPIES_SQL = """
SELECT l.ticket_number, l.customer_number, coalesce(src.ordnumber, '?') AS billed_on, oe.ordnumber AS copy_on
FROM kivi_otrs.ledger l
JOIN public.orderitems oi ON kivi_otrs.position_digest(oi.description, oi.longdescription) = l.position_digest
                         AND oi.id <> l.orderitems_id AND oi.parts_id = l.parts_id
JOIN public.oe oe ON oe.id = oi.trans_id AND oe.record_type::text = 'sales_order'
LEFT JOIN public.oe src ON src.id = l.oe_id
WHERE l.state IN ('billed', 'invoiced')
ORDER BY l.ticket_number
"""
TIED_BY_NUMBER_SQL = """
SELECT l.ticket_number, l.customer_number, oe.ordnumber
FROM kivi_otrs.ledger l LEFT JOIN public.oe oe ON oe.id = l.oe_id
WHERE l.state IN ('billed', 'invoiced') AND l.bound_by = 'ticket number'
ORDER BY l.ticket_number
"""
EXPIRED_SQL = """
SELECT customer_number, ticket_number, claimed_by, claimed_at, reserved_until
FROM kivi_otrs.ledger WHERE state = 'reserved' AND reserved_until <= now()
ORDER BY reserved_until
"""


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value: Any, text: str) -> str:
    """``text`` with a leading ' when ``value`` is text (not a number or date) a spreadsheet would treat as a formula."""
    if isinstance(value, str) and (text.startswith(FORMULA_START) or text.lstrip().startswith(FORMULA_START)):
        return "'" + text
    return text


@dataclass(frozen=True)
class Report:
    title: str
    columns: list[str]
    rows: list[list[Any]]

    def _cell(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, Decimal):
            return format_number(value, "1000.00", 0, 2)
        if hasattr(value, "strftime"):
            return str(value.strftime("%Y-%m-%d %H:%M"))
        return str(value)

    def table(self) -> str:
        cells = [self.columns] + [[self._cell(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [self.title, "  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
        if not self.rows:
            lines.append("(nothing)")
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        """CSV; text cells a spreadsheet would run as a formula get a leading ' (OWASP CSV injection)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        writer.writerows([[csv_safe(v, self._cell(v)) for v in row] for row in self.rows])
        return out.getvalue()

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._cell(v))}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + html.escape(self.title) +
                "</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
                "td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style></head><body><h1>" +
                html.escape(self.title) + "</h1><table><thead><tr>" + head + "</tr></thead><tbody>" + body +
                "</tbody></table></body></html>\n")


def billed(conn: psycopg.Connection[Any], month: date, customer: str | None = None, timezone: str | None = None) -> Report:
    """Billed tickets of one month (by billing period), per customer; close times in the site's time zone."""
    start = month.replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    rows = conn.cursor(row_factory=dict_row).execute(BILLED_SQL, {"start": start, "end": end, "customer": customer})
    zone = ZoneInfo(timezone) if timezone else None
    data = [[r["customer_number"], r["customer_name"], r["ticket_number"], r["title"],
             r["ticket_closed"].astimezone(zone) if zone and r["ticket_closed"] else r["ticket_closed"],
             r["minutes"], r["billed_minutes"], r["qty"], r["unit"], r["ordnumber"]] for r in rows]
    total = sum((row[5] for row in data), Decimal(0))
    title = f"Billed tickets {start:%Y-%m}" + (f" for customer {customer}" if customer else "")
    if data:
        title += f": {len(data)} tickets, {format_number(total, '1000.00', 0, 2)} min"
    return Report(title, ["customer", "name", "ticket", "title", "closed", "minutes", "billed min", "qty", "unit",
                          "order"], data)


def helpdesk_lists(conn: psycopg.Connection[Any], tickets: list[Any], period_label: str,
                   skipped: list[dict[str, Any]] | None = None) -> list[Report]:
    """From OTRS's closed tickets of a period: tickets without time, time of customers unknown to kivitendo,
    and tickets whose OTRS data cannot be billed (with the reason)."""
    numbers = sorted({t.customer_id for t in tickets})
    known = {r[0] for r in conn.execute(CUSTOMERS_SQL, {"numbers": numbers}).fetchall()}
    no_time = [[t.customer_id, t.number, t.title, t.state] for t in tickets if t.minutes <= 0]
    unknown = [[t.customer_id or "(none)", t.number, t.title, t.minutes] for t in tickets
               if t.customer_id not in known and t.minutes > 0]
    return [
        Report(f"Closed tickets without accounted time ({period_label})", ["customer", "ticket", "title", "state"],
               sorted(no_time)),
        Report(f"Time on tickets of customers unknown to kivitendo ({period_label})",
               ["CustomerID", "ticket", "title", "minutes"], sorted(unknown, key=lambda r: (str(r[0]), r[1]))),
        Report(f"Closed tickets OTRS sent that cannot be billed ({period_label})", ["ticket", "title", "reason"],
               sorted([[str(s.get("ticket_number") or s.get("ticket_id")), s.get("title", ""), s["reason"]]
                       for s in skipped or []])),
    ]


def reconciliation(conn: psycopg.Connection[Any], helpdesk: list[Report] | None = None) -> list[Report]:
    """Lists to work through: deleted orders, over-billed tickets, stale reservations, shared e-mails."""
    def rows(query: str) -> list[list[Any]]:
        return [list(r) for r in conn.execute(query).fetchall()]

    return [*(helpdesk or []),
        Report("Ledger entries whose position or order was deleted (tickets billable again)",
               ["customer", "ticket", "title", "minutes", "released", "reason"], rows(RELEASED_SQL)),
        Report("Tickets billed beyond their accounted time (positions saved before kivi-otrs refused copies)",
               ["ticket", "customer", "billed min", "accounted min", "orders"], rows(OVERBILLED_SQL)),
        Report("Ticket positions copied into a second sales order (a ticket in two live documents)",
               ["ticket", "customer", "billed on", "copy on"], rows(COPIES_SQL)),
        Report("Ticket positions saved without their marker (tied by ticket number)",
               ["ticket", "customer", "order"], rows(TIED_BY_NUMBER_SQL)),
        Report("Reservations never saved (offered again)",
               ["customer", "ticket", "by", "at", "expired"], rows(EXPIRED_SQL)),
        Report("Contacts with the same e-mail at several customers",
               ["login", "customers"], rows(SEVERAL_CUSTOMERS_SQL)),
    ]
