"""The GenericInterface client against the OTRS stand-in: batching, splitting, sessions, failures."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from conftest import otrs_settings_for

from kivi_otrs.errors import HelpdeskAuthError, HelpdeskError, HelpdeskUnavailable
from kivi_otrs.otrs import ROUTES, OtrsClient, customer_search_value
from kivi_otrs.otrs_double import OtrsDouble
from kivi_otrs.period import Period, otrs_bounds, resolve_period

OCTOBER = resolve_period(None, "Europe/Berlin", date_from=date(2026, 10, 1), date_to=date(2026, 10, 31))


def october(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


def client(otrs: OtrsDouble, **overrides: object) -> OtrsClient:
    return OtrsClient(otrs_settings_for(otrs, **overrides), backoff=0.01)


def test_period_bounds_are_utc_inclusive_and_follow_daylight_saving() -> None:
    """October in Berlin starts at 22:00 UTC (summer time) and ends at 22:59:59 UTC (winter time)."""
    assert otrs_bounds(OCTOBER) == ("2026-09-30 22:00:00", "2026-10-31 22:59:59")
    november = resolve_period("previous-month", "Europe/Berlin", today=date(2026, 12, 1))
    assert otrs_bounds(november) == ("2026-10-31 23:00:00", "2026-11-30 22:59:59")
    assert otrs_bounds(november, "Europe/Berlin") == ("2026-11-01 00:00:00", "2026-11-30 23:59:59")
    week = resolve_period("last-7-days", "Europe/Berlin", today=date(2026, 11, 23))
    assert week.label == "2026-11-17 .. 2026-11-23"


def test_month_of_one_customer_in_three_requests(otrs: OtrsDouble) -> None:
    """SessionCreate, one TicketSearch, one TicketGet; only billable states and that customer."""
    otrs.add_ticket(11, "Drucker", "1000387", 20, october(3))
    otrs.add_ticket(12, "Beamer", "1000387", Decimal("2.25"), october(31, 22))  # 23:00 Berlin, still October
    otrs.add_ticket(13, "Zu spät", "1000387", 10, october(31, 23))  # 00:00 November in Berlin
    otrs.add_ticket(14, "Erfolglos", "1000387", 10, october(5), state="closed unsuccessful")
    otrs.add_ticket(15, "Anderer Kunde", "10003870", 10, october(5))
    otrs.add_ticket(16, "Offen", "1000387", 10, None, state="open")
    with client(otrs) as c:
        result = c.closed_tickets("1000387", OCTOBER)
        assert [(t.ticket_id, t.title, t.minutes) for t in result.tickets] == [
            (11, "Drucker", Decimal(20)), (12, "Beamer", Decimal("2.25"))]
        assert result.skipped == []
        assert c.calls == {"SessionCreate": 1, "TicketSearch": 1, "TicketGet": 1}
        assert result.tickets[0].closed == october(3)
        assert result.tickets[0].state_type == "closed"


def test_customer_numbers_with_parser_operators_find_exactly_their_tickets(otrs: OtrsDouble) -> None:
    """'KD 4711' and 'KIVI-1001' sent raw match nothing in OTRS; sent as wildcards plus exact filter they do."""
    otrs.add_ticket(21, "Leerzeichen", "KD 4711", 30, october(2))
    otrs.add_ticket(22, "Bindestrich", "KIVI-1001", 30, october(2))
    otrs.add_ticket(23, "Ähnlich", "KIVI+1001", 30, october(2))
    otrs.add_ticket(24, "Klammern", "A(1)", 30, october(2))
    with client(otrs) as c:
        raw = c.search({"CustomerID": "KD 4711", "States": ["closed successful"]})
        assert raw == []  # what a naive client would bill: nothing
        assert customer_search_value("KD 4711") == "KD*4711"
        assert [t.ticket_id for t in c.closed_tickets("KD 4711", OCTOBER).tickets] == [21]
        assert [t.ticket_id for t in c.closed_tickets("KIVI-1001", OCTOBER).tickets] == [22]
        assert [t.ticket_id for t in c.closed_tickets("A(1)", OCTOBER).tickets] == [24]
        assert [t.ticket_id for t in c.closed_tickets("kivi-1001", OCTOBER).tickets] == []


def test_periods_over_the_search_limit_are_split_so_nothing_is_cut(otrs: OtrsDouble) -> None:
    for i in range(37):
        otrs.add_ticket(100 + i, f"T{i}", "KIVI-1001", 15, october(1 + i % 30, 8 + i % 12))
    with client(otrs, search_limit=5, batch_size=10) as c:
        assert len(c.search({"States": ["closed successful"], "Limit": 5})) == 5  # OTRS cuts silently
        result = c.closed_tickets(None, OCTOBER)
        assert sorted(t.ticket_id for t in result.tickets) == list(range(100, 137))
        assert result.searches > 37 // 5
        assert c.calls["TicketGet"] == 4


def test_a_busy_month_is_split_by_its_measured_density_not_halved_down(otrs: OtrsDouble) -> None:
    """2,000 closes over October, limit 50: one descent finds the density, the rest of the month is cut
    into windows of about 35 closes before they are searched (halving alone: 125 searches, 62 full)."""
    start = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    for i in range(2000):
        otrs.add_ticket(10_000 + i, f"T{i}", "KIVI-1001", 15, start + timedelta(seconds=1300 * i))
    with client(otrs, search_limit=50, batch_size=100, parallel_requests=4) as c:
        result = c.closed_tickets(None, OCTOBER)
        assert len(result.tickets) == 2000
        full = sum(1 for n in otrs.search_sizes if n == 50)
        assert result.searches == len(otrs.search_sizes)
        # the completion order of 4 parallel searches moves the estimate a little (13-18 full seen)
        assert full <= 25, f"{full} of {result.searches} searches came back full"
        assert result.searches <= 110


def test_uneven_closes_are_all_found_when_the_density_estimate_is_wrong(otrs: OtrsDouble) -> None:
    """Quiet weeks then a burst of 300 closes in one afternoon: windows sized from the quiet part come
    back full and are split again; nothing is cut."""
    ids = []
    for i in range(60):
        ids.append(20_000 + i)
        otrs.add_ticket(20_000 + i, f"Q{i}", "KIVI-1001", 15, october(1 + i % 20, 9))
    for i in range(300):
        ids.append(30_000 + i)
        otrs.add_ticket(30_000 + i, f"B{i}", "KIVI-1001", 15, october(28, 13) + timedelta(seconds=7 * i))
    with client(otrs, search_limit=40, batch_size=100) as c:
        result = c.closed_tickets(None, OCTOBER)
        assert sorted(t.ticket_id for t in result.tickets) == sorted(ids)


def test_ticket_closed_twice_belongs_to_the_period_of_its_last_close(otrs: OtrsDouble) -> None:
    otrs.add_ticket(31, "Wieder geöffnet", "KIVI-1001", 45, [october(10), datetime(2026, 11, 4, 9, tzinfo=UTC)])
    november = Period(OCTOBER.end, datetime(2026, 12, 1, tzinfo=OCTOBER.start.tzinfo))
    with client(otrs) as c:
        oct_result = c.closed_tickets("KIVI-1001", OCTOBER)
        assert oct_result.tickets == []
        assert oct_result.skipped[0]["reason"] == "last closed 2026-11-04 09:00 UTC, billed in that period"
        assert [t.ticket_id for t in c.closed_tickets("KIVI-1001", november).tickets] == [31]


def test_access_denied_for_one_ticket_leaves_out_only_that_ticket(otrs: OtrsDouble) -> None:
    for i in range(20):
        otrs.add_ticket(200 + i, f"T{i}", "KIVI-1001", 15, october(2))
    otrs.denied = {207}
    with client(otrs, batch_size=20) as c:
        result = c.closed_tickets(None, OCTOBER)
        assert sorted(t.ticket_id for t in result.tickets) == [200 + i for i in range(20) if i != 7]
        assert [(s["ticket_id"], s["reason"]) for s in result.skipped] == [
            (207, "OTRS denies the agent access to this ticket (TicketGet.AccessDenied)")]
        assert c.calls["TicketGet"] <= 1 + 2 * 5  # bisection: log2(20) levels, two calls each


def test_expired_session_is_renewed_once_and_sessions_are_reused(otrs: OtrsDouble) -> None:
    otrs.add_ticket(41, "T", "KIVI-1001", 15, october(2))
    with client(otrs) as first:
        first.closed_tickets(None, OCTOBER)
    with client(otrs) as second:
        second.closed_tickets(None, OCTOBER)
        assert "SessionCreate" not in second.calls  # the process keeps the session
        otrs.expire_sessions()
        assert len(second.closed_tickets(None, OCTOBER).tickets) == 1
        assert second.calls["SessionCreate"] == 1
    assert otrs.calls["SessionCreate"] == 2


def test_wrong_password_is_one_clear_line_without_the_secret(otrs: OtrsDouble, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client(otrs, password="Geheim-123!") as c, pytest.raises(HelpdeskAuthError) as info:
        c.closed_tickets(None, OCTOBER)
    message = str(info.value)
    assert message == ("OTRS rejected the agent login 'kivi-billing' (SessionCreate.AuthFail); "
                       "check otrs.user and otrs.password (or KIVI_OTRS_OTRS_PASSWORD)")
    assert "Geheim" not in caplog.text
    assert otrs.calls["SessionCreate"] == 1  # no retry storm on a wrong password


@pytest.mark.parametrize(("fault", "error", "text"), [
    ("down", HelpdeskUnavailable, "stopped answering (TicketSearch: connection closed); try again when the helpdesk"),
    ("garbage", HelpdeskError, "OTRS answered TicketSearch with something that is not JSON (text/html, 46 bytes)"),
    ("error500", HelpdeskError, "OTRS answered HTTP 500 to TicketSearch: Internal Server Error"),
    ("unavailable", HelpdeskUnavailable, "answered HTTP 503 to TicketSearch (not available)"),
])
def test_failures_become_clear_errors_and_reads_are_retried(otrs: OtrsDouble, fault: str, error: type[Exception],
                                                            text: str) -> None:
    otrs.add_ticket(51, "T", "KIVI-1001", 15, october(2))
    with client(otrs) as c:
        c.login()
        otrs.fail_next(1, fault)
        if error is HelpdeskUnavailable:  # transient: the retry gets the answer
            assert len(c.closed_tickets(None, OCTOBER).tickets) == 1
            otrs.fail_next(3, fault)
        with pytest.raises(error) as info:
            c.closed_tickets(None, OCTOBER)
        assert text in str(info.value)
        assert "SessionID" not in str(info.value) and c.settings.password not in str(info.value)


def test_down_slow_and_misconfigured_helpdesk(otrs: OtrsDouble) -> None:
    otrs.add_ticket(61, "T", "KIVI-1001", 15, october(2))
    otrs.latency = 0.5
    with client(otrs, read_timeout=0.1) as c, pytest.raises(HelpdeskUnavailable,
                                                            match=r"did not answer SessionCreate within 0\.1 s"):
        c.closed_tickets(None, OCTOBER)
    otrs.latency = 0
    with client(otrs, webservice="Falsch") as c, pytest.raises(HelpdeskUnavailable, match=r"otrs\.webservice = 'Falsch'"):
        c.login()
    with client(otrs, base_url=otrs.base_url.replace("/znuny/", "/otrs/")) as c, pytest.raises(
            HelpdeskError, match=r"answered HTTP 404 to SessionCreate; check otrs\.base_url"):
        c.login()
    settings = otrs_settings_for(otrs)
    otrs.stop()
    with OtrsClient(settings, retries=1, backoff=0.01) as c, pytest.raises(HelpdeskUnavailable) as info:
        c.login()
    assert str(info.value) == (f"OTRS not reachable at {settings.endpoint} (SessionCreate): connection failed")


def test_unknown_route_tells_the_admin_to_import_the_web_service(otrs: OtrsDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ROUTES, "TicketGet", ("POST", "/TicketGetList"))
    otrs.add_ticket(71, "T", "KIVI-1001", 15, october(2))
    with client(otrs) as c, pytest.raises(HelpdeskError, match="import the YAML of kivi-otrs otrs-webservice"):
        c.closed_tickets(None, OCTOBER)


def test_time_unit_hours_and_odd_time_values(otrs: OtrsDouble) -> None:
    otrs.add_ticket(81, "Stunden", "KIVI-1001", Decimal("2.25"), october(2))
    otrs.add_ticket(82, "Null", "KIVI-1001", 0, october(2))
    with client(otrs, time_unit="hours") as c:
        result = c.closed_tickets(None, OCTOBER)
    assert {t.ticket_id: (t.time_units, t.minutes) for t in result.tickets} == {
        81: (Decimal("2.25"), Decimal(135)), 82: (Decimal(0), Decimal(0))}


def test_write_back_and_exclusion_of_billed_tickets(otrs: OtrsDouble) -> None:
    otrs.add_ticket(91, "Schon berechnet", "KIVI-1001", 15, october(2))
    otrs.add_ticket(92, "Neu", "KIVI-1001", 15, october(3))
    with client(otrs, exclude_field="KivitendoOrder") as c:
        c.update_ticket(91, {"KivitendoOrder": "A-2026-001/1"})
        assert otrs.tickets[91].dynamic_fields == {"KivitendoOrder": "A-2026-001/1"}
        assert [t.ticket_id for t in c.closed_tickets(None, OCTOBER).tickets] == [92]
        c.update_ticket(91, {"KivitendoOrder": ""})
        assert [t.ticket_id for t in c.closed_tickets(None, OCTOBER).tickets] == [91, 92]
        with pytest.raises(HelpdeskError) as info:
            c.update_ticket(91, {"NoSuchField": "x"})
        assert info.value.error_code == "TicketUpdate.InvalidParameter"


def test_batches_for_a_thousand_tickets(otrs: OtrsDouble) -> None:
    """The issue's target: 1 + ceil(1000/batch) + 1 requests for a customer month of 1000 tickets."""
    start = october(1)
    for i in range(1000):
        otrs.add_ticket(1000 + i, f"T{i}", "1000387", 10, start + timedelta(minutes=40 * i))
    with client(otrs, batch_size=50, search_limit=2000) as c:
        result = c.closed_tickets("1000387", OCTOBER)
        assert len(result.tickets) == 1000
        assert c.requests_made == 1 + 20 + 1


