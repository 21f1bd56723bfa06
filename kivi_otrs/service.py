"""One user action end to end: settings -> order/customer -> OTRS tickets -> claimed positions.

Used by ``kivi-otrs positions``, the local endpoint behind the order-screen button
(``kivi-otrs serve``) and the demo. The database transaction that reads settings is
finished before OTRS is asked, so no lock is held while the helpdesk answers; the
claim itself is one transaction (see :mod:`kivi_otrs.positions`).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from . import config, db, positions
from .otrs import TicketResult, fetch_closed
from .period import Period, resolve_period
from .render import Renderer

EXACT_NUMBERS_SQL = "SELECT btrim(customernumber) FROM public.customer WHERE btrim(customernumber) = ANY(%(numbers)s)"
TicketFetcher = Callable[[config.OtrsSettings, str, Period], "list[Any] | TicketResult"]


def fetch_from_otrs(settings: config.OtrsSettings, customer_number: str, period: Period,
                    stale_filter: Callable[[list[int]], list[int]] | None = None) -> TicketResult:
    """Billable closed tickets of one customer in the period, and those left out with their reason."""
    return fetch_closed(settings, customer_number, period, stale_filter)


@dataclass(frozen=True)
class Request:
    """What the button (or the CLI) asks for."""

    order_id: int | None = None
    customer_db_id: int | None = None
    customer_number: str | None = None
    period: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    periodic: bool | None = None
    number_format: str | None = None
    dry_run: bool = False
    user: str = ""
    source: str = "button"


def make_positions(dsn: str, request: Request, fetch: TicketFetcher | None = None) -> tuple[positions.Plan, Period]:
    """Run one positions action; raises KiviOtrsError subclasses with one-line messages.

    A dry run computes the positions in read-only transactions: PostgreSQL refuses any
    write, so a preview can never reserve or change anything.
    """
    with db.connect(dsn) as conn:
        conn.read_only = request.dry_run
        values = config.effective(conn)
        otrs_settings = config.otrs_settings(values)
        target = positions.load_target(conn, request.order_id, request.customer_db_id, request.customer_number)
        renderer = Renderer.from_database(conn, values["billing.language"],
                                          request.number_format or values["billing.number_format"])
        billing = positions.BillingSettings.from_values(values)
        conn.commit()
        period = resolve_period(request.period or values["billing.period"], values["site.timezone"],
                                date_from=request.date_from, date_to=request.date_to)
        fetched: list[Any] | TicketResult
        if fetch is None:  # from OTRS; a stale write-back field never hides a ticket kivitendo bills nowhere
            fetched = fetch_from_otrs(otrs_settings, target.customer_number, period,
                                      lambda ids: positions.not_billed(conn, ids))
        else:
            fetched = fetch(otrs_settings, target.customer_number, period)
        tickets: list[Any] = list(fetched.tickets) if isinstance(fetched, TicketResult) else fetched
        otrs_skipped = fetched.skipped if isinstance(fetched, TicketResult) else []
        plan = positions.claim(
            conn, target, tickets, period.start.date(), (period.end - timedelta(seconds=1)).date(), billing, renderer,
            user=request.user or getpass.getuser(), source=request.source, dry_run=request.dry_run,
        )
        # A CustomerID differing in case only may be another kivitendo customer's number: OTRS compares
        # company ids case-insensitively, so name that conflict instead of blaming the ticket.
        case_only = [s for s in otrs_skipped if s.get("reason_code") == "case_only"]
        numbers = {r[0] for r in conn.execute(EXACT_NUMBERS_SQL, {"numbers": [s["customer_id"] for s in case_only]})
                   } if case_only else set()
    for s in case_only:
        s["reason_args"] = {"customer_id": s["customer_id"]}
        if s["customer_id"] in numbers:
            s["reason_code"] = "case_conflict"
            s["reason"] = (f"belongs to kivitendo customer {s['customer_id']!r}; customer numbers that differ "
                           "only in case are one company in OTRS: give one of them another number in kivitendo")
    # Every ticket OTRS returned and we do not bill shows up with its reason (bad time, no customer, ...).
    plan.skipped.extend({**s, "reason_code": s.get("reason_code", "otrs_data")} for s in otrs_skipped)
    return plan, period
