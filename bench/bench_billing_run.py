"""Benchmark: the monthly billing run (``kivi-otrs bill``) against the OTRS stand-in.

A month of closed tickets (default 5,000 customers, 50,000 tickets, 50 ms latency per
OTRS call) is billed twice in the same bench run, each on an identical copy of the
database: by a baseline that runs as main did before issue 13's work (``otrs.parallel_requests
= 1``, TicketGet batches pinned at ``--batch``, search windows halved at the limit, one database
transaction per customer) and by kivi-otrs' run (``--parallel`` requests at a time, batches sized
from measurements, search windows sized from the measured close density, customers billed in
set-based chunks). Prints per variant the time of
each phase (OTRS, database, write-back), requests against 1 + searches +
ceil(tickets/batch), peak memory, and the ratios; then bills the same period again to
show that a re-run adds nothing. ``--fetch-only`` measures the OTRS phase alone (no
database), e.g. for the 800 ms per call of a real Znuny under CGI.

The stand-in runs in its own process (its CPU and memory are not the bridge's); every
variant runs in a forked child process whose peak RSS is measured (Linux VmHWM, reset
through /proc/self/clear_refs at the start of the variant).

    python bench/bench_billing_run.py --quick                       # < 1 minute
    python bench/bench_billing_run.py                               # 5000 customers, 50000 tickets, 50 ms
    python bench/bench_billing_run.py --fetch-only --latency 0.8    # the OTRS phase at Znuny's 800 ms per call
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import multiprocessing
import multiprocessing.connection
import pstats
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from kivi_otrs import billing_run, config, migrate, otrs
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.otrs_double import OtrsDouble
from kivi_otrs.period import Period, resolve_period
from kivi_otrs.sandbox import LocalCluster

DATE_FROM, DATE_TO = date(2026, 10, 1), date(2026, 10, 31)
# Close times stay inside the period in any site time zone between UTC-1 and UTC+2 (Europe/Berlin by default).
CLOSE_FIRST = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
CLOSE_LAST = datetime(2026, 10, 31, 21, 59, tzinfo=UTC)
FIRST_NUMBER = 100001
PASSWORD = "bench-password-42"  # noqa: S105 - the stand-in's agent in a throwaway setup

CUSTOMERS_SQL = """
INSERT INTO public.customer (id, name, customernumber, street, zipcode, city, taxzone_id, currency_id, country_id,
                             hourly_rate)
SELECT 50000000 + i, 'Bench Kunde ' || i || ' GmbH', (%(first)s + i)::text, 'Straße ' || i, lpad((i %% 99999)::text, 5, '0'),
       'Berlin', (SELECT min(id) FROM public.tax_zones), 1, (SELECT min(id) FROM public.countries), 95.00
