"""No ticket billed twice or silently lost, whatever kivitendo's workflows do with a position.

Each test writes the rows kivitendo's own workflows write (order -> invoice with item record
links, save as new, quotation -> order, delivery order -> invoice, the long-description editor
dropping HTML comments, deleting a closed order) and checks what the ledger decides.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_positions import claim, new_order, save_positions, settings
from ticketdata import TicketData

from kivi_otrs import positions

RECORDED = Path(__file__).parent / "recorded" / "kivitendo-4.1.0"
MARKER = re.compile(r"<!-- kivi-otrs:[0-9a-f-]{36} -->")


def ordnumber(conn: psycopg.Connection[Any], oe_id: int) -> str:
    row = conn.execute("SELECT ordnumber FROM public.oe WHERE id = %s", (oe_id,)).fetchone()
    assert row is not None
    return str(row[0])


def state(conn: psycopg.Connection[Any], ticket_id: int) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT state, oe_id, invoice_id FROM kivi_otrs.ledger WHERE ticket_id = %s ORDER BY id",
                        (ticket_id,)).fetchall()


def billed_order(conn: psycopg.Connection[Any], *tickets: TicketData) -> tuple[int, list[int]]:
    """A saved sales order with one position per ticket (button + save)."""
    oe_id = new_order(conn)
    plan = claim(conn, list(tickets), target=positions.load_target(conn, order_id=oe_id))
    return oe_id, save_positions(conn, oe_id, plan)


def post_invoice(conn: psycopg.Connection[Any], oe_id: int, item_ids: list[int], via_delivery_order: bool = False) -> int:
    """kivitendo's "Rechnung erfassen" + "Buchen": invoice rows (comments stripped), item and record links, order closed."""
    ar = conn.execute("INSERT INTO public.ar (invnumber, customer_id, taxzone_id, currency_id) "
                      "SELECT nextval('public.id')::text, customer_id, taxzone_id, currency_id FROM public.oe "
                      "WHERE id = %s RETURNING id", (oe_id,)).fetchone()
    assert ar is not None
    delivery_order = None
    if via_delivery_order:
        row = conn.execute("INSERT INTO public.delivery_orders (donumber, customer_id, taxzone_id, currency_id, "
                           "record_type) SELECT 'LS-' || id, customer_id, taxzone_id, currency_id, "
                           "'sales_delivery_order' FROM public.oe WHERE id = %s RETURNING id", (oe_id,)).fetchone()
        assert row is not None
        delivery_order = row[0]
    for item_id in item_ids:
        source_table, source_id = "orderitems", item_id
        if via_delivery_order:
            do_item = conn.execute(
                "INSERT INTO public.delivery_order_items (delivery_order_id, parts_id, description, longdescription,"
                " qty, unit, position) SELECT %s, parts_id, description, longdescription, qty, unit, position"
                " FROM public.orderitems WHERE id = %s RETURNING id", (delivery_order, item_id)).fetchone()
            assert do_item is not None
            conn.execute("INSERT INTO public.record_links (from_table, from_id, to_table, to_id) "
                         "VALUES ('orderitems', %s, 'delivery_order_items', %s)", (item_id, do_item[0]))
            source_table, source_id = "delivery_order_items", do_item[0]
        inv = conn.execute(
            "INSERT INTO public.invoice (trans_id, parts_id, description, longdescription, qty, sellprice, unit, position)"
            " SELECT %s, parts_id, description, regexp_replace(longdescription, '<!--.*?-->', '', 'g'), qty, sellprice,"
            " unit, position FROM public.orderitems WHERE id = %s RETURNING id", (ar[0], item_id)).fetchone()
        assert inv is not None
        conn.execute("INSERT INTO public.record_links (from_table, from_id, to_table, to_id) VALUES (%s, %s, 'invoice', %s)",
                     (source_table, source_id, inv[0]))
    if via_delivery_order:  # as kivitendo 4.1.0 writes it: the invoice hangs on the delivery order, not on the order
        conn.execute("INSERT INTO public.record_links (from_table, from_id, to_table, to_id) "
                     "VALUES ('oe', %s, 'delivery_orders', %s), ('delivery_orders', %s, 'ar', %s)",
                     (oe_id, delivery_order, delivery_order, ar[0]))
    else:
        conn.execute("INSERT INTO public.record_links (from_table, from_id, to_table, to_id) VALUES ('oe', %s, 'ar', %s)",
                     (oe_id, ar[0]))
    conn.execute("UPDATE public.oe SET closed = true WHERE id = %s", (oe_id,))
    return int(ar[0])


