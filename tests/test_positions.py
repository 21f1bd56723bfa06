"""Order positions from tickets: texts, articles, quantities and the billing ledger."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from ticketdata import TicketData

from kivi_otrs import config, positions
from kivi_otrs.errors import BillingError, TemplateError
from kivi_otrs.render import Renderer

OCT = (date(2026, 10, 1), date(2026, 10, 31))


def settings(conn: psycopg.Connection[Any], **overrides: str) -> positions.BillingSettings:
    with conn.transaction():
        config.set_value(conn, "billing.default_part", "SYS-STD")
        for key, value in overrides.items():
            config.set_value(conn, key.replace("__", "."), value)
    return positions.BillingSettings.from_values(config.effective(conn))


def order_id(conn: psycopg.Connection[Any], ordnumber: str = "A-2026-001") -> int:
    row = conn.execute("SELECT id FROM public.oe WHERE ordnumber = %s", (ordnumber,)).fetchone()
    assert row is not None
    return int(row[0])


def new_order(conn: psycopg.Connection[Any], customer_id: int = 9001) -> int:
    row = conn.execute(
        "INSERT INTO public.oe (ordnumber, customer_id, taxzone_id, currency_id, record_type) "
        "SELECT 'A-NEU-' || nextval('public.id'), %s, min(id), 1, 'sales_order' FROM public.tax_zones RETURNING id",
        (customer_id,)).fetchone()
    assert row is not None
    return int(row[0])


def claim(conn: psycopg.Connection[Any], tickets: list[TicketData], target: positions.Target | None = None,
          renderer: Renderer | None = None, **kwargs: Any) -> positions.Plan:
    target = target or positions.load_target(conn, customer_number="KIVI-1001")
    return positions.claim(conn, target, tickets, *OCT, kwargs.pop("bs", None) or settings(conn),  # type: ignore[arg-type]
                           renderer or Renderer(), user="tester", **kwargs)


def save_positions(conn: psycopg.Connection[Any], oe_id: int, plan: positions.Plan) -> list[int]:
    """What kivitendo does when the user saves the order with the added rows."""
    ids = []
    for i, p in enumerate(plan.positions, start=100):
        row = conn.execute(
            "INSERT INTO public.orderitems (trans_id, parts_id, description, longdescription, qty, unit, position,"
            " recurring_billing_mode) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (oe_id, p["parts_id"], p["description"], p["longdescription"],
             Decimal(p["qty_as_number"].replace(".", "").replace(",", ".")), p["unit"], i,
             p.get("recurring_billing_mode", "always"))).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def ledger(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT ticket_number, state, minutes, oe_id IS NOT NULL, orderitems_id IS NOT NULL "
                        "FROM kivi_otrs.ledger ORDER BY id").fetchall()


def test_seed_example_position(conn: psycopg.Connection[Any]) -> None:
    """Ticket 281653 'Beamer' with 20 min: the seed's description and text, quantity in hours on the rate article."""
    bs = settings(conn, billing__rounding_increment_minutes="0")
    plan = claim(conn, [TicketData(281653, "281653", "Beamer", Decimal(20))], bs=bs)
    [pos] = plan.positions
    assert pos["description"] == "Systemtechnik Stundensatz"
    assert pos["longdescription"].startswith("Nummer: 281653 Titel: Beamer Erfasste Zeit: 20 min<!-- kivi-otrs:")
    assert pos["qty_as_number"] == "0,33333" and pos["unit"] == "Std"
    assert "sellprice_as_number" not in pos and pos["recurring_billing_mode"] == "once"
    part = conn.execute("SELECT id FROM public.parts WHERE partnumber = 'SYS-STD'").fetchone()
    assert part is not None and pos["parts_id"] == part[0]


def test_rounding_up_to_the_quarter_hour_and_minimum(conn: psycopg.Connection[Any]) -> None:
    """20 min rounds up to 30 (0,50 Std), 5 min with a 15 min minimum bills 15; raw minutes stay in the text."""
    bs = settings(conn, billing__minimum_minutes="15", billing__rounding_increment_minutes="15")
    plan = claim(conn, [TicketData(1, "1", "a", Decimal(20)), TicketData(2, "2", "b", Decimal(5))], bs=bs)
    assert [p["qty_as_number"] for p in plan.positions] == ["0,50", "0,25"]
    assert "Erfasste Zeit: 20 min (berechnet: 30 min)" in plan.positions[0]["longdescription"]
    assert conn.execute("SELECT minutes, billed_minutes FROM kivi_otrs.ledger ORDER BY ticket_id").fetchall() == [
        (Decimal("20.00"), Decimal("30.00")), (Decimal("5.00"), Decimal("15.00"))]


