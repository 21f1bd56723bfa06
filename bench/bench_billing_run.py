"""Benchmark: the monthly billing run (``kivi-otrs bill``) against the OTRS stand-in.

A month of closed tickets (default 5,000 customers, 50,000 tickets, 50 ms latency per
OTRS call) is billed by kivi-otrs' run (one batched fetch for all customers, then one
transaction per customer) and, in the same run on an identical copy of the database, by
a per-customer baseline: one ``billing_run.run(customers=[number])`` per customer whose
fetch asks OTRS for that customer only (a fresh client each time, like one click or one
cron invocation per customer). Prints OTRS requests, wall time and peak memory of both
and the ratio baseline/kivi-otrs, then bills the same period again to show that a re-run
adds nothing.

The stand-in runs in its own process (its CPU and memory are not the bridge's); every
variant runs in a forked child process whose peak RSS is measured (Linux VmHWM, reset
through /proc/self/clear_refs at the start of the variant).

    python bench/bench_billing_run.py --quick                 # < 1 minute
    python bench/bench_billing_run.py                         # 5000 customers, 50000 tickets, 50 ms: ~15 minutes
    python bench/bench_billing_run.py --baseline-customers 500  # baseline measured on 500 customers only
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import multiprocessing.connection
import pstats
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from kivi_otrs import billing_run, config, migrate
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.otrs import OtrsClient
from kivi_otrs.otrs_double import OtrsDouble
from kivi_otrs.period import Period
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


def ours(name: str, dsn: str, double: DoubleProcess, trace: bool, profile: bool) -> Measured:
    """kivi-otrs bill for all customers: one batched fetch, one transaction per customer."""
    result = Measured(name)
    fetch_time = [0.0]

    def fetch(settings: config.OtrsSettings, period: Period) -> list[Any]:
        start = time.perf_counter()
        try:
            return billing_run.fetch_all_from_otrs(settings, period)
        finally:
            fetch_time[0] = time.perf_counter() - start

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
    result.fetch_wall = fetch_time[0]
    result.customers = len(summary.customers)
    result.tickets = summary.tickets
    result.positions = sum(c.positions for c in summary.customers)
    result.billed = sum(1 for c in summary.customers if c.status == "billed")
    result.failed = len(summary.failed)
    result.extra = {"unknown": len(summary.unknown_customers),
                    "nothing": sum(1 for c in summary.customers if c.status == "nothing"),
                    "errors": [c.error for c in summary.failed[:3]]}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
        result.profile = out.getvalue()
    return result


def baseline(name: str, dsn: str, double: DoubleProcess, numbers: list[str], trace: bool, progress: bool) -> Measured:
    """One billing run per customer, each fetching only that customer's tickets with a fresh OTRS client."""
    result = Measured(name)
    fetch_time = [0.0]

    def fetch_one(number: str) -> Callable[[config.OtrsSettings, Period], list[Any]]:
        def fetch(settings: config.OtrsSettings, period: Period) -> list[Any]:
            start = time.perf_counter()
            client = OtrsClient(settings)
            try:
                return list(client.closed_tickets(number, period).tickets)
            finally:
                client.close()
                fetch_time[0] += time.perf_counter() - start
        return fetch

    counting = Counting(double)
    _maybe_traced(trace)
    start = time.perf_counter()
    step = max(1, len(numbers) // 10)
    for done, number in enumerate(numbers, start=1):
        summary = billing_run.run(dsn, date_from=DATE_FROM, date_to=DATE_TO, customers=[number],
                                  fetch_all=fetch_one(number), user="bench")
        result.customers += len(summary.customers)
        result.tickets += summary.tickets
        result.positions += sum(c.positions for c in summary.customers)
        result.billed += sum(1 for c in summary.customers if c.status == "billed")
        result.failed += len(summary.failed)
        if progress and done % step == 0 and done < len(numbers):
            elapsed = time.perf_counter() - start
            print(f"  baseline: {done}/{len(numbers)} customers, {elapsed:.0f} s, "
                  f"about {elapsed / done * (len(numbers) - done):.0f} s to go", flush=True)
    result.wall = time.perf_counter() - start
    result.py_peak = _traced_peak(trace)
    counting.done(result)
    result.fetch_wall = fetch_time[0]
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
    """(OTRS orders, their positions, ledger rows) in a bench database."""
    with psycopg.connect(dsn) as conn:
        orders, items = conn.execute(
            "SELECT count(DISTINCT oe.id), count(oi.id) FROM public.oe oe "
            "JOIN public.orderitems oi ON oi.trans_id = oe.id WHERE oe.ordnumber LIKE 'OTRS-%'").fetchone() or (0, 0)
        ledger = conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone()
    return int(orders), int(items), int(ledger[0] if ledger else 0)


def fmt_mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def print_table(rows: list[tuple[Measured, str]], trace: bool) -> None:
    header = (f"{'variant':<34} {'customers':>9} {'tickets':>8} {'positions':>9} {'requests':>9} {'wall time':>10} "
              f"{'peak RSS (start)':>18}" + (f" {'py heap peak':>12}" if trace else ""))
    print(header)
    print("-" * len(header))
    for m, label in rows:
        print(f"{label:<34} {m.customers:>9} {m.tickets:>8} {m.positions:>9} {m.total_requests:>9} {m.wall:>9.1f}s "
              f"{fmt_mib(m.rss_peak_kib) + ' (' + fmt_mib(m.rss_start_kib) + ')':>18}"
              + (f" {m.py_peak / 2**20:>8.0f} MiB" if trace else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--tickets", type=int, default=50000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per OTRS call (default 0.05)")
    parser.add_argument("--batch", type=int, default=50, help="otrs.batch_size, tickets per TicketGet")
    parser.add_argument("--search-limit", type=int, default=500, help="otrs.search_limit (the OTRS default is 500)")
    parser.add_argument("--baseline-customers", type=int, default=None,
                        help="measure the per-customer baseline on the first N customers only (default: all)")
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
    n_base = min(args.baseline_customers or args.customers, args.customers)

    t0 = time.perf_counter()
    double = DoubleProcess(args.customers, args.tickets, args.latency, args.search_limit, args.seed)
    try:
        with LocalCluster() as cluster:
            prepare_template(cluster, args.customers, double, args.batch, args.search_limit)
            print(f"setup: {args.customers} customers, {args.tickets} tickets closed in October 2026 in the OTRS "
                  f"stand-in (own process, {args.latency * 1000:g} ms per call), batch {args.batch}, search limit "
                  f"{args.search_limit}: {time.perf_counter() - t0:.1f} s", flush=True)
            ours_dsn, base_dsn = cluster.dsn("bench_ours"), cluster.dsn("bench_baseline")

            print("kivi-otrs bill ...", flush=True)
            first = in_child(ours, "kivi-otrs", ours_dsn, double, args.tracemalloc, args.profile)
            print(f"  {first.wall:.1f} s", flush=True)
            ours_counts = database_counts(ours_dsn)
            print("kivi-otrs bill again (same period) ...", flush=True)
            again = in_child(ours, "kivi-otrs again", ours_dsn, double, args.tracemalloc, False)
            again_counts = database_counts(ours_dsn)
            print(f"per-customer baseline on {n_base} customers ...", flush=True)
            numbers = [customer_number(i) for i in range(n_base)]
            base = in_child(baseline, "baseline", base_dsn, double, numbers, args.tracemalloc, True)
            base_counts = database_counts(base_dsn)
    finally:
        double.stop()

    print()
    print(f"Monthly run: {args.customers} customers, {args.tickets} tickets, OTRS stand-in latency "
          f"{args.latency * 1000:g} ms per call, TicketGet batch {args.batch}, search limit {args.search_limit}")
    partial = n_base < args.customers
    rows = [(first, "kivi-otrs bill (batched fetch)"), (again, "kivi-otrs bill, same period again"),
            (base, f"baseline: run per customer{' (N=' + str(n_base) + ')' if partial else ''}")]
    print_table(rows, args.tracemalloc)
    for m, label in rows:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(m.requests.items()))
        print(f"  {label}: {ops}; OTRS fetch {m.fetch_wall:.1f} s, database and rest {m.wall - m.fetch_wall:.1f} s; "
              f"stand-in CPU {m.double_cpu:.1f} s")
    scale = args.customers / n_base
    base_requests, base_wall = base.total_requests * scale, base.wall * scale
    if partial:
        print(f"  baseline measured on {n_base} of {args.customers} customers; scaled x{scale:g} to all: "
              f"~{base_requests:.0f} requests, ~{base_wall:.0f} s")
    print(f"ratio baseline/kivi-otrs{' (baseline scaled)' if partial else ''}: requests "
          f"{base_requests / max(first.total_requests, 1):.1f}x, wall time {base_wall / first.wall:.1f}x, "
          f"peak RSS {base.rss_peak_kib / max(first.rss_peak_kib, 1):.2f}x")
    print("peak RSS: VmHWM of the variant's own forked process (reset at its start"
          + ("" if first.hwm_reset else "; RESET FAILED, includes the parent's peak") + "); the stand-in's memory is "
          "not included. Baseline sessions: the process-wide session cache is kept, so the baseline logs in once "
          "(separate processes per customer would add one SessionCreate each).")

    ok_first = (first.positions == args.tickets and first.tickets == args.tickets and first.billed == args.customers
                and first.failed == 0 and ours_counts == (args.customers, args.tickets, args.tickets))
    ok_again = (again.positions == 0 and again.failed == 0 and again.extra["nothing"] == args.customers
                and again_counts == ours_counts)
    ok_base = (base.positions == base.tickets and base.billed == n_base and base.failed == 0
               and base_counts[1] == base.tickets)
    print(f"correctness: kivi-otrs billed {first.billed}/{args.customers} customers, {first.positions} positions for "
          f"{args.tickets} tickets, {ours_counts[0]} orders / {ours_counts[1]} order items / {ours_counts[2]} ledger rows "
          f"in the database, {first.failed} failed -> {'OK' if ok_first else 'MISMATCH ' + str(first.extra)}")
    print(f"correctness: re-run of the same period added {again.positions} positions ({again.extra['nothing']} "
          f"customers with nothing to bill, database still {again_counts[0]} orders / {again_counts[1]} items / "
          f"{again_counts[2]} ledger rows), {again.total_requests} requests, {again.wall:.1f} s "
          f"-> {'OK' if ok_again else 'MISMATCH'}")
    print(f"correctness: baseline billed {base.billed}/{n_base} customers, {base.positions} positions for "
          f"{base.tickets} tickets ({base_counts[1]} order items) -> {'OK' if ok_base else 'MISMATCH'}")
    if first.profile:
        print("\ncProfile of kivi-otrs bill (top 15 cumulative):")
        print(first.profile)
    print(f"total bench time {time.perf_counter() - t0:.0f} s")
    if not (ok_first and ok_again and ok_base):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
