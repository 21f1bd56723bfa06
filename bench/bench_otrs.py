"""Benchmark: requests and wall time to fetch a month of closed tickets from OTRS/Znuny.

Runs the OTRS stand-in (kivi_otrs.otrs_double, a real loopback HTTP server) with an
injected latency per request and fetches October 2026 (Europe/Berlin) for one customer
(10, 100, 1000 tickets) and for all customers at once (a fresh stand-in per dataset),
with kivi-otrs' client (one SessionCreate, one TicketSearch per period part, one
TicketGet per batch) next to a naive baseline in the same run over the same HTTP stack
(SessionCreate, one TicketSearch per customer, one TicketGet per ticket). Prints
requests and time of both and the ratio.

    python bench/bench_otrs.py                      # 50 ms latency, 10/100/1000 tickets, ~2-3 minutes
    python bench/bench_otrs.py --quick              # smoke run: 5 ms latency, 10/100 tickets
    python bench/bench_otrs.py --latency 0.1 --sizes 100,1000 --batch 100
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from kivi_otrs import otrs
from kivi_otrs.config import OtrsSettings
from kivi_otrs.otrs import OtrsClient
from kivi_otrs.otrs_double import OtrsDouble
from kivi_otrs.period import Period, otrs_bounds, resolve_period

CUSTOMER = "1000387"
TIMEZONE = "Europe/Berlin"
PERIOD = resolve_period(None, TIMEZONE, date_from=date(2026, 10, 1), date_to=date(2026, 10, 31))
# October in Berlin is 2026-09-30 22:00 .. 2026-10-31 22:59:59 UTC; close times are spread inside.
FIRST_CLOSE = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
SPAN = datetime(2026, 10, 31, 22, 0, tzinfo=UTC) - FIRST_CLOSE
BIG_LIMIT = 5000
NAIVE_LIMIT = 100_000


@dataclass
class Run:
    tickets: int
    requests: int
    seconds: float
    calls: dict[str, int]

    def breakdown(self) -> str:
        return "+".join(str(self.calls.get(op, 0)) for op in ("SessionCreate", "TicketSearch", "TicketGet"))


@dataclass
class Row:
    case: str
    ours: Run
    naive: Run
    naive_note: str = ""


def settings_for(double: OtrsDouble, batch: int, search_limit: int) -> OtrsSettings:
    return OtrsSettings(base_url=double.base_url, webservice=double.webservice, user=double.user,
                        password=double.password, connect_timeout=2.0, read_timeout=30.0, batch_size=batch,
                        search_limit=search_limit, timezone=TIMEZONE)


def fresh_client(settings: OtrsSettings) -> OtrsClient:
    """A new client without a cached session, so that every run pays its own SessionCreate."""
    client = OtrsClient(settings)
    otrs.SESSIONS.put(client._cache_key, None)
    return client


def close_time(i: int, n: int) -> datetime:
    return FIRST_CLOSE + timedelta(seconds=int(SPAN.total_seconds() * i / n) + i % 60)


class Filler:
    """Fills one freshly started double with one dataset."""

    def __init__(self, double: OtrsDouble) -> None:
        self.double = double
        self.next_id = 1

    def add(self, customer: str, closed: datetime | None, state: str = "closed successful") -> int:
        ticket_id = self.next_id
        self.next_id += 1
        self.double.add_ticket(ticket_id, f"Ticket {ticket_id} <Drucker & Co>", customer, 5 + ticket_id % 90,
                               closed, state=state)
        return ticket_id

    def noise(self, customer: str, count: int) -> None:
        """Tickets of that customer that are not billable in October: closed before/after, still open."""
        for i in range(count):
            kind = i % 3
            if kind == 0:
                self.add(customer, datetime(2026, 9, 1 + i % 28, 10, tzinfo=UTC))
            elif kind == 1:
                self.add(customer, datetime(2026, 11, 2 + i % 27, 10, tzinfo=UTC))
            else:
                self.add(customer, None, state="open")

    def one_customer(self, size: int) -> set[int]:
        """``size`` billable tickets of CUSTOMER, as many of other customers, and some noise."""
        expected = {self.add(CUSTOMER, close_time(i, size)) for i in range(size)}
        for i in range(size):  # other customers, interleaved in time; 10003870 and 100038 are near misses
            other = ("10003870", "100038", f"{1000400 + i % 17}")[i % 3]
            self.add(other, close_time(i, size))
        self.noise(CUSTOMER, max(3, size // 10))
        return expected

    def all_customers(self, total: int, customers: int) -> dict[str, set[int]]:
        """``total`` billable tickets spread over ``customers`` customers, and some noise."""
        names = [f"{1000387 + k}" for k in range(customers)]
        expected: dict[str, set[int]] = {name: set() for name in names}
        for i in range(total):
            name = names[i % customers]
            expected[name].add(self.add(name, close_time(i, total)))
        for name in names:
            self.noise(name, max(3, total // customers // 10))
        return expected


def server_requests(double: OtrsDouble) -> int:
    return sum(double.calls.values())


def measure_ours(double: OtrsDouble, settings: OtrsSettings, customer: str | None, expected: set[int]) -> Run:
    with fresh_client(settings) as client:
        before = server_requests(double)
        start = time.perf_counter()
        result = client.closed_tickets(customer, PERIOD)
        elapsed = time.perf_counter() - start
        got = {t.ticket_id for t in result.tickets}
        assert got == expected, f"ours returned {len(got)} tickets, expected {len(expected)}"
        assert not result.skipped, result.skipped[:3]
        assert server_requests(double) - before == client.requests_made
        return Run(len(got), client.requests_made, elapsed, dict(client.calls))


def naive_fetch(client: OtrsClient, customers: list[str], period: Period) -> list[dict[str, Any]]:
    """SessionCreate, then per customer one TicketSearch (big Limit) and one TicketGet per ticket."""
    low, high = otrs_bounds(period, client.settings.otrs_timezone)
    client.login()
    tickets: list[dict[str, Any]] = []
    for customer in customers:
        ids = client.search({"States": list(client.settings.states), "CustomerID": customer,
                             "TicketCloseTimeNewerDate": low, "TicketCloseTimeOlderDate": high, "Limit": NAIVE_LIMIT})
        for ticket_id in ids:
            tickets.extend(client.get([ticket_id]))
    return tickets


def measure_naive(double: OtrsDouble, settings: OtrsSettings, customers: list[str], expected: set[int]) -> Run:
    with fresh_client(settings) as client:
        before = server_requests(double)
        start = time.perf_counter()
        tickets = naive_fetch(client, customers, PERIOD)
        elapsed = time.perf_counter() - start
        got = {int(t["TicketID"]) for t in tickets}
        assert got == expected, f"naive returned {len(got)} tickets, expected {len(expected)}"
        assert server_requests(double) - before == client.requests_made
        return Run(len(got), client.requests_made, elapsed, dict(client.calls))


def bound(tickets: int, batch: int) -> int:
    """The target: SessionCreate + one TicketGet per batch + one TicketSearch."""
    return 1 + math.ceil(tickets / batch) + 1


def print_table(rows: list[Row]) -> None:
    header = (f"{'case':<32} {'tickets':>7} {'req ours':>8} {'(S+Q+G)':>10} {'req naive':>9} {'(S+Q+G)':>12} "
              f"{'req ratio':>9} {'time ours':>10} {'time naive':>11} {'time ratio':>10}")
    print(header)
    print("-" * len(header))
    for row in rows:
        o, n = row.ours, row.naive
        print(f"{row.case:<32} {o.tickets:>7} {o.requests:>8} {o.breakdown():>10} {n.requests:>9} {n.breakdown():>12} "
              f"{n.requests / o.requests:>8.1f}x {o.seconds:>8.2f} s {n.seconds:>9.2f} s {n.seconds / o.seconds:>9.1f}x"
              f"{'  ' + row.naive_note if row.naive_note else ''}")


@contextmanager
def serve(latency: float) -> Iterator[OtrsDouble]:
    """A fresh stand-in per dataset (no state carried over), warmed up before the latency is switched on."""
    with OtrsDouble() as double:
        with fresh_client(settings_for(double, 50, BIG_LIMIT)) as warm:  # first connection: not measured
            warm.login()
        double.latency = latency
        yield double


def run(latency: float, sizes: list[int], customers: int, all_tickets: int, batch: int) -> None:
    wall = time.perf_counter()
    rows: list[Row] = []
    targets: list[tuple[int, int, int]] = []
    for size in sizes:
        with serve(latency) as double:
            big, small = settings_for(double, batch, BIG_LIMIT), settings_for(double, batch, 500)
            expected = Filler(double).one_customer(size)
            ours = measure_ours(double, big, CUSTOMER, expected)
            naive = measure_naive(double, big, [CUSTOMER], expected)
            rows.append(Row(f"customer {CUSTOMER}", ours, naive))
            targets.append((size, ours.requests, bound(size, batch)))
            if size >= 500:  # the default search limit splits the month: extra searches, same naive
                split = measure_ours(double, small, CUSTOMER, expected)
                rows.append(Row(f"customer {CUSTOMER}, limit 500", split, naive, "(naive: row above)"))
    with serve(latency) as double:
        big, small = settings_for(double, batch, BIG_LIMIT), settings_for(double, batch, 500)
        by_customer = Filler(double).all_customers(all_tickets, customers)
        every = set().union(*by_customer.values())
        ours = measure_ours(double, big, None, every)
        naive = measure_naive(double, big, list(by_customer), every)
        rows.append(Row(f"all customers ({customers})", ours, naive))
        if all_tickets >= 500:
            split = measure_ours(double, small, None, every)
            rows.append(Row(f"all customers ({customers}), limit 500", split, naive, "(naive: row above)"))

    print(f"OTRS fetch of {PERIOD.label} ({TIMEZONE}) against the OTRS stand-in, {latency * 1000:g} ms latency per "
          f"request, TicketGet batch {batch}")
    print(f"ours: OtrsClient.closed_tickets, search limit {BIG_LIMIT} (one TicketSearch per fetch) unless the row "
          "says limit 500 (the default: the month is halved until every part is below the limit)")
    print("naive: SessionCreate, one TicketSearch per customer (Limit 100000), one TicketGet per ticket; same HTTP "
          "stack, same run, same data")
    print(f"data: per single-customer case N billable tickets of {CUSTOMER}, N of other customers in the same month, "
          f""
          f"N/10 (at least 3) of {CUSTOMER} closed outside October or still open; all customers: {all_tickets} billable tickets "
          f"over {customers} customers plus noise")
    print("S+Q+G = SessionCreate + TicketSearch + TicketGet requests; every run logs in once (no cached session)")
    print()
    print_table(rows)
    print()
    for size, made, limit in targets:
        verdict = "target met" if made <= limit else "target NOT met"
        print(f"customer month of {size} tickets: {made} requests, target <= 1 + ceil({size}/{batch}) + 1 = {limit}: "
              f"{verdict}")
    if 1000 not in sizes:
        print("(the issue's target is stated for 1000 tickets; that size was not run)")
    print(f"total bench time {time.perf_counter() - wall:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the stand-in waits per request")
    parser.add_argument("--sizes", default="10,100,1000", help="tickets of the one customer, comma separated")
    parser.add_argument("--customers", type=int, default=20, help="customers in the all-customers case")
    parser.add_argument("--all-tickets", type=int, default=1000, help="billable tickets in the all-customers case")
    parser.add_argument("--batch", type=int, default=50, help="otrs.batch_size (tickets per TicketGet)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 ms latency, sizes 10,100, 100 tickets in all")
    args = parser.parse_args()
    if args.quick:
        args.latency, args.sizes, args.all_tickets = 0.005, "10,100", 100
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.customers < 1 or args.all_tickets < args.customers or args.batch < 1:
        parser.error("sizes and --batch must be positive, --all-tickets at least --customers")
    run(args.latency, sizes, args.customers, args.all_tickets, args.batch)


if __name__ == "__main__":
    main()