def test_nearest_rounding_and_english_with_other_number_format(conn: psycopg.Connection[Any]) -> None:
    """Nearest quarter hour, English template, 1,000.00 format."""
    bs = settings(conn, billing__rounding_mode="nearest")
    plan = claim(conn, [TicketData(3, "3", "c", Decimal(22))], bs=bs, renderer=Renderer("en", "1,000.00"))
    assert plan.positions[0]["qty_as_number"] == "0.25"
    assert plan.positions[0]["longdescription"].startswith("Number: 3 Title: c Recorded time: 22 min (billed: 15 min)")


def test_article_is_prefilled_from_the_order(conn: psycopg.Connection[Any]) -> None:
    """The order's existing time-based position decides the article, ahead of rules and default."""
    conn.execute("INSERT INTO kivi_otrs.article_rule (customer_number, partnumber) VALUES ('KIVI-1001', 'SUP-MIN')")
    target = positions.load_target(conn, order_id=order_id(conn))
    plan = claim(conn, [TicketData(4, "4", "d", Decimal(45))], target=target)
    assert plan.new[0]["article_source"] == "order" and plan.new[0]["partnumber"] == "SYS-STD"


def test_customer_rule_then_queue_rule_then_default(conn: psycopg.Connection[Any]) -> None:
    """A customer rule beats the default; a non-billable queue is skipped with a reason; minutes stay minutes."""
    conn.execute("INSERT INTO kivi_otrs.article_rule (customer_number, partnumber) VALUES ('KIVI-1001', 'SUP-MIN')")
    conn.execute("INSERT INTO kivi_otrs.article_rule (queue, billable) VALUES ('Intern', false)")
    plan = claim(conn, [TicketData(5, "5", "e", Decimal(50)), TicketData(6, "6", "f", Decimal(10), queue="Intern")])
    assert [(n["partnumber"], n["qty"]) for n in plan.new] == [("SUP-MIN", "60.00000")]
    assert plan.positions[0]["unit"] == "min" and plan.positions[0]["qty_as_number"] == "60,00"
    assert plan.skipped[0]["ticket_number"] == "6" and "not billable" in plan.skipped[0]["reason"]


def test_zero_time_and_foreign_tickets_are_skipped(conn: psycopg.Connection[Any]) -> None:
    """No accounted time, or a ticket of another customer: skipped with the reason."""
    plan = claim(conn, [TicketData(7, "7", "g", Decimal(0)), TicketData(8, "8", "h", Decimal(30), customer_id="X")])
    assert plan.positions == []
    assert {s["ticket_number"]: s["reason"] for s in plan.skipped} == {
        "7": "no accounted time", "8": "ticket belongs to customer 'X'"}
    assert ledger(conn) == []


def test_missing_article_is_a_skip_reason_not_a_crash(conn: psycopg.Connection[Any]) -> None:
    """Without any article configured each ticket says what to set."""
    bs = settings(conn, billing__default_part="")
    plan = claim(conn, [TicketData(9, "9", "i", Decimal(30))], bs=bs)
    assert "set billing.default_part" in plan.skipped[0]["reason"]


def test_a_ticket_is_never_claimed_twice(conn: psycopg.Connection[Any]) -> None:
    """The second click finds the ticket reserved and adds nothing."""
    first = claim(conn, [TicketData(10, "10", "j", Decimal(30))])
    second = claim(conn, [TicketData(10, "10", "j", Decimal(30))])
    assert len(first.positions) == 1 and second.positions == []
    assert "reserved until" in second.billed[0]["where"]
    assert second.message() == "0 new position(s) from 1 closed ticket(s); 1 already billed or reserved"