def delete_order(conn: psycopg.Connection[Any], oe_id: int) -> None:
    """kivitendo's "Löschen": its delete triggers remove the order's record links too, then the order and positions."""
    conn.execute("DELETE FROM public.record_links WHERE (from_table = 'oe' AND from_id = %(id)s) "
                 "OR (to_table = 'oe' AND to_id = %(id)s) OR (from_table = 'orderitems' AND from_id IN "
                 "(SELECT id FROM public.orderitems WHERE trans_id = %(id)s))", {"id": oe_id})
    conn.execute("DELETE FROM public.oe WHERE id = %s", (oe_id,))


def copy_order(conn: psycopg.Connection[Any], oe_id: int, record_type: str = "sales_order",
               edit: Any = None) -> int:
    """kivitendo's "Als neu speichern" / quotation -> order: a new record, the positions' texts copied verbatim."""
    new = conn.execute(
        "INSERT INTO public.oe (ordnumber, customer_id, taxzone_id, currency_id, record_type) "
        "SELECT 'KOPIE-' || nextval('public.id'), customer_id, taxzone_id, currency_id, %s::public.order_types "
        "FROM public.oe WHERE id = %s RETURNING id", (record_type, oe_id)).fetchone()
    assert new is not None
    for parts_id, description, longdescription, qty, unit, position in conn.execute(
            "SELECT parts_id, description, longdescription, qty, unit, position FROM public.orderitems "
            "WHERE trans_id = %s ORDER BY position", (oe_id,)).fetchall():
        conn.execute("INSERT INTO public.orderitems (trans_id, parts_id, description, longdescription, qty, unit, "
                     "position) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (new[0], parts_id, description, edit(longdescription) if edit else longdescription, qty, unit,
                      position))
    return int(new[0])


def test_order_deleted_after_its_invoice_keeps_the_tickets_billed(conn: psycopg.Connection[Any]) -> None:
    """Order -> posted invoice -> order deleted: the tickets stay invoiced and the button does not offer them again."""
    oe_id, items = billed_order(conn, TicketData(51, "51", "Drucker", Decimal(30)), TicketData(52, "52", "VPN", Decimal(15)))
    ar_id = post_invoice(conn, oe_id, items)
    assert state(conn, 51) == [("invoiced", oe_id, ar_id)]
    delete_order(conn, oe_id)
    assert state(conn, 51) == [("invoiced", oe_id, ar_id)] and state(conn, 52) == [("invoiced", oe_id, ar_id)]
    again = claim(conn, [TicketData(51, "51", "Drucker", Decimal(30))],
                  target=positions.load_target(conn, order_id=new_order(conn)))
    assert again.positions == [] and again.billed[0]["state"] == "invoiced"
    assert again.billed[0]["where"].startswith("invoiced in ")


def test_removing_a_position_of_the_invoiced_order_does_not_release_its_ticket(conn: psycopg.Connection[Any]) -> None:
    """Editing the closed, invoiced order and removing a ticket position keeps the ticket invoiced."""
    oe_id, items = billed_order(conn, TicketData(53, "53", "Mail", Decimal(20)))
    post_invoice(conn, oe_id, items)
    conn.execute("DELETE FROM public.orderitems WHERE id = %s", (items[0],))
    assert [s for s, _, _ in state(conn, 53)] == ["invoiced"]


def test_invoice_through_a_delivery_order_marks_the_ticket_invoiced(conn: psycopg.Connection[Any]) -> None:
    """Order -> delivery order -> invoice: kivitendo's item links are followed back to the order position."""
    oe_id, items = billed_order(conn, TicketData(54, "54", "Server", Decimal(60)))
    ar_id = post_invoice(conn, oe_id, items, via_delivery_order=True)
    assert state(conn, 54) == [("invoiced", oe_id, ar_id)]


def test_deleted_invoice_gives_the_ticket_back_to_its_order_position(conn: psycopg.Connection[Any]) -> None:
    """An invoice deleted while the order position exists: billed again by that order; without it: released."""
    oe_id, items = billed_order(conn, TicketData(55, "55", "WLAN", Decimal(30)))
    ar_id = post_invoice(conn, oe_id, items)
    conn.execute("DELETE FROM public.ar WHERE id = %s", (ar_id,))
    assert state(conn, 55) == [("billed", oe_id, None)]
    conn.execute("DELETE FROM public.oe WHERE id = %s", (oe_id,))
    assert [s for s, _, _ in state(conn, 55)] == ["released"]


