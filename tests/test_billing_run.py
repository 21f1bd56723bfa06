"""kivi-otrs bill: customers billed in chunks, a failing customer fails alone, re-runs add nothing."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql
from ticketdata import TicketData

from kivi_otrs import billing_run, config
from kivi_otrs.cli import main
from kivi_otrs.errors import KiviOtrsError
from kivi_otrs.otrs_double import OtrsDouble

OCT_FROM, OCT_TO = date(2026, 10, 1), date(2026, 10, 31)


def tickets() -> list[TicketData]:
    return [
        TicketData(101, "2026101510000011", "Drucker druckt nicht", Decimal(135)),
        TicketData(102, "2026101610000021", "VPN Zugang", Decimal(20)),
        TicketData(103, "2026101710000039", "Rechnungsexport", Decimal(30), customer_id="KIVI-1002"),
        TicketData(104, "2026101810000048", "Fremd", Decimal(50), customer_id="NOT-IN-KIVI"),
        TicketData(105, "2026101910000057", "Leerzeichen", Decimal(15), customer_id="KD 4711"),
    ]


def configure(conn: psycopg.Connection[Any], **extra: str) -> None:
    with conn.transaction():
        for key, value in {"billing.default_part": "SYS-STD", "otrs.user": "agent", **extra}.items():
            config.set_value(conn, key, value)


def refuse_orders_of_customer_9002(conn: psycopg.Connection[Any]) -> None:
    """kivitendo-side refusal (a trigger on oe) of every order of KIVI-1002."""
    conn.execute("CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.customer_id = 9002 THEN RAISE EXCEPTION 'order lock for customer 9002'; END IF; "
                 "RETURN NEW; END $$")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON public.oe FOR EACH ROW EXECUTE FUNCTION public.refuse()")


def run(dsn: str, **kwargs: Any) -> billing_run.RunSummary:
    return billing_run.run(dsn, date_from=OCT_FROM, date_to=OCT_TO, fetch_all=lambda s, p: tickets(), user="cron",
                           **kwargs)


def test_bill_creates_one_draft_order_per_customer_and_reruns_add_nothing(conn: psycopg.Connection[Any],
                                                                         migrated_dsn: str) -> None:
    """Three customers billed, the unknown CustomerID reported; a second run writes nothing."""
    configure(conn)
    summary = run(migrated_dsn)
    by = {c.customer_number: c for c in summary.customers}
    assert {n: (c.status, c.positions) for n, c in by.items()} == {
        "KD 4711": ("billed", 1), "KIVI-1001": ("billed", 2), "KIVI-1002": ("billed", 1)}
    assert [by[n].ordnumber for n in ("KD 4711", "KIVI-1001", "KIVI-1002")] == ["AB-1000", "AB-1001", "AB-1002"]
    assert summary.unknown_customers == [{"customer_id": "NOT-IN-KIVI", "tickets": 1, "minutes": "50"}]
    items = conn.execute(
        "SELECT oe.ordnumber, oi.qty, oi.unit, oi.sellprice, oi.recurring_billing_mode::text FROM public.orderitems oi "
        "JOIN public.oe ON oe.id = oi.trans_id WHERE oe.ordnumber = 'AB-1001' ORDER BY oi.position"
    ).fetchall()
    assert items == [("AB-1001", Decimal("2.25000"), "Std", Decimal("95.00000"), "once"),
                     ("AB-1001", Decimal("0.50000"), "Std", Decimal("95.00000"), "once")]
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE state = 'billed'").fetchone() == (4,)
    assert conn.execute("SELECT netamount FROM public.oe WHERE ordnumber = 'AB-1001'").fetchone() == (
        Decimal("261.25000"),)
    audit = conn.execute("SELECT actor, action, details->'tickets' FROM kivi_otrs.audit "
                         "WHERE customer_number = 'KIVI-1002'").fetchall()
    assert audit == [("cron", "bill", ["2026101710000039"])]

    again = run(migrated_dsn)
    assert {c.status for c in again.customers} == {"nothing"}
    assert conn.execute("SELECT count(*) FROM public.oe WHERE ordnumber LIKE 'AB-%'").fetchone() == (3,)
    assert conn.execute("SELECT sonumber FROM public.defaults").fetchone() == ("AB-1002",)


def test_a_failing_customer_does_not_touch_the_others(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """kivitendo refuses the order of one customer: that customer is reported, the others are billed."""
    configure(conn)
    refuse_orders_of_customer_9002(conn)
    summary = run(migrated_dsn)
    failed = {c.customer_number: c.error for c in summary.failed}
    assert failed == {"KIVI-1002": "order lock for customer 9002"}
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE customer_number = 'KIVI-1002'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE state = 'billed'").fetchone() == (3,)


def test_periodic_order_target_adds_once_positions_to_the_open_order(conn: psycopg.Connection[Any],
                                                                    migrated_dsn: str) -> None:
    """run_target periodic-order: KIVI-1001's periodic order gets the rows with mode 'once'."""
    configure(conn, **{"billing.run_target": "periodic-order"})
    summary = run(migrated_dsn, customers=["KIVI-1001"])
    assert [(c.customer_number, c.ordnumber) for c in summary.customers] == [("KIVI-1001", "A-2026-001")]
    modes = conn.execute("SELECT recurring_billing_mode::text, count(*) FROM public.orderitems oi JOIN public.oe "
                         "ON oe.id = oi.trans_id WHERE oe.ordnumber = 'A-2026-001' GROUP BY 1 ORDER BY 1").fetchall()
    assert modes == [("always", 1), ("once", 2)]