def test_two_clicks_at_once_give_one_set_of_positions(migrated_dsn: str) -> None:
    """Two concurrent claims for the same tickets: exactly one gets the positions."""
    tickets = [TicketData(i, str(i), f"t{i}", Decimal(15)) for i in range(20, 60)]
    barrier = threading.Barrier(2)
    results: list[positions.Plan] = []

    def click() -> None:
        with psycopg.connect(migrated_dsn, autocommit=True) as c:
            bs = settings(c)
            target = positions.load_target(c, customer_number="KIVI-1001")
            barrier.wait()
            results.append(positions.claim(c, target, tickets, *OCT, bs, Renderer(), user="u"))  # type: ignore[arg-type]

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r.positions) for r in results) == [0, 40]
    with psycopg.connect(migrated_dsn) as c:
        assert c.execute("SELECT count(*), count(DISTINCT ticket_id) FROM kivi_otrs.ledger").fetchone() == (40, 40)


def test_saving_the_order_bills_and_deleting_releases(conn: psycopg.Connection[Any]) -> None:
    """kivitendo saves the rows: billed on that order; deleting a position or the order releases the tickets."""
    oe = new_order(conn)
    plan = claim(conn, [TicketData(11, "11", "k", Decimal(30)), TicketData(12, "12", "l", Decimal(60))],
                 target=positions.load_target(conn, order_id=oe))
    item_ids = save_positions(conn, oe, plan)
    assert ledger(conn) == [("11", "billed", Decimal("30.00"), True, True), ("12", "billed", Decimal("60.00"), True, True)]
    again = claim(conn, [TicketData(11, "11", "k", Decimal(30))])
    assert again.positions == [] and again.billed[0]["where"].startswith("billed on order A-NEU-")
    conn.execute("UPDATE public.orderitems SET qty = 2, longdescription = 'edited' WHERE id = %s", (item_ids[0],))
    assert [r[1] for r in ledger(conn)] == ["billed", "billed"]  # editing keeps the link
    conn.execute("DELETE FROM public.orderitems WHERE id = %s", (item_ids[0],))
    assert [r[1] for r in ledger(conn)] == ["released", "billed"]
    assert len(claim(conn, [TicketData(11, "11", "k", Decimal(30))]).positions) == 1
    conn.execute("DELETE FROM public.oe WHERE id = %s", (oe,))
    assert conn.execute("SELECT state FROM kivi_otrs.ledger WHERE ticket_id = 12").fetchone() == ("released",)


def test_kivitendo_resaving_all_rows_keeps_tickets_billed(conn: psycopg.Connection[Any]) -> None:
    """A save that deletes and re-inserts the rows (markers still in the text) leaves them billed once."""
    oe = new_order(conn)
    plan = claim(conn, [TicketData(13, "13", "m", Decimal(30))], target=positions.load_target(conn, order_id=oe))
    save_positions(conn, oe, plan)
    with conn.transaction():
        conn.execute("DELETE FROM public.orderitems WHERE trans_id = %s", (oe,))
        save_positions(conn, oe, plan)
    assert ledger(conn) == [("13", "billed", Decimal("30.00"), True, True)]


def test_reopened_ticket_bills_only_the_new_time(conn: psycopg.Connection[Any]) -> None:
    """30 min billed in October; closed again in November with 75 min in total: 45 min are new."""
    oe = new_order(conn)
    save_positions(conn, oe, claim(conn, [TicketData(14, "14", "n", Decimal(30))],
                                   target=positions.load_target(conn, order_id=oe)))
    plan = claim(conn, [TicketData(14, "14", "n", Decimal(75))])
    assert plan.new[0]["minutes"] == "75" and plan.new[0]["delta"] is True
    assert plan.new[0]["billed_minutes"] == "45" and plan.positions[0]["qty_as_number"] == "0,75"


def test_unsaved_reservations_expire_or_can_be_released(conn: psycopg.Connection[Any]) -> None:
    """A reservation never saved is offered again after its time, or at once after release."""
    claim(conn, [TicketData(15, "15", "o", Decimal(30))])
    conn.execute("UPDATE kivi_otrs.ledger SET reserved_until = now() - interval '1 minute'")
    assert len(claim(conn, [TicketData(15, "15", "o", Decimal(30))]).positions) == 1
    assert positions.release(conn, None, "KIVI-1001", "user gave up") == ["15"]
    assert len(claim(conn, [TicketData(15, "15", "o", Decimal(30))]).positions) == 1