FROM generate_series(0, %(n)s - 1) i
"""


# -- the OTRS stand-in in its own process -------------------------------------------------------


def customer_number(index: int) -> str:
    return str(FIRST_NUMBER + index)


def ticket_plan(customers: int, tickets: int, seed: int) -> list[tuple[int, str, int, datetime]]:
    """(ticket id, customer number, minutes, close time): every customer gets one, the rest at random."""
    rnd = random.Random(seed)
    span = (CLOSE_LAST - CLOSE_FIRST).total_seconds()
    plan = []
    for i in range(tickets):
        owner = i if i < customers else rnd.randrange(customers)
        closed = CLOSE_FIRST + timedelta(seconds=int(rnd.random() * span))
        plan.append((1 + i, customer_number(owner), rnd.randint(5, 240), closed))
    return plan


def _double_main(conn: multiprocessing.connection.Connection, customers: int, tickets: int, latency: float,
                 search_limit: int, seed: int) -> None:
    double = OtrsDouble(password=PASSWORD, search_limit=search_limit)
    for ticket_id, number, minutes, closed in ticket_plan(customers, tickets, seed):
        double.add_ticket(ticket_id, f"Ticket {ticket_id} für Kunde {number}", number, minutes, closed,
                          number=f"2026{closed:%m%d}1{ticket_id:07d}", customer_user=f"user@{number}.example")
    double.requests = _Discard()  # the request log of 50k tickets would only cost the stand-in memory
    double.latency = latency
    double.start()
    conn.send((double.base_url, double.user, double.password))
    while True:
        command = conn.recv()
        if command == "calls":
            conn.send((dict(double.calls), time.process_time()))
        else:
            double.stop()
            conn.send("stopped")
            return


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


class DoubleProcess:
    """OtrsDouble with the bench's tickets, served from a child process; ``calls()`` asks it for its counters."""

    def __init__(self, customers: int, tickets: int, latency: float, search_limit: int, seed: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_double_main, args=(child, customers, tickets, latency, search_limit, seed),
                                    daemon=True)
        self._process.start()
        self.base_url, self.user, self.password = self._conn.recv()

    def calls(self) -> tuple[dict[str, int], float]:
        """Requests per operation so far and the stand-in's CPU seconds so far."""
        self._conn.send("calls")
        return self._conn.recv()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._conn.send("stop")
        self._conn.recv()
        self._process.join(10)


# -- measuring one variant in a forked child -----------------------------------------------------


def _rss_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