def test_check_reports_every_operation(otrs: OtrsDouble) -> None:
    otrs.add_ticket(95, "T", "KIVI-1001", 15, october(2))
    with client(otrs) as c:
        rows = c.check("KivitendoOrder")
    assert [(name.split(" ")[0], ok) for name, ok, _ in rows] == [
        ("SessionCreate", True), ("TicketSearch", True), ("TicketGet", True), ("TicketUpdate", True)]
    with client(otrs, password="falsch") as c:
        rows = c.check(None)
    assert rows[0][1] is False and "SessionCreate.AuthFail" in rows[0][2]


def test_every_client_route_is_in_the_webservice_yaml_and_answered_by_the_double(otrs: OtrsDouble) -> None:
    import yaml

    from kivi_otrs.otrs_commands import webservice_yaml

    spec = yaml.safe_load(webservice_yaml(None, "KivitendoOrder"))
    mapping = spec["Provider"]["Transport"]["Config"]["RouteOperationMapping"]
    operations = spec["Provider"]["Operation"]
    assert {op: (m["RequestMethod"], m["Route"]) for op, m in mapping.items()} == {
        op: ([method], route.replace("{ticket_id}", ":TicketID")) for op, (method, route) in ROUTES.items()}
    assert {op: o["Type"] for op, o in operations.items()} == {
        "SessionCreate": "Session::SessionCreate", "TicketSearch": "Ticket::TicketSearch",
        "TicketGet": "Ticket::TicketGet", "TicketUpdate": "Ticket::TicketUpdate"}
    for method, route in ROUTES.values():
        answer = requests.request(method, f"{otrs.base_url}nph-genericinterface.pl/Webservice/{otrs.webservice}"
                                  + route.format(ticket_id=1), json={}, timeout=5)
        assert answer.status_code == 200


