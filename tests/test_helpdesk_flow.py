"""End to end with the OTRS stand-in: the button's endpoint, the CLI, the billing run and write-back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
import requests
from test_kivitendo_integration import FIXTURE_ANSWER

from kivi_otrs import billing_run, config
from kivi_otrs.endpoint import EndpointServer, load_client
from kivi_otrs.otrs_double import OtrsDouble

TOKEN = "t0ken-for-the-tests-0123456789"
PASSWORD = "Otrs-Geheim-42"


def october(day: int) -> datetime:
    return datetime(2026, 10, day, 9, 30, tzinfo=UTC)


@pytest.fixture
def helpdesk(conn: psycopg.Connection[Any], otrs: OtrsDouble) -> OtrsDouble:
    """kivi-otrs configured for the stand-in, with October tickets of the demo customers."""
    otrs.password = PASSWORD
    otrs.add_ticket(2, "Drucker druckt nicht", "KIVI-1001", 135, october(3), number="2026100310000011")
    otrs.add_ticket(3, "VPN Zugang", "KIVI-1001", 20, october(4), number="2026100410000021")
    otrs.add_ticket(4, "Rechnungsexport", "KIVI-1002", 30, october(5), number="2026100510000039")
    otrs.add_ticket(5, "Beamer", "1000387", 20, october(6), number="281653")
    otrs.add_ticket(6, "Kasse", "KD 4711", 45, october(7), number="2026100710000057")
    with conn.transaction():
        for key, value in {"otrs.base_url": otrs.base_url, "otrs.user": otrs.user, "otrs.password": PASSWORD,
                           "otrs.read_timeout": "2", "billing.default_part": "SYS-STD",
                           "billing.period": "previous-month"}.items():
            config.set_value(conn, key, value)
    return otrs


@pytest.fixture
def endpoint(migrated_dsn: str, helpdesk: OtrsDouble) -> Iterator[EndpointServer]:
    server = EndpointServer([load_client(migrated_dsn, token=TOKEN)], port=0)
    server.start_background()
    yield server
    server.shutdown()


def click(server: EndpointServer, body: dict[str, Any], token: str = TOKEN) -> requests.Response:
    return requests.post(f"{server.url}/positions", json={"from": "2026-10-01", "to": "2026-10-31", **body},
                         headers={"Authorization": f"Bearer {token}", "X-Kivitendo-User": "anna"}, timeout=30)


def order_id(conn: psycopg.Connection[Any], ordnumber: str = "A-2026-001") -> int:
    row = conn.execute("SELECT id FROM public.oe WHERE ordnumber = %s", (ordnumber,)).fetchone()
    assert row is not None
    return int(row[0])


def test_button_gets_positions_from_otrs_in_the_shape_the_javascript_reads(endpoint: EndpointServer,
                                                                           conn: psycopg.Connection[Any]) -> None:
    answer = click(endpoint, {"order_id": order_id(conn), "periodic": True})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == set(FIXTURE_ANSWER)
    assert set(data["preview"]) == set(FIXTURE_ANSWER["preview"])
    assert [(p["qty_as_number"], p["unit"], p["recurring_billing_mode"]) for p in data["positions"]] == [
        ("2,25", "Std", "once"), ("0,50", "Std", "once")]
    assert data["positions"][0]["description"] == "Systemtechnik Stundensatz"
    assert data["positions"][1]["longdescription"].startswith("Nummer: 2026100410000021 Titel: VPN Zugang Erfasste Zeit: 20 min")
    assert set(data["positions"][0]) <= {"parts_id", "qty_as_number", "description", "longdescription", "unit",
                                         "sellprice_as_number", "recurring_billing_mode"}
    again = click(endpoint, {"order_id": order_id(conn)}).json()
    assert again["positions"] == [] and len(again["preview"]["billed"]) == 2


def test_button_errors_are_one_line_with_a_status_and_no_secret(endpoint: EndpointServer, helpdesk: OtrsDouble,
                                                                conn: psycopg.Connection[Any]) -> None:
    assert click(endpoint, {"order_id": order_id(conn)}, token="wrong-token-wrong-token").status_code == 401
    helpdesk.down = True
    down = click(endpoint, {"customer_id": 9002})
    assert down.status_code == 502
    assert "closed the connection without answering" in down.json()["error"]
    helpdesk.down = False
    helpdesk.password = "changed-in-otrs"
    helpdesk.expire_sessions()
    refused = click(endpoint, {"customer_id": 9002})
    assert refused.status_code == 502
    assert refused.json() == {"error": "OTRS rejected the agent login 'kivi-billing' (SessionCreate.AuthFail); "
                                       "check otrs.user and otrs.password (or KIVI_OTRS_OTRS_PASSWORD)"}
    assert PASSWORD not in refused.text
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone() == (0,)


def test_two_clicks_at_once_through_the_endpoint_give_one_set(endpoint: EndpointServer, helpdesk: OtrsDouble,
                                                              conn: psycopg.Connection[Any]) -> None:
    helpdesk.latency = 0.05
    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(click(endpoint, {"customer_id": 9001}).json()))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(a["positions"]) for a in answers) == [0, 2]
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger WHERE state = 'reserved'").fetchone() == (2,)


def cli(*args: str, dsn: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kivi_otrs", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KIVI_OTRS_DSN": dsn, **(env or {})})


def test_tickets_and_check_otrs_commands(migrated_dsn: str, helpdesk: OtrsDouble) -> None:
    listed = cli("tickets", "--customer", "KD 4711", "--from", "2026-10-01", "--to", "2026-10-31", "--json",
                 dsn=migrated_dsn)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert [(t["number"], t["minutes"], t["closed"]) for t in data["tickets"]] == [
        ("2026100710000057", "45", "2026-10-07T09:30:00+00:00")]
    table = cli("tickets", "--from", "2026-10-01", "--to", "2026-10-31", dsn=migrated_dsn)
    assert "5 tickets, 250 minutes" in table.stdout
    assert "281653             1000387      2026-10-06 11:30       20  closed successful    Beamer" in table.stdout
    checked = cli("check-otrs", dsn=migrated_dsn)
    assert checked.returncode == 0 and checked.stdout.count("ok  ") == 4, checked.stdout
    wrong = cli("check-otrs", dsn=migrated_dsn, env={"KIVI_OTRS_OTRS_PASSWORD": "falsch-falsch"})
    assert wrong.returncode == 4
    assert wrong.stderr.strip() == "Error: the OTRS web service is not ready for kivi-otrs (see FAIL above)"
    assert "falsch-falsch" not in wrong.stdout + wrong.stderr
    yaml_text = cli("otrs-webservice", dsn=migrated_dsn).stdout
    assert "Route: /TicketList" in yaml_text and f"{helpdesk.base_url}nph-genericinterface.pl" in yaml_text
    states = cli("config", "set", "billing.states", '["closed successful", "Closed Successful"]', dsn=migrated_dsn)
    assert states.returncode == 0, states.stderr
    assert "no ticket in OTRS has the state 'Closed Successful'" in states.stderr
    assert "'closed successful'" not in states.stderr


def test_monthly_run_writes_back_and_excludes_billed_tickets(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                             helpdesk: OtrsDouble) -> None:
    """Write-back sets the field, OTRS down keeps it pending, a later run sends it; billed tickets are not searched."""
    with conn.transaction():
        config.set_value(conn, "writeback.enabled", "true")
    first = billing_run.run(migrated_dsn, date_from=date(2026, 10, 1), date_to=date(2026, 10, 31), user="cron")
    assert {c.customer_number: c.positions for c in first.customers} == {
        "1000387": 1, "KD 4711": 1, "KIVI-1001": 2, "KIVI-1002": 1}
    assert first.writeback == {"done": 5, "retry": 0, "failed": 0}
    assert helpdesk.tickets[5].dynamic_fields == {"KivitendoOrder": "AB-1000/1"}
    searches = helpdesk.calls["TicketSearch"]
    second = billing_run.run(migrated_dsn, date_from=date(2026, 10, 1), date_to=date(2026, 10, 31), user="cron")
    assert second.tickets == 0 and helpdesk.calls["TicketSearch"] == searches + 2  # unbilled, and marked ones
    found = [r["data"]["DynamicField_KivitendoOrder"] for r in helpdesk.requests if r["operation"] == "TicketSearch"]
    assert found[-2:] == [{"Empty": 1}, {"Empty": 0}]

    conn.execute("DELETE FROM public.orderitems WHERE trans_id = %s", (order_id(conn, "AB-1003"),))
    helpdesk.down = True
    third = billing_run.run(migrated_dsn, date_from=date(2026, 10, 1), date_to=date(2026, 10, 31), user="cron",
                            fetch_all=lambda settings, period: [])
    assert third.writeback == {"done": 0, "retry": 1, "failed": 0}
    assert conn.execute("SELECT state, value FROM kivi_otrs.writeback WHERE ticket_id = 4 ORDER BY id DESC LIMIT 1"
                        ).fetchone() == ("pending", "")
    assert helpdesk.tickets[4].dynamic_fields == {"KivitendoOrder": "AB-1003/1"}
    helpdesk.down = False
    conn.execute("UPDATE kivi_otrs.writeback SET next_attempt = now() WHERE state = 'pending'")
    sent = cli("writeback", dsn=migrated_dsn)
    assert sent.stdout.strip() == "1 done, 0 retry, 0 failed", sent.stderr
    assert helpdesk.tickets[4].dynamic_fields == {}


def test_a_stale_write_back_field_never_hides_a_billable_ticket(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                                 helpdesk: OtrsDouble) -> None:
    """An order deleted while write-back was off leaves the OTRS field set: the next run bills the ticket anyway."""
    with conn.transaction():
        config.set_value(conn, "writeback.enabled", "true")
    billing_run.run(migrated_dsn, date_from=date(2026, 10, 1), date_to=date(2026, 10, 31), user="cron")
    assert helpdesk.tickets[4].dynamic_fields == {"KivitendoOrder": "AB-1003/1"}
    with conn.transaction():
        config.set_value(conn, "writeback.enabled", "false")
        conn.execute("DELETE FROM public.oe WHERE ordnumber = 'AB-1003'")
        config.set_value(conn, "writeback.enabled", "true")
    assert helpdesk.tickets[4].dynamic_fields == {"KivitendoOrder": "AB-1003/1"}  # stale: nobody cleared it
    again = billing_run.run(migrated_dsn, date_from=date(2026, 10, 1), date_to=date(2026, 10, 31), user="cron")
    assert {c.customer_number: c.positions for c in again.customers} == {"KIVI-1002": 1}
    assert helpdesk.tickets[4].dynamic_fields == {"KivitendoOrder": f"{again.customers[0].ordnumber}/1"}


def test_customer_numbers_differing_in_case_name_the_real_conflict(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                                   helpdesk: OtrsDouble) -> None:
    """k-lower and K-LOWER are two kivitendo customers but one OTRS company: the skip reason says so."""
    from kivi_otrs import service

    conn.execute("INSERT INTO public.customer (name, customernumber, country_id, taxzone_id, currency_id) "
                 "SELECT n, n, 1, min(id), 1 FROM public.tax_zones, (VALUES ('k-lower'), ('K-LOWER')) v(n) GROUP BY n")
    conn.commit()
    helpdesk.add_ticket(9, "Gross", "K-LOWER", 30, october(8), number="2026100810000099")
    plan, _ = service.make_positions(migrated_dsn, service.Request(customer_number="k-lower", date_from=date(2026, 10, 1),
                                                                   date_to=date(2026, 10, 31), dry_run=True))
    [skip] = plan.skipped
    assert skip["reason_code"] == "case_conflict" and "belongs to kivitendo customer 'K-LOWER'" in skip["reason"]