def test_periodic_invoice_orders_get_recurring_billing_mode_once(conn: psycopg.Connection[Any]) -> None:
    """The demo order has periodic invoices: positions go into exactly one invoice (mode 'once')."""
    target = positions.load_target(conn, order_id=order_id(conn))
    assert target.periodic is True
    plan = claim(conn, [TicketData(16, "16", "p", Decimal(30))], target=target)
    assert plan.positions[0]["recurring_billing_mode"] == "once"
    save_positions(conn, target.oe_id or 0, plan)

    def periodic_invoice_run(invnumber: str) -> list[str]:
        """kivitendo's CreatePeriodicInvoices rule: 'always' rows every period, 'once' rows until invoiced."""
        invoice = conn.execute("INSERT INTO public.ar (invnumber, customer_id, taxzone_id, currency_id) SELECT %s, "
                               "customer_id, taxzone_id, currency_id FROM public.oe WHERE id = %s RETURNING id",
                               (invnumber, target.oe_id)).fetchone()
        assert invoice is not None
        invoice_id = invoice[0]
        rows = conn.execute(
            "SELECT id, description, recurring_billing_mode::text FROM public.orderitems WHERE trans_id = %s AND "
            "(recurring_billing_mode = 'always' OR (recurring_billing_mode = 'once' AND recurring_billing_invoice_id "
            "IS NULL)) ORDER BY position", (target.oe_id,)).fetchall()
        conn.execute("UPDATE public.orderitems SET recurring_billing_invoice_id = %s WHERE id = ANY(%s) AND "
                     "recurring_billing_mode = 'once'", (invoice_id, [r[0] for r in rows]))
        return [r[1] for r in rows]

    assert periodic_invoice_run("R-2026-11") == ["Wartungspauschale", "Systemtechnik Stundensatz"]
    assert periodic_invoice_run("R-2026-12") == ["Wartungspauschale"]
    assert conn.execute("SELECT state, invoice_id IS NOT NULL FROM kivi_otrs.ledger WHERE ticket_id = 16").fetchall() == [
        ("invoiced", True)]


def test_untrusted_ticket_titles_are_escaped(conn: psycopg.Connection[Any]) -> None:
    """HTML and template syntax in an OTRS title land as text, never as markup or code."""
    title = "<script>alert(1)</script>\n{{ 7*7 }} & Co"
    plan = claim(conn, [TicketData(17, "17", title, Decimal(30))])
    long = plan.positions[0]["longdescription"].rsplit("<!-- kivi-otrs:", 1)[0]  # the marker is a random uuid
    assert "<script>" not in long and "&lt;script&gt;alert(1)&lt;/script&gt;" in long
    assert "{{ 7*7 }}" in long and "49" not in long


def test_admin_templates_are_sandboxed_and_strict(conn: psycopg.Connection[Any]) -> None:
    """An override with an unknown variable or an unsafe attribute fails with one clear line."""
    conn.execute("INSERT INTO kivi_otrs.template (name, language, body) VALUES ('description', 'de', '{{ nope }}')")
    with pytest.raises(TemplateError, match="unknown variable"):
        claim(conn, [TicketData(18, "18", "q", Decimal(30))], renderer=Renderer.from_database(conn, "de", "1.000,00"))
    conn.execute("UPDATE kivi_otrs.template SET body = '{{ ticket.__class__.__mro__ }}'")
    with pytest.raises(TemplateError, match="sandbox"):
        claim(conn, [TicketData(18, "18", "q", Decimal(30))], renderer=Renderer.from_database(conn, "de", "1.000,00"))
    conn.execute("UPDATE kivi_otrs.template SET body = 'Support {{ customer.name }}'")
    plan = claim(conn, [TicketData(18, "18", "q", Decimal(30))], renderer=Renderer.from_database(conn, "de", "1.000,00"))
    assert plan.positions[0]["description"] == "Support Müller & Söhne GmbH"
    assert ledger(conn) == [("18", "reserved", Decimal("30.00"), False, False)]


def test_dry_run_writes_nothing(conn: psycopg.Connection[Any]) -> None:
    """--dry-run previews the positions without reserving."""
    plan = claim(conn, [TicketData(19, "19", "r", Decimal(30))], dry_run=True)
    assert len(plan.positions) == 1 and "kivi-otrs:" not in plan.positions[0]["longdescription"]
    assert ledger(conn) == []


def test_prices_only_when_configured(conn: psycopg.Connection[Any]) -> None:
    """customer_hourly_rate sends the customer's rate per unit; default leaves pricing to kivitendo."""
    bs = settings(conn, billing__price_source="customer_hourly_rate")
    plan = claim(conn, [TicketData(21, "21", "s", Decimal(30))], bs=bs)
    assert plan.positions[0]["sellprice_as_number"] == "95,00"