def test_save_as_new_of_a_billed_order_is_refused_naming_the_ticket_and_order(conn: psycopg.Connection[Any]) -> None:
    """"Als neu speichern" copies the marker: the copy's save fails with one line naming ticket and original order."""
    oe_id, _ = billed_order(conn, TicketData(56, "56", "Beamer", Decimal(20)))
    with pytest.raises(psycopg.Error, match=f"Ticket 56 ist bereits abgerechnet in Auftrag {ordnumber(conn, oe_id)}"):
        with conn.transaction():
            copy_order(conn, oe_id)
    assert state(conn, 56) == [("billed", oe_id, None)]


def test_copy_whose_marker_the_editor_dropped_is_still_recognised(conn: psycopg.Connection[Any]) -> None:
    """The long-description editor drops HTML comments: the copy is recognised by its text and refused."""
    oe_id, _ = billed_order(conn, TicketData(57, "57", "Toner", Decimal(20)))
    conn.execute("UPDATE public.orderitems SET longdescription = regexp_replace(longdescription, '<!--.*?-->', '', 'g') "
                 "WHERE trans_id = %s", (oe_id,))
    assert conn.execute("SELECT count(*) FROM public.orderitems WHERE longdescription LIKE '%%kivi-otrs%%'"
                        ).fetchone() == (0,)
    assert state(conn, 57) == [("billed", oe_id, None)]
    with pytest.raises(psycopg.Error, match="Ticket 57 ist bereits abgerechnet"):
        with conn.transaction():
            copy_order(conn, oe_id)


def test_copy_of_an_invoiced_order_is_refused_naming_the_invoice(conn: psycopg.Connection[Any]) -> None:
    """Save as new of an order whose invoice is posted: refused, the message says the ticket is invoiced."""
    oe_id, items = billed_order(conn, TicketData(58, "58", "Backup", Decimal(45)))
    post_invoice(conn, oe_id, items)
    with pytest.raises(psycopg.Error, match="Ticket 58 ist bereits abgerechnet \\(Rechnung zu Auftrag"):
        with conn.transaction():
            copy_order(conn, oe_id)


def test_copy_saved_after_the_original_was_deleted_takes_over_the_ticket(conn: psycopg.Connection[Any]) -> None:
    """The original order deleted (not invoiced), then its copy saved: the copy bills the ticket, once."""
    oe_id, _ = billed_order(conn, TicketData(59, "59", "Switch", Decimal(30)))
    with conn.transaction():
        quotation = copy_order(conn, oe_id, record_type="sales_quotation")  # quotations are no billing documents
    conn.execute("DELETE FROM public.oe WHERE id = %s", (oe_id,))
    assert [s for s, _, _ in state(conn, 59)] == ["released"]
    order = copy_order(conn, quotation)  # quotation -> order confirmation
    assert state(conn, 59) == [("billed", order, None)]
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE ticket_id = 59").fetchone() == (1,)


def test_a_ticket_title_cannot_forge_the_marker(conn: psycopg.Connection[Any]) -> None:
    """A title holding another reservation's marker text neither unlinks this ticket nor links the other one."""
    victim = claim(conn, [TicketData(60, "60", "Victim", Decimal(30))],
                   target=positions.load_target(conn, order_id=new_order(conn)))
    victim_marker = victim.new[0]["marker"]
    oe_id = new_order(conn)
    plan = claim(conn, [TicketData(61, "61", f"kivi-otrs:{victim_marker} <!-- kivi-otrs:{victim_marker} -->",
                                   Decimal(30))], target=positions.load_target(conn, order_id=oe_id))
    assert f"kivi-otrs:{victim_marker}" not in plan.positions[0]["longdescription"].rsplit("<!--", 1)[0]
    save_positions(conn, oe_id, plan)
    assert state(conn, 61) == [("billed", oe_id, None)]
    assert [s for s, _, _ in state(conn, 60)] == ["reserved"]


def test_release_then_save_still_ties_the_ticket(conn: psycopg.Connection[Any]) -> None:
    """`kivi-otrs release` while the rows are still in the order form, then save: the ticket is billed, not lost."""
    oe_id = new_order(conn)
    plan = claim(conn, [TicketData(62, "62", "Release", Decimal(30))], target=positions.load_target(conn, order_id=oe_id))
    assert positions.release(conn, oe_id, None, "test") == ["62"]
    save_positions(conn, oe_id, plan)
    assert state(conn, 62) == [("billed", oe_id, None)]
    again = claim(conn, [TicketData(62, "62", "Release", Decimal(30))],
                  target=positions.load_target(conn, order_id=new_order(conn)))
    assert again.positions == []


