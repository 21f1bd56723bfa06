"""Benchmark: a burst of simultaneous button clicks (dry run) against ``kivi-otrs serve``.

Measures the endpoint on waitress against the old hand-written ``http.server``
implementation (kept below as the baseline, unchanged apart from its name), in the same
run, on a throwaway PostgreSQL with the demo data and the OTRS stand-in. Every click is
one connection: POST /positions for a customer with 5 closed tickets, ``dry_run`` (the
positions are computed in a read-only transaction, nothing is reserved). Prints answered,
failed (HTTP status other than 200) and dropped connections (refused, reset, timed out),
p50/p95/max latency and the ratios.

    python bench/bench_endpoint.py                      # 200 clicks at once
    python bench/bench_endpoint.py --clicks 500 --otrs-latency 0.05 --threads 16
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import json
import logging
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from kivi_otrs import config, migrate
from kivi_otrs.demo import load_kivitendo
from kivi_otrs.endpoint import EndpointServer, Tuning, load_client
from kivi_otrs.errors import KiviOtrsError
from kivi_otrs.otrs_double import OtrsDouble
from kivi_otrs.sandbox import LocalCluster
from kivi_otrs.service import Request, make_positions

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105  (a throwaway test token)
BODY = json.dumps({"customer_id": 9001, "from": "2026-10-01", "to": "2026-10-31", "dry_run": True}).encode()


class OldHandler(BaseHTTPRequestHandler):
    """The endpoint before waitress (http.server, listen backlog 5, no socket timeout), as the baseline."""

    server: OldServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        header = self.headers.get("Authorization", "")
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), TOKEN.encode()):
            self._send(401, {"error": "missing or wrong token"})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        request = Request(customer_db_id=int(body["customer_id"]),
                          date_from=datetime.fromisoformat(body["from"]).date(),
                          date_to=datetime.fromisoformat(body["to"]).date(), dry_run=bool(body.get("dry_run")),
                          user="bench")
        try:
            plan, _period = make_positions(self.server.dsn, request)
        except KiviOtrsError as exc:
            self._send(503, {"error": str(exc)})
            return
        except Exception as exc:
            self._send(500, {"error": f"unexpected {type(exc).__name__}"})
            return
        self._send(200, plan.as_dict())


class OldServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        super().__init__(("127.0.0.1", 0), OldHandler)


def burst(host: str, port: int, clicks: int, timeout: float) -> dict[str, Any]:
    """``clicks`` connections released at the same instant; outcome and latency of each."""
    barrier = threading.Barrier(clicks)
    latencies: list[float] = []
    failed: dict[str, int] = {}
    dropped: dict[str, int] = {}
    lock = threading.Lock()

    def click() -> None:
        barrier.wait()
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("POST", "/positions", BODY, {"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                if response.status == 200 and len(json.loads(data)["positions"]) == 5:
                    latencies.append(elapsed)
                else:
                    key = f"HTTP {response.status}: {json.loads(data).get('error', '')[:60]}"
                    failed[key] = failed.get(key, 0) + 1
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                dropped[type(exc).__name__] = dropped.get(type(exc).__name__, 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=click) for _ in range(clicks)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"wall": time.perf_counter() - started, "latencies": sorted(latencies), "failed": failed, "dropped": dropped}


def report(name: str, result: dict[str, Any], clicks: int) -> float:
    lat = result["latencies"]
    p95 = lat[max(0, int(len(lat) * 0.95) - 1)] if lat else float("nan")
    p50 = statistics.median(lat) if lat else float("nan")
    dropped = sum(result["dropped"].values())
    failed = sum(result["failed"].values())
    print(f"{name:<22} {len(lat):>4}/{clicks} answered 200, {failed:>4} failed, {dropped:>4} dropped; "
          f"p50 {p50 * 1000:7.0f} ms, p95 {p95 * 1000:7.0f} ms, max {(lat[-1] if lat else 0) * 1000:7.0f} ms; "
          f"burst done in {result['wall']:.1f} s")
    for kind, detail in (("failed", result["failed"]), ("dropped", result["dropped"])):
        for key, count in sorted(detail.items()):
            print(f"{'':<22} {kind} {count}x {key}")
    return p95


def run(dsn: str, clicks: int, latency: float, timeout: float, threads: int) -> None:
    with OtrsDouble() as otrs:
        otrs.latency = latency
        for i in range(5):
            otrs.add_ticket(100 + i, f"Ticket {i}", "KIVI-1001", 15 + i, datetime(2026, 10, 3 + i, 9, tzinfo=UTC),
                            number=f"20261003{i:08d}")
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            for key, value in {"otrs.base_url": otrs.base_url, "otrs.user": otrs.user, "otrs.password": otrs.password,
                               "billing.default_part": "SYS-STD"}.items():
                config.set_value(conn, key, value)

        print(f"{clicks} simultaneous clicks (dry run, 5 tickets each, OTRS stand-in latency {latency * 1000:.0f} ms "
              f"per call, client timeout {timeout:.0f} s, {threads} waitress threads)")
        servers: list[tuple[str, Callable[[], tuple[Any, str, int, Callable[[], None]]]]] = []

        def new() -> tuple[Any, str, int, Callable[[], None]]:
            server = EndpointServer([load_client(dsn, token=TOKEN)], port=0, tuning=Tuning(threads=threads))
            server.start_background()
            host, port = server.addresses[0]
            return server, host, port, server.shutdown

        def old() -> tuple[Any, str, int, Callable[[], None]]:
            server = OldServer(dsn)
            threading.Thread(target=server.serve_forever, daemon=True).start()

            def stop() -> None:
                server.shutdown()
                server.server_close()
            return server, "127.0.0.1", server.server_address[1], stop

        servers = [("old http.server", old), ("waitress (kivi-otrs)", new)]
        p95s: dict[str, float] = {}
        results: dict[str, dict[str, Any]] = {}
        for name, factory in servers:
            _server, host, port, stop = factory()
            try:
                burst(host, port, 10, timeout)  # warm-up: OTRS session, connections
                results[name] = burst(host, port, clicks, timeout)
            finally:
                stop()
            p95s[name] = report(name, results[name], clicks)
        old_r, new_r = results["old http.server"], results["waitress (kivi-otrs)"]
        old_ok, new_ok = len(old_r["latencies"]), len(new_r["latencies"])
        print(f"ratio old/new: answered {new_ok}/{old_ok} = {new_ok / max(old_ok, 1):.2f}x, "
              f"p95 {p95s['old http.server'] / p95s['waitress (kivi-otrs)']:.2f}x "
              f"(old p95 over its answered clicks only), burst time {old_r['wall'] / new_r['wall']:.2f}x")
        lost = sum(new_r["dropped"].values()) + sum(new_r["failed"].values())
        print(f"target 0 dropped connections with waitress: {'met' if lost == 0 else f'NOT met ({lost} lost)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--otrs-latency", type=float, default=0.01, help="seconds per OTRS stand-in call")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout (kivitendo's [kivi_otrs] timeout)")
    parser.add_argument("--threads", type=int, default=Tuning.threads, help="waitress threads (kivi-otrs serve --threads)")
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N" for every queued click
    with LocalCluster() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = cluster.dsn("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            load_kivitendo(conn)
        migrate.migrate(dsn)
        run(dsn, args.clicks, args.otrs_latency, args.timeout, args.threads)


if __name__ == "__main__":
    main()