def test_dry_run_writes_nothing(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """--dry-run reports what would be billed and leaves orders and ledger alone."""
    configure(conn)
    summary = run(migrated_dsn, dry_run=True)
    assert {c.customer_number: c.status for c in summary.customers}["KIVI-1001"] == "dry-run"
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM public.oe WHERE ordnumber LIKE 'AB-%'").fetchone() == (0,)


def test_a_later_run_for_the_month_adds_to_the_months_open_draft(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """A ticket closed late in the month and billed by a second run lands in the same draft order, no new number."""
    configure(conn)
    first = run(migrated_dsn, customers=["KIVI-1001"])
    late = TicketData(106, "2026103010000066", "Nachzuegler", Decimal(15))
    second = billing_run.run(migrated_dsn, date_from=OCT_FROM, date_to=OCT_TO, customers=["KIVI-1001"], user="cron",
                             fetch_all=lambda s, p: [*tickets(), late])
    assert first.customers[0].ordnumber == second.customers[0].ordnumber
    assert second.customers[0].positions == 1
    assert conn.execute("SELECT count(*) FROM public.orderitems oi JOIN public.oe ON oe.id = oi.trans_id "
                        "WHERE oe.ordnumber = %s", (first.customers[0].ordnumber,)).fetchone() == (3,)


def test_sales_order_numbers_continue_kivitendos_number_range() -> None:
    """Prefix and zero padding kept, as kivitendo counts: AB-0999 -> AB-1000, 0042 -> 0043, X -> X1."""
    assert [billing_run.next_number(n) for n in ("AB-0999", "0042", "X", "", "2026-9")] == [
        "AB-1000", "0043", "X1", "1", "2026-10"]


def test_tickets_otrs_sent_but_not_billable_are_listed_with_their_reason(conn: psycopg.Connection[Any],
                                                                         migrated_dsn: str) -> None:
    """What the OTRS fetch left out (bad time, no CustomerID) shows in the run summary with its reason."""
    from kivi_otrs.otrs import TicketResult

    configure(conn)
    fetched = TicketResult(tickets=tickets()[:1], skipped=[{"ticket_id": 9, "ticket_number": "2026100910000099",
                                                             "title": "x", "reason": "accounted time -5 is negative"}])
    summary = billing_run.run(migrated_dsn, date_from=OCT_FROM, date_to=OCT_TO, fetch_all=lambda s, p: fetched,
                              user="cron")
    assert "ticket 2026100910000099 not billed: accounted time -5 is negative" in summary.text()


def test_one_customers_bad_data_fails_only_that_customer(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """A ticket whose minutes overflow the ledger fails its customer with one line; the others are billed."""
    configure(conn)
    bad = TicketData(107, "2026101010000077", "Riesig", Decimal("1e13"), customer_id="KIVI-1002")
    summary = billing_run.run(migrated_dsn, date_from=OCT_FROM, date_to=OCT_TO, user="cron",
                              fetch_all=lambda s, p: [*tickets()[:2], bad])
    by = {c.customer_number: c for c in summary.customers}
    assert by["KIVI-1001"].status == "billed" and by["KIVI-1002"].status == "failed"
    assert by["KIVI-1002"].error and "\n" not in by["KIVI-1002"].error


def test_write_back_queued_while_otrs_is_down_is_named_in_the_summary(conn: psycopg.Connection[Any],
                                                                      migrated_dsn: str) -> None:
    """With write-back on and OTRS unreachable, bill says how many updates wait (the CLI then exits 10)."""
    configure(conn, **{"writeback.enabled": "true", "otrs.base_url": "http://127.0.0.1:9/otrs/",
                       "otrs.connect_timeout": "0.2"})
    summary = run(migrated_dsn, customers=["KIVI-1001"])
    assert summary.writeback_pending == 2
    assert "write-back: 2 ticket update(s) queued for OTRS" in summary.text()
    assert summary.customers[0].status == "billed"


def test_customers_are_billed_in_chunks_and_a_failing_chunk_is_retried_customer_by_customer(
        conn: psycopg.Connection[Any], migrated_dsn: str, monkeypatch: Any) -> None:
    """Chunks of two customers: the chunk with the refused order is rolled back and billed one by one;
    the order numbers have no gap from the rolled-back attempt."""
    monkeypatch.setattr(billing_run, "CHUNK_CUSTOMERS", 2)
    configure(conn)
    refuse_orders_of_customer_9002(conn)
    summary = run(migrated_dsn)
    assert [(c.customer_number, c.status, c.ordnumber, c.positions) for c in summary.customers] == [
        ("KD 4711", "billed", "AB-1000", 1), ("KIVI-1001", "billed", "AB-1001", 2), ("KIVI-1002", "failed", None, 0)]
    assert conn.execute("SELECT sonumber FROM public.defaults").fetchone() == ("AB-1001",)
    rows = conn.execute("SELECT oe.ordnumber, oi.position, l.ticket_number, l.state FROM kivi_otrs.ledger l "
                        "JOIN public.orderitems oi ON oi.id = l.orderitems_id JOIN public.oe ON oe.id = oi.trans_id "
                        "ORDER BY 1, 2").fetchall()
    assert rows == [("AB-1000", 1, "2026101910000057", "billed"), ("AB-1001", 1, "2026101510000011", "billed"),
                    ("AB-1001", 2, "2026101610000021", "billed")]
    assert conn.execute("SELECT customer_number, count(*) FROM kivi_otrs.audit WHERE action = 'bill' "
                        "GROUP BY 1 ORDER BY 1").fetchall() == [("KD 4711", 1), ("KIVI-1001", 1)]


def test_one_chunk_holds_new_drafts_and_the_months_open_draft_side_by_side(conn: psycopg.Connection[Any],
                                                                          migrated_dsn: str) -> None:
    """KIVI-1001 already has this month's draft, the others get new ones: all in one chunk, positions
    numbered after the draft's existing ones, totals per order."""
    configure(conn)
    first = run(migrated_dsn, customers=["KIVI-1001"])
    late = TicketData(106, "2026103010000066", "Nachzuegler", Decimal(15))
    second = billing_run.run(migrated_dsn, date_from=OCT_FROM, date_to=OCT_TO, user="cron",
                             fetch_all=lambda s, p: [*tickets(), late])
    by = {c.customer_number: c for c in second.customers}
    assert {n: (c.status, c.ordnumber, c.positions, c.already_billed) for n, c in by.items()} == {
        "KD 4711": ("billed", "AB-1001", 1, 0), "KIVI-1001": ("billed", first.customers[0].ordnumber, 1, 2),
        "KIVI-1002": ("billed", "AB-1002", 1, 0)}
    positions = conn.execute("SELECT oi.position FROM public.orderitems oi JOIN public.oe ON oe.id = oi.trans_id "
                             "WHERE oe.ordnumber = %s ORDER BY 1", (first.customers[0].ordnumber,)).fetchall()
    assert positions == [(1,), (2,), (3,)]
    totals = conn.execute("SELECT ordnumber, netamount FROM public.oe WHERE ordnumber LIKE 'AB-%' ORDER BY 1").fetchall()
    assert totals == [("AB-1000", Decimal("285.00000")), ("AB-1001", Decimal("23.75000")),
                      ("AB-1002", Decimal("47.50000"))]


def test_a_lost_database_connection_stops_the_run_once(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                       monkeypatch: Any) -> None:
    """The connection dies while KIVI-1002 is billed: the run stops with one line, what was billed stays."""
    monkeypatch.setattr(billing_run, "CHUNK_CUSTOMERS", 1)
    configure(conn)
    conn.execute("CREATE FUNCTION public.die() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.customer_id = 9002 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
                 "RETURN NEW; END $$")
    conn.execute("CREATE TRIGGER die BEFORE INSERT ON public.oe FOR EACH ROW EXECUTE FUNCTION public.die()")
    summary = run(migrated_dsn)
    assert summary.aborted == ("lost the database connection after 2 customer(s) (2 billed); "
                               "run kivi-otrs bill again: it bills only what is missing")
    assert [(c.customer_number, c.status) for c in summary.customers] == [
        ("KD 4711", "billed"), ("KIVI-1001", "billed"), ("KIVI-1002", "failed")]
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE state = 'billed'").fetchone() == (3,)


def test_new_drafts_carry_kivitendos_delivery_date_so_the_order_screen_saves_them(conn: psycopg.Connection[Any],
                                                                                    migrated_dsn: str) -> None:
    """As kivitendo sets it on a new sales order: today + delivery_date_interval, a weekend moved to Monday;
    none when "set delivery date" is off (the real 4.1 order screen refuses to save a draft without it)."""
    configure(conn)
    conn.execute("UPDATE public.defaults SET deliverydate_on = true, delivery_date_interval = 5")
    conn.commit()
    run(migrated_dsn, customers=["KIVI-1001"])
    expected = conn.execute("SELECT d + CASE WHEN extract(isodow FROM d) >= 6 THEN 8 - extract(isodow FROM d)::int "
                            "ELSE 0 END FROM (SELECT current_date + 5 AS d) x").fetchone()
    assert conn.execute("SELECT reqdate FROM public.oe WHERE ordnumber = 'AB-1000'").fetchone() == expected
    assert conn.execute("SELECT extract(isodow FROM reqdate) < 6 FROM public.oe WHERE ordnumber = 'AB-1000'"
                        ).fetchone() == (True,)
    conn.execute("UPDATE public.defaults SET deliverydate_on = false")
    conn.commit()
    run(migrated_dsn, customers=["KIVI-1002"])
    assert conn.execute("SELECT reqdate FROM public.oe WHERE ordnumber = 'AB-1001'").fetchone() == (None,)


def test_positions_the_ledger_trigger_could_not_tie_fail_their_customer_instead_of_staying_reserved(
        conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """The trigger only warns on unexpected errors (kivitendo's save must go through); the run checks that
    every position got tied and bills such a customer not at all rather than with reservations that expire."""
    configure(conn)
    conn.execute("CREATE FUNCTION public.break_tie() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.customer_number = 'KIVI-1002' AND NEW.state = 'billed' THEN "
                 "RAISE EXCEPTION 'simulated ledger failure'; END IF; RETURN NEW; END $$")
    conn.execute("CREATE TRIGGER break_tie BEFORE UPDATE ON kivi_otrs.ledger FOR EACH ROW "
                 "EXECUTE FUNCTION public.break_tie()")
    conn.commit()
    summary = run(migrated_dsn)
    by = {c.customer_number: c for c in summary.customers}
    assert {n: c.status for n, c in by.items()} == {"KD 4711": "billed", "KIVI-1001": "billed", "KIVI-1002": "failed"}
    assert by["KIVI-1002"].error == "the billing ledger tied 0 of 1 positions; run kivi-otrs doctor"
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE customer_number = 'KIVI-1002'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM public.orderitems oi JOIN public.oe ON oe.id = oi.trans_id "
                        "WHERE oe.customer_id = 9002").fetchone() == (0,)


def test_the_run_takes_kivitendos_number_range_before_any_ticket_lock(conn: psycopg.Connection[Any],
                                                                      migrated_dsn: str) -> None:
    """kivitendo saves lock defaults first and tickets second (ledger trigger); a chunk that needs new order
    numbers does the same, so the two never wait for each other crosswise (deadlock)."""
    import threading
    import time

    configure(conn)
    conn.commit()
    holder = psycopg.connect(migrated_dsn)
    holder.execute("SELECT sonumber FROM public.defaults FOR UPDATE")
    summary: list[billing_run.RunSummary] = []
    worker = threading.Thread(target=lambda: summary.append(run(migrated_dsn)))
    worker.start()
    try:
        waiting = None
        for _ in range(200):
            waiting = conn.execute(
                "SELECT a.pid FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid() "
                "AND a.pid <> %s AND a.datname = current_database()", (holder.info.backend_pid,)).fetchone()
            conn.commit()
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "the run never waited for kivitendo's number range"
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'",
                            (waiting[0],)).fetchone()
        conn.commit()
        assert held == (0,), "the run held ticket locks while waiting for the number range"
    finally:
        holder.rollback()
        holder.close()
        worker.join(timeout=60)
    assert {c.status for c in summary[0].customers} == {"billed"}


def test_a_streamed_month_is_spooled_batch_by_batch_and_billed_with_its_skipped_tickets(
        conn: psycopg.Connection[Any], migrated_dsn: str, monkeypatch: Any) -> None:
    """Tickets arrive as a stream (as from OTRS): they are written to the run's temporary table in batches while
    the stream is still running (memory stays flat), then billed per customer; what OTRS left out is listed."""
    from kivi_otrs.otrs import TicketResult, TicketStream

    monkeypatch.setattr(billing_run._Spool, "BATCH", 10)
    writes: list[int] = []
    original = billing_run._Spool._write

    def counting(self: Any, batch: list[tuple[Any, ...]]) -> None:
        writes.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(billing_run._Spool, "_write", counting)
    configure(conn)
    found = TicketResult()
    written_before_end: list[int] = []

    def stream() -> Any:
        for i in range(45):
            yield TicketData(1000 + i, f"20261020{1000 + i}", f"Stream {i}\x00", Decimal(15),
                             customer_id=("KIVI-1001", "KIVI-1002", "NOT-IN-KIVI")[i % 3])
        found.skipped.append({"ticket_id": 9, "ticket_number": "2026100910000099", "title": "x",
                              "reason": "accounted time -5 is negative"})
        written_before_end.append(sum(writes))

    summary = billing_run.run(migrated_dsn, date_from=OCT_FROM, date_to=OCT_TO, user="cron",
                              fetch_all=lambda s, p: TicketStream(stream(), found))
    assert written_before_end == [40]  # four batches of ten were in the table before the stream ended
    by = {c.customer_number: (c.status, c.positions) for c in summary.customers}
    assert by == {"KIVI-1001": ("billed", 15), "KIVI-1002": ("billed", 15)}
    assert summary.unknown_customers == [{"customer_id": "NOT-IN-KIVI", "tickets": 15, "minutes": "225"}]
    assert "ticket 2026100910000099 not billed: accounted time -5 is negative" in summary.text()
    # (a NUL in a title would have failed the COPY: PostgreSQL text cannot hold it)
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE otrs_data->>'Title' LIKE 'Stream %%'"
                        ).fetchone() == (30,)


def written(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """What a billing run writes: orders, their rows, kivitendo's number range, ledger, audit, write-back queue."""
    row = conn.execute("SELECT (SELECT count(*) FROM public.oe), (SELECT count(*) FROM public.orderitems), "
                       "(SELECT sonumber FROM public.defaults), (SELECT count(*) FROM kivi_otrs.ledger), "
                       "(SELECT count(*) FROM kivi_otrs.audit), (SELECT count(*) FROM kivi_otrs.writeback)").fetchone()
    assert row is not None
    return tuple(row)


def test_a_role_without_temporary_gets_one_line_naming_the_grant_and_nothing_is_written(
        conn: psycopg.Connection[Any], migrated_dsn: str, otrs: OtrsDouble, capsys: Any) -> None:
    """bill spools the month into a temporary table: a role that may do everything else but whose TEMPORARY an
    admin revoked (from PUBLIC) gets one line naming the grant, from the run and from the CLI, without a password,
    before OTRS is asked and with nothing written; granted TEMPORARY, the same role bills the month."""
    role, password = f"kivi_bill_no_temp_{os.getpid()}", "Bill-Role-Secret-77"
    database = conn.info.dbname
    on_db = {"r": sql.Identifier(role), "db": sql.Identifier(database)}
    otrs.add_ticket(2, "Drucker druckt nicht", "KIVI-1001", 135, datetime(2026, 10, 3, 9, 30, tzinfo=UTC))
    otrs.add_ticket(3, "VPN Zugang", "KIVI-1001", 20, datetime(2026, 10, 4, 9, 30, tzinfo=UTC))
    otrs.add_ticket(4, "Rechnungsexport", "KIVI-1002", 30, datetime(2026, 10, 5, 9, 30, tzinfo=UTC))
    configure(conn, **{"otrs.base_url": otrs.base_url, "otrs.user": otrs.user, "otrs.password": otrs.password})
    conn.execute(sql.SQL("CREATE ROLE {r} LOGIN PASSWORD {pw}").format(r=sql.Identifier(role), pw=sql.Literal(password)))
    try:
        for schema in ("public", "kivi_otrs"):  # all kivi-otrs and kivitendo data, but no superuser, no membership
            names = {"s": sql.Identifier(schema), "r": sql.Identifier(role)}
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {r}").format(**names))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}").format(**names))
            conn.execute(sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}").format(**names))
            conn.execute(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {r}").format(**names))
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC").format(**on_db))
        assert conn.execute("SELECT rolsuper, has_database_privilege(%(r)s, current_database(), 'TEMPORARY') "
                            "FROM pg_roles WHERE rolname = %(r)s", {"r": role}).fetchone() == (False, False)
        role_dsn = conninfo.make_conninfo(migrated_dsn, user=role, password=password)
        before = written(conn)

        with pytest.raises(KiviOtrsError) as refused:
            billing_run.run(role_dsn, date_from=OCT_FROM, date_to=OCT_TO, user="cron")
        message = str(refused.value)
        assert len(message.splitlines()) == 1
        dbname = conn.execute("SELECT current_database()").fetchone()[0]
        assert "temporary table" in message and f"GRANT TEMPORARY ON DATABASE {dbname} TO {role}" in message
        assert password not in message
        with pytest.raises(SystemExit) as exited:
            main(["bill", "--dsn", role_dsn, "--from", "2026-10-01", "--to", "2026-10-31"])
        out, err = capsys.readouterr()
        assert exited.value.code == 1
        assert (out, err) == ("", f"Error: {message}\n")
        assert password not in out + err
        assert written(conn) == before
        assert not otrs.calls  # refused before the month was asked of OTRS

        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {db} TO {r}").format(**on_db))
        summary = billing_run.run(role_dsn, date_from=OCT_FROM, date_to=OCT_TO, user="cron")
        assert {c.customer_number: (c.status, c.positions) for c in summary.customers} == {
            "KIVI-1001": ("billed", 2), "KIVI-1002": ("billed", 1)}
        assert written(conn) == (before[0] + 2, before[1] + 3, "AB-1001", before[3] + 3, before[4] + 2, before[5])
        assert conn.execute("SELECT has_database_privilege('public', current_database(), 'TEMPORARY')"
                            ).fetchone() == (False,)  # the role's own grant did it
    finally:
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {db} TO PUBLIC").format(**on_db))
        conn.execute(sql.SQL("DROP OWNED BY {r}").format(**on_db))
        conn.execute(sql.SQL("DROP ROLE {r}").format(**on_db))