def test_marker_lost_before_the_first_save_is_tied_by_ticket_number(conn: psycopg.Connection[Any]) -> None:
    """The editor dropped the marker before the first save: the one reservation naming the ticket number is tied."""
    oe_id = new_order(conn)
    plan = claim(conn, [TicketData(281653, "281653", "Beamer", Decimal(20))],
                 target=positions.load_target(conn, order_id=oe_id))
    plan.positions[0]["longdescription"] = MARKER.sub("", plan.positions[0]["longdescription"]) + "<p>edited</p>"
    save_positions(conn, oe_id, plan)
    assert conn.execute("SELECT state, bound_by FROM kivi_otrs.ledger WHERE ticket_id = 281653").fetchall() == [
        ("billed", "ticket number")]


def test_saved_ticket_positions_are_billed_once_by_periodic_invoices(conn: psycopg.Connection[Any]) -> None:
    """kivitendo 4.1 saves 'always' when the position details are not loaded: the database makes it 'once'."""
    oe_id = new_order(conn)
    plan = claim(conn, [TicketData(63, "63", "Periodic", Decimal(30))], target=positions.load_target(conn, order_id=oe_id))
    del plan.positions[0]["recurring_billing_mode"]
    [item] = save_positions(conn, oe_id, plan)
    assert conn.execute("SELECT recurring_billing_mode::text FROM public.orderitems WHERE id = %s", (item,)
                        ).fetchone() == ("once",)
    conn.execute("UPDATE public.orderitems SET recurring_billing_mode = 'always' WHERE id = %s", (item,))
    assert conn.execute("SELECT recurring_billing_mode::text FROM public.orderitems WHERE id = %s", (item,)
                        ).fetchone() == ("once",)


def test_reopened_ticket_is_billed_on_its_rounded_total(conn: psycopg.Connection[Any]) -> None:
    """7 -> 14 -> 21 -> 28 minutes billed after each step with 15-minute rounding up: 30 minutes in all, not 60."""
    settings(conn, billing__rounding_increment_minutes="15", billing__rounding_mode="up")
    billed = []
    for minutes in (7, 14, 21, 28):
        oe_id = new_order(conn)
        plan = claim(conn, [TicketData(64, "64", "Reopened", Decimal(minutes))],
                     target=positions.load_target(conn, order_id=oe_id))
        save_positions(conn, oe_id, plan)
        billed.append([n["billed_minutes"] for n in plan.new])
    assert billed == [["15"], [], ["15"], []]
    assert conn.execute("SELECT sum(billed_minutes) FROM kivi_otrs.ledger WHERE ticket_id = 64 AND state = 'billed'"
                        ).fetchone() == (Decimal("30.00"),)


def test_closed_order_accepts_no_ticket_positions(conn: psycopg.Connection[Any]) -> None:
    """The button on a closed order answers with one line instead of adding positions."""
    oe_id = new_order(conn)
    conn.execute("UPDATE public.oe SET closed = true WHERE id = %s", (oe_id,))
    with pytest.raises(Exception, match="is closed"):
        positions.load_target(conn, order_id=oe_id)


def test_doctor_names_a_copy_saved_before_copies_were_refused(conn: psycopg.Connection[Any], migrated_dsn: str) -> None:
    """A ticket position copied into a second order (trigger absent, as before 0.2) is listed with both orders."""
    from kivi_otrs import doctor

    oe_id, _ = billed_order(conn, TicketData(65, "65", "Legacy", Decimal(30)))
    conn.execute("ALTER TABLE public.orderitems DISABLE TRIGGER kivi_otrs_ledger_insert")
    copy = copy_order(conn, oe_id)
    conn.execute("ALTER TABLE public.orderitems ENABLE TRIGGER kivi_otrs_ledger_insert")
    conn.commit()
    findings = [f for f in doctor.diagnose(migrated_dsn) if f.check == "ledger" and "copied" in f.message]
    assert findings and findings[0].examples == [
        f"ticket 65 (KIVI-1001): billed on {ordnumber(conn, oe_id)}, copy on {ordnumber(conn, copy)}"]