def test_bulk_close_beyond_the_search_limit_is_split_by_create_time(otrs: OtrsDouble) -> None:
    """23 tickets closed in the same second with a search limit of 5: all found, no admin help needed."""
    for i in range(23):
        otrs.add_ticket(300 + i, f"Bulk {i}", "KIVI-1001", 10, october(12, 9))
        otrs.tickets[300 + i].created = datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=i)
    with client(otrs, search_limit=5, batch_size=50) as c:
        result = c.closed_tickets("KIVI-1001", OCTOBER)
    assert sorted(t.ticket_id for t in result.tickets) == list(range(300, 323))


@pytest.mark.parametrize(("time_unit", "customer", "reason"), [
    ("-5", "KIVI-1001", "accounted time -5 is negative; correct it in OTRS"),
    ("1e30", "KIVI-1001", "accounted time 1e30 is implausible (more than 100000 units); correct it in OTRS"),
    ("zwanzig", "KIVI-1001", "accounted time 'zwanzig' is not a number"),
    ("20", "", "ticket has no CustomerID; assign the customer in OTRS"),
])
def test_tickets_with_unusable_data_are_listed_with_their_reason(otrs: OtrsDouble, time_unit: str, customer: str,
                                                                   reason: str) -> None:
    """Bad accounted time or a missing CustomerID: the ticket is skipped with a reason, the others still come."""
    otrs.add_ticket(401, "Gut", "KIVI-1001", 20, october(3))
    otrs.add_ticket(402, "Kaputt", customer or "KIVI-1001", 20, october(4))
    otrs.tickets[402].time_unit = time_unit  # type: ignore[assignment]
    otrs.tickets[402].customer_id = customer
    with client(otrs) as c:
        result = c.closed_tickets(None, OCTOBER)
    assert [t.ticket_id for t in result.tickets] == [401]
    assert [(str(s["ticket_id"]), s["reason"]) for s in result.skipped] == [("402", reason)]