@dataclass
class Measured:
    name: str
    customers: int = 0
    tickets: int = 0
    positions: int = 0
    billed: int = 0
    failed: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    fetch_wall: float = 0.0
    double_cpu: float = 0.0
    rss_start_kib: int = 0
    rss_peak_kib: int = 0
    hwm_reset: bool = True
    py_peak: int = 0
    profile: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def in_child(fn: Callable[..., Measured], *args: Any) -> Measured:
    """Run ``fn(*args)`` in a forked process so that its peak RSS is its own."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()

    def target() -> None:
        hwm_reset = _reset_peak_rss()
        start_rss = _rss_kib("VmRSS")
        result = fn(*args)
        result.rss_start_kib, result.rss_peak_kib, result.hwm_reset = start_rss, _rss_kib("VmHWM"), hwm_reset
        child.send(result)

    process = ctx.Process(target=target)
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = None
    process.join()
    if result is None or process.exitcode != 0:
        raise SystemExit(f"{fn.__name__} failed in its child process (exit code {process.exitcode})")
    return result  # type: ignore[no-any-return]


class Counting:
    """Requests and stand-in CPU between two points."""

    def __init__(self, double: DoubleProcess) -> None:
        self.double = double
        self.calls, self.cpu = double.calls()

    def done(self, result: Measured) -> Measured:
        calls, cpu = self.double.calls()
        result.requests = {k: v - self.calls.get(k, 0) for k, v in calls.items() if v - self.calls.get(k, 0)}
        result.double_cpu = cpu - self.cpu
        return result


def _maybe_traced(trace: bool) -> None:
    if trace:
        tracemalloc.start()


def _traced_peak(trace: bool) -> int:
    if not trace:
        return 0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def as_before(batch: int) -> None:
    """In this forked child only: the baseline's fixed TicketGet batch, halved search windows (no
    density estimate) and one transaction per customer."""
    otrs.MAX_BATCH = batch
    otrs._Density.known = property(lambda self: False)  # type: ignore[method-assign,assignment]
    billing_run.CHUNK_CUSTOMERS = 1


def ours(name: str, dsn: str, double: DoubleProcess, trace: bool, profile: bool, parallel: int,
         fixed_batch: int | None) -> Measured:
    """kivi-otrs bill for all customers: one fetch, then the customers in chunked transactions.

    ``parallel`` overrides otrs.parallel_requests; ``fixed_batch`` makes the sequential baseline (the
    run as it was before issue 13's work): TicketGet batches pinned, search windows halved, one
    transaction per customer.
    """
    if fixed_batch is not None:
        as_before(fixed_batch)
    result = Measured(name)
    sizes: list[int] = []

    def fetch(settings: config.OtrsSettings, period: Period) -> otrs.TicketStream:
        found = otrs.TicketResult()

        def stream() -> Iterator[otrs.Ticket]:  # as kivi-otrs bill fetches: tickets as they arrive
            with otrs.OtrsClient(replace(settings, parallel_requests=parallel)) as client:
                yield from client.iter_closed_tickets(None, period, None, found)
                sizes.extend(client.batch_sizes)
                result.extra["searches"] = found.searches

        return otrs.TicketStream(stream(), found)

    counting = Counting(double)
    _maybe_traced(trace)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    summary = billing_run.run(dsn, date_from=DATE_FROM, date_to=DATE_TO, fetch_all=fetch, user="bench")
    if profiler:
        profiler.disable()
    result.wall = time.perf_counter() - start
    result.py_peak = _traced_peak(trace)
    counting.done(result)
    result.fetch_wall = summary.phases.get("otrs", 0.0)
    result.customers = len(summary.customers)
    result.tickets = summary.tickets
    result.positions = sum(c.positions for c in summary.customers)
    result.billed = sum(1 for c in summary.customers if c.status == "billed")
    result.failed = len(summary.failed)
    result.extra.update({"unknown": len(summary.unknown_customers), "phases": summary.phases, "sizes": sizes,
                         "nothing": sum(1 for c in summary.customers if c.status == "nothing"),
                         "errors": [c.error for c in summary.failed[:3]]})
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
        result.profile = out.getvalue()
    return result


def fetch_only(name: str, double: DoubleProcess, batch: int, search_limit: int, parallel: int,
               fixed_batch: int | None) -> Measured:
    """Only the OTRS phase of the run (no database): requests, wall time and peak memory."""
    result = Measured(name)
    if fixed_batch is not None:
        as_before(fixed_batch)
    settings = config.OtrsSettings(base_url=double.base_url, webservice="KivitendoBilling", user=double.user,
                                   password=double.password, batch_size=batch, search_limit=search_limit,
                                   parallel_requests=parallel)
    period = resolve_period(None, "Europe/Berlin", date_from=DATE_FROM, date_to=DATE_TO)
    counting = Counting(double)
    start = time.perf_counter()
    with otrs.OtrsClient(settings) as client:
        found = client.closed_tickets(None, period)
        result.extra = {"searches": found.searches, "sizes": list(client.batch_sizes),
                        "phases": {"otrs": time.perf_counter() - start}}
    result.wall = result.fetch_wall = time.perf_counter() - start
    result.tickets = len(found.tickets)
    del found
    counting.done(result)
    return result


# -- setup and report ----------------------------------------------------------------------------


def prepare_template(cluster: LocalCluster, customers: int, double: DoubleProcess, batch: int, search_limit: int) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_template")
    dsn = cluster.dsn("bench_template")
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_kivitendo(conn)  # the demo data holds the hourly-rate part SYS-STD
        conn.execute(CUSTOMERS_SQL, {"first": FIRST_NUMBER, "n": customers})
    migrate.migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            for key, value in {"otrs.base_url": double.base_url, "otrs.user": double.user,
                               "otrs.password": double.password, "billing.default_part": "SYS-STD",
                               "otrs.batch_size": str(batch), "otrs.search_limit": str(search_limit)}.items():
                config.set_value(conn, key, value)
        conn.execute("VACUUM ANALYZE")
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        for name in ("bench_ours", "bench_baseline"):
            conn.execute(f"CREATE DATABASE {name} TEMPLATE bench_template")


def database_counts(dsn: str) -> tuple[int, int, int]:
    """(orders the run billed into, their ticket positions, ledger rows) in a bench database."""
    with psycopg.connect(dsn) as conn:
        orders, items = conn.execute(
            "SELECT count(DISTINCT l.oe_id), count(oi.id) FROM kivi_otrs.ledger l "
            "JOIN public.orderitems oi ON oi.id = l.orderitems_id WHERE l.source = 'bill'").fetchone() or (0, 0)
        ledger = conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone()
    return int(orders), int(items), int(ledger[0] if ledger else 0)


def fmt_mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def print_table(rows: list[tuple[Measured, str]], trace: bool) -> None:
    header = (f"{'variant':<40} {'tickets':>7} {'positions':>9} {'requests':>8} {'OTRS':>7} {'database':>8} "
              f"{'write-back':>10} {'wall':>7} {'peak RSS (start)':>17}" + (f" {'py heap peak':>12}" if trace else ""))
    print(header)
    print("-" * len(header))
    for m, label in rows:
        phases = m.extra.get("phases", {})
        print(f"{label:<40} {m.tickets:>7} {m.positions:>9} {m.total_requests:>8} {phases.get('otrs', 0):>6.1f}s "
              f"{phases.get('database', 0):>7.1f}s {phases.get('writeback', 0):>9.1f}s {m.wall:>6.1f}s "
              f"{fmt_mib(m.rss_peak_kib) + ' (' + fmt_mib(m.rss_start_kib) + ')':>17}"
              + (f" {m.py_peak / 2**20:>8.0f} MiB" if trace else ""))


def requests_line(m: Measured, tickets: int) -> str:
    """Requests per operation against 1 + searches + ceil(tickets / batch) for the batch sizes used."""
    ops = ", ".join(f"{k} {v}" for k, v in sorted(m.requests.items()))
    sizes = m.extra.get("sizes", [])
    searches = m.extra.get("searches", 0)
    ideal = 1 + searches + math.ceil(tickets / max(sizes[-1], 1)) if sizes else 0
    return (f"{ops}; TicketGet batch sizes {'/'.join(map(str, sizes)) or '-'} "
            f"(1 + {searches} searches + ceil({tickets}/{sizes[-1] if sizes else '-'}) = {ideal} at the final size)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--tickets", type=int, default=50000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per OTRS call (default 0.05)")
    parser.add_argument("--batch", type=int, default=50, help="otrs.batch_size, the first TicketGet batch")
    parser.add_argument("--parallel", type=int, default=4, help="otrs.parallel_requests of kivi-otrs' run")
    parser.add_argument("--search-limit", type=int, default=500, help="otrs.search_limit (the OTRS default is 500)")
    parser.add_argument("--fetch-only", action="store_true",
                        help="measure only the OTRS phase (no database): for big sizes or the 800 ms Znuny figure")
    parser.add_argument("--no-rerun", action="store_true", help="skip billing the same period a second time")
    parser.add_argument("--quick", action="store_true", help="200 customers, 2000 tickets, 5 ms latency")
    parser.add_argument("--seed", type=int, default=20261031)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also report the Python heap peak (tracemalloc; slows both variants down)")
    parser.add_argument("--profile", action="store_true", help="cProfile kivi-otrs' run, print the top 15 cumulative")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.tickets, args.latency = 200, 2000, 0.005
    if args.tickets < args.customers:
        parser.error("--tickets must be at least --customers (every customer gets a ticket)")

    t0 = time.perf_counter()
    double = DoubleProcess(args.customers, args.tickets, args.latency, args.search_limit, args.seed)
    rows: list[tuple[Measured, str]] = []
    counts: dict[str, tuple[int, int, int]] = {}
    seq_label = f"before: sequential, batch {args.batch}, halving, 1 customer per transaction"
    par_label = f"kivi-otrs: {args.parallel} parallel, measured batches"
    try:
        print(f"setup: {args.customers} customers, {args.tickets} tickets closed in October 2026 in the OTRS "
              f"stand-in (own process, {args.latency * 1000:g} ms per call), first batch {args.batch}, search limit "
              f"{args.search_limit}", flush=True)
        if args.fetch_only:
            for label, parallel, fixed in ((seq_label, 1, args.batch), (par_label, args.parallel, None)):
                print(f"{label} (OTRS only) ...", flush=True)
                rows.append((in_child(fetch_only, label, double, args.batch, args.search_limit, parallel, fixed),
                             label + " (OTRS only)"))
        else:
            with LocalCluster() as cluster:
                prepare_template(cluster, args.customers, double, args.batch, args.search_limit)
                print(f"  databases ready: {time.perf_counter() - t0:.1f} s", flush=True)
                seq_dsn, ours_dsn = cluster.dsn("bench_baseline"), cluster.dsn("bench_ours")
                print(f"{seq_label} ...", flush=True)
                rows.append((in_child(ours, "sequential", seq_dsn, double, args.tracemalloc, False, 1, args.batch),
                             seq_label))
                counts["sequential"] = database_counts(seq_dsn)
                print(f"{par_label} ...", flush=True)
                rows.append((in_child(ours, "kivi-otrs", ours_dsn, double, args.tracemalloc, args.profile,
                                      args.parallel, None), par_label))
                counts["kivi-otrs"] = database_counts(ours_dsn)
                if not args.no_rerun:
                    print("kivi-otrs again (same period) ...", flush=True)
                    rows.append((in_child(ours, "again", ours_dsn, double, args.tracemalloc, False, args.parallel,
                                          None), "kivi-otrs, same period again"))
                    counts["again"] = database_counts(ours_dsn)
    finally:
        double.stop()

    print()
    print(f"Monthly run: {args.customers} customers, {args.tickets} tickets, OTRS stand-in latency "
          f"{args.latency * 1000:g} ms per call, search limit {args.search_limit}")
    print_table(rows, args.tracemalloc)
    for m, label in rows:
        print(f"  {label}: {requests_line(m, args.tickets)}; stand-in CPU {m.double_cpu:.1f} s")
    seq, par = rows[0][0], rows[1][0]
    print(f"ratio sequential/kivi-otrs: wall time {seq.wall / par.wall:.1f}x, OTRS phase "
          f"{seq.fetch_wall / max(par.fetch_wall, 1e-9):.1f}x, requests {seq.total_requests / max(par.total_requests, 1):.1f}x, "
          f"peak RSS {seq.rss_peak_kib / max(par.rss_peak_kib, 1):.2f}x")
    print("peak RSS: VmHWM of the variant's own forked process (reset at its start"
          + ("" if par.hwm_reset else "; RESET FAILED, includes the parent's peak") + "); the stand-in's memory is "
          "not included.")
    ok = True
    for m, label in rows:
        if args.fetch_only:
            good = m.tickets == args.tickets
            print(f"correctness: {label}: {m.tickets} of {args.tickets} tickets fetched -> {'OK' if good else 'MISMATCH'}")
        elif m.name == "again":
            good = m.positions == 0 and m.failed == 0 and counts["again"] == counts["kivi-otrs"]
            print(f"correctness: {label}: added {m.positions} positions, database still {counts['again']} "
                  f"(orders, items, ledger rows) -> {'OK' if good else 'MISMATCH'}")
        else:
            good = (m.positions == args.tickets and m.billed == args.customers and m.failed == 0
                    and counts[m.name] == (args.customers, args.tickets, args.tickets))
            print(f"correctness: {label}: billed {m.billed}/{args.customers} customers, {m.positions} positions, "
                  f"database {counts[m.name]} (orders, items, ledger rows), {m.failed} failed "
                  f"-> {'OK' if good else 'MISMATCH ' + str(m.extra.get('errors'))}")
        ok = ok and good
    if par.profile:
        print("\ncProfile of kivi-otrs bill (top 15 cumulative):")
        print(par.profile)
    print(f"total bench time {time.perf_counter() - t0:.0f} s")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