def test_a_second_click_on_the_same_order_gets_the_users_own_reservation_back(conn: psycopg.Connection[Any]) -> None:
    """A click after a timeout on the same order offers its tickets again; a duplicate row is refused at save."""
    oe_id = new_order(conn)
    target = positions.load_target(conn, order_id=oe_id)
    first = claim(conn, [TicketData(66, "66", "Timeout", Decimal(30))], target=target, source="button")
    double_click = claim(conn, [TicketData(66, "66", "Timeout", Decimal(30))], target=target, source="button")
    assert double_click.positions == []
    conn.execute("UPDATE kivi_otrs.ledger SET claimed_at = claimed_at - interval '2 minutes'")
    second = claim(conn, [TicketData(66, "66", "Timeout", Decimal(30))], target=target, source="button")
    assert len(first.positions) == len(second.positions) == 1
    assert [s for s, _, _ in state(conn, 66)] == ["released", "reserved"]
    with pytest.raises(psycopg.Error, match=f"Ticket 66 steht schon in Auftrag {ordnumber(conn, oe_id)}"):
        with conn.transaction():
            save_positions(conn, oe_id, second)
            save_positions(conn, oe_id, first)
    save_positions(conn, oe_id, second)
    assert [s for s, _, _ in state(conn, 66)] == ["released", "billed"]
    other = claim(conn, [TicketData(66, "66", "Timeout", Decimal(30))],
                  target=positions.load_target(conn, order_id=new_order(conn)), source="button")
    assert other.positions == []


def recorded_link_pairs(name: str) -> set[tuple[str, str]]:
    data = json.loads((RECORDED / name).read_text(encoding="utf-8"))
    return {(r["from_table"], r["to_table"]) for r in data["record_links"]}


def test_emulated_invoice_rows_are_the_ones_real_kivitendo_writes(conn: psycopg.Connection[Any]) -> None:
    """The link tables this file writes for order -> invoice and order -> delivery order -> invoice are those
    recorded from kivitendo 4.1.0 (tests/recorded/kivitendo-4.1.0)."""
    oe_id, items = billed_order(conn, TicketData(67, "67", "Direkt", Decimal(15)))
    post_invoice(conn, oe_id, items)
    direct = set(conn.execute("SELECT from_table, to_table FROM public.record_links").fetchall())
    assert direct == recorded_link_pairs("workflow-d2-invoice-posted-record-links.json")
    conn.execute("DELETE FROM public.record_links")
    oe_id, items = billed_order(conn, TicketData(68, "68", "Lieferschein", Decimal(15)))
    post_invoice(conn, oe_id, items, via_delivery_order=True)
    through_do = set(conn.execute("SELECT from_table, to_table FROM public.record_links").fetchall())
    recorded = recorded_link_pairs("workflow-f3-delivery-order-invoice-posted.json") - {
        ("oe", "oe"), ("orderitems", "orderitems")}  # that order came from a quotation
    assert through_do == recorded


def test_reconcile_never_calls_an_invoiced_ticket_billable_again(conn: psycopg.Connection[Any]) -> None:
    """Order invoiced then deleted: reconcile's 'billable again' list stays empty; a deleted uninvoiced one is listed."""
    from kivi_otrs import reports

    oe_id, items = billed_order(conn, TicketData(69, "69", "Rechnung", Decimal(30)))
    post_invoice(conn, oe_id, items)
    delete_order(conn, oe_id)
    other, _ = billed_order(conn, TicketData(70, "70", "Ohne Rechnung", Decimal(30)))
    delete_order(conn, other)
    again = next(r for r in reports.reconciliation(conn) if "billable again" in r.title)
    assert [row[1] for row in again.rows] == ["70"]


def test_two_copies_saved_at_once_after_the_original_was_deleted_bill_the_ticket_once(migrated_dsn: str) -> None:
    """Two sessions save copies of a released ticket position at the same moment: one is tied, the other refused."""
    import threading

    with psycopg.connect(migrated_dsn) as setup:
        oe_id, _ = billed_order(setup, TicketData(71, "71", "Wettlauf", Decimal(30)))
        first, second = copy_order(setup, oe_id, "sales_quotation"), copy_order(setup, oe_id, "sales_quotation")
        delete_order(setup, oe_id)
    barrier, outcomes = threading.Barrier(2), []

    def confirm(quotation: int) -> None:
        with psycopg.connect(migrated_dsn) as c:
            barrier.wait()
            try:
                with c.transaction():
                    copy_order(c, quotation)  # quotation -> order confirmation, saved
                outcomes.append("saved")
            except psycopg.Error as exc:
                outcomes.append("refused" if "Ticket 71" in str(exc) else str(exc))

    threads = [threading.Thread(target=confirm, args=(q,)) for q in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "saved"]
    with psycopg.connect(migrated_dsn) as c:
        assert c.execute("SELECT state FROM kivi_otrs.ledger WHERE ticket_id = 71").fetchall() == [("billed",)]