def test_nul_characters_in_titles_are_dropped(otrs: OtrsDouble) -> None:
    """A title with a NUL byte (PostgreSQL cannot store it) is cleaned instead of blocking the customer."""
    otrs.add_ticket(501, "Null\x00Byte", "KIVI-1001", 20, october(3))
    with client(otrs) as c:
        [ticket] = c.closed_tickets("KIVI-1001", OCTOBER).tickets
    assert ticket.title == "NullByte"


def test_parallel_fetch_renews_an_expired_session_once_and_bisects_denied_batches(otrs: OtrsDouble) -> None:
    """Four requests at a time: same tickets as one at a time, one SessionCreate after expiry, denied ticket skipped."""
    for i in range(120):
        otrs.add_ticket(600 + i, f"P{i}", f"KIVI-{1000 + i % 7}", 15, october(1 + i % 30, 8 + i % 12))
    otrs.denied = {655}
    with client(otrs, batch_size=10, search_limit=20, parallel_requests=4) as c:
        c.closed_tickets(None, OCTOBER)  # logs in
        otrs.expire_sessions()
        before = otrs.calls["SessionCreate"]
        result = c.closed_tickets(None, OCTOBER)
    assert otrs.calls["SessionCreate"] == before + 1
    assert sorted(t.ticket_id for t in result.tickets) == [600 + i for i in range(120) if i != 55]
    assert [s["ticket_id"] for s in result.skipped] == [655]
    with client(otrs, batch_size=10, search_limit=20, parallel_requests=1) as c:
        sequential = c.closed_tickets(None, OCTOBER)
    assert [t.ticket_id for t in sequential.tickets] == [t.ticket_id for t in result.tickets]