def test_quotation_is_refused(conn: psycopg.Connection[Any]) -> None:
    """Only sales orders take ticket positions."""
    conn.execute("UPDATE public.oe SET record_type = 'sales_quotation' WHERE ordnumber = 'A-2026-001'")
    with pytest.raises(BillingError, match="not a sales order"):
        positions.load_target(conn, order_id=order_id(conn))


def test_reports_billed_and_reconciliation(conn: psycopg.Connection[Any]) -> None:
    """The monthly report lists saved tickets (escaped in HTML); deleted positions show up for reconciliation."""
    from kivi_otrs import reports

    oe = new_order(conn)
    plan = claim(conn, [TicketData(31, "31", "<b>Drucker</b>", Decimal(20)), TicketData(32, "32", "VPN", Decimal(45))],
                 target=positions.load_target(conn, order_id=oe))
    item_ids = save_positions(conn, oe, plan)
    report = reports.billed(conn, date(2026, 10, 5), "KIVI-1001")
    assert [r[2] for r in report.rows] == ["31", "32"]
    assert report.title == "Billed tickets 2026-10 for customer KIVI-1001: 2 tickets, 65 min"
    assert "&lt;b&gt;Drucker&lt;/b&gt;" in report.html() and "<b>Drucker</b>" not in report.html()
    assert report.csv().splitlines()[1].startswith("KIVI-1001,Müller & Söhne GmbH,31,<b>Drucker</b>")
    assert reports.billed(conn, date(2026, 11, 1)).rows == []
    conn.execute("DELETE FROM public.orderitems WHERE id = %s", (item_ids[0],))
    deleted = reports.reconciliation(conn)[0]
    assert [r[1] for r in deleted.rows] == ["31"]


def test_late_save_after_expiry_is_refused_when_a_colleague_billed_the_ticket(conn: psycopg.Connection[Any]) -> None:
    """An expired reservation saved after the ticket was billed on another order is refused, naming that order."""
    first_order, second_order = new_order(conn), new_order(conn)
    late = claim(conn, [TicketData(41, "41", "x", Decimal(30))], target=positions.load_target(conn, order_id=first_order))
    conn.execute("UPDATE kivi_otrs.ledger SET reserved_until = now() - interval '1 minute'")
    again = claim(conn, [TicketData(41, "41", "x", Decimal(30))], target=positions.load_target(conn, order_id=second_order))
    save_positions(conn, second_order, again)
    second_number = conn.execute("SELECT ordnumber FROM public.oe WHERE id = %s", (second_order,)).fetchone()
    with pytest.raises(psycopg.Error, match=f"Ticket 41 ist bereits abgerechnet in Auftrag {second_number[0]}"):
        with conn.transaction():
            save_positions(conn, first_order, late)
    assert conn.execute("SELECT count(*) FROM public.orderitems WHERE trans_id = %s", (first_order,)).fetchone() == (0,)
    assert conn.execute("SELECT state, oe_id FROM kivi_otrs.ledger WHERE ticket_id = 41 ORDER BY id").fetchall() == [
        ("reserved", first_order), ("billed", second_order)]


def test_doctor_reports_a_ticket_billed_twice(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """Ledger entries billing more minutes than the ticket has (e.g. from before 0.2) show up as over-billed."""
    from kivi_otrs import doctor

    first_order, second_order = new_order(conn), new_order(conn)
    first = claim(conn, [TicketData(41, "41", "x", Decimal(30))], target=positions.load_target(conn, order_id=first_order))
    save_positions(conn, first_order, first)
    conn.execute("UPDATE kivi_otrs.ledger SET state = 'released'")
    again = claim(conn, [TicketData(41, "41", "x", Decimal(30))], target=positions.load_target(conn, order_id=second_order))
    save_positions(conn, second_order, again)
    conn.execute("UPDATE kivi_otrs.ledger SET state = 'billed'")  # what the old trigger could leave behind
    finding = [f for f in doctor.diagnose(migrated_dsn) if f.check == "ledger" and "beyond" in f.message]
    assert len(finding) == 1 and finding[0].examples[0].startswith("ticket 41 (KIVI-1001): 60.00 of 30.00 min")