def test_batch_size_follows_the_measured_cost_per_call_and_ticket() -> None:
    """Fixed cost dominant: batches grow (at most twofold); slow or big answers: they shrink at once."""
    from kivi_otrs.otrs import BatchSizer

    sizer = BatchSizer(50, parallel=4, read_timeout=30)
    sizer.fixed_cost(0.8)  # Znuny under CGI: SessionCreate
    sizer.observe(50, 0.8 + 50 * 0.005, 50 * 1500)
    assert sizer.next_size(50000) == 100
    assert sizer.next_size(50000) == 200
    assert sizer.next_size(50000) == 400
    assert sizer.next_size(50000) == 699  # 1 MiB of answer at 1500 bytes per ticket
    sizer.observe(699, 20.0, 699 * 1500)  # far slower than measured so far
    assert sizer.next_size(50000) < 699
    small = BatchSizer(50, parallel=4)
    small.fixed_cost(0.002)
    small.observe(50, 0.004, 50 * 1500)
    assert small.next_size(950) == 50  # growing would save milliseconds: the configured size stays


def test_a_connection_closed_before_any_answer_points_at_the_web_service_name(otrs: OtrsDouble) -> None:
    """Znuny closes the connection for an unknown web service: before OTRS ever answered, the message says so."""
    otrs.fail_next(3, "down")
    with client(otrs) as c, pytest.raises(HelpdeskUnavailable, match="check the web service name"):
        c.login()
