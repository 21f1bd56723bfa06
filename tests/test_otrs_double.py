"""The OTRS stand-in answers like the recorded Znuny 7.1.7 (keys, types, error texts, headers)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from kivi_otrs.otrs_double import OtrsDouble, customer_matches

RECORDED = Path(__file__).parent / "recorded" / "znuny-7.1.7"


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def recorded_headers(name: str) -> dict[str, str]:
    lines = (RECORDED / name).read_text().splitlines()[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":" in line)}


def url(otrs: OtrsDouble, route: str, webservice: str | None = None) -> str:
    return f"{otrs.base_url}nph-genericinterface.pl/Webservice/{webservice or otrs.webservice}{route}"


def session(otrs: OtrsDouble) -> str:
    answer = requests.post(url(otrs, "/Session"), json={"UserLogin": otrs.user, "Password": otrs.password}, timeout=5)
    return str(answer.json()["SessionID"])


def seed(otrs: OtrsDouble) -> None:
    otrs.add_ticket(2, "Drucker druckt nicht", "KIVI-1001", Decimal("2.25"), datetime(2026, 11, 23, 0, 6, 6, tzinfo=UTC),
                    number="2026112310000011", customer_user="anna.meyer")
    otrs.add_ticket(3, "VPN Zugang einrichten", "KIVI-1001", 3, datetime(2026, 11, 23, 0, 6, 8, tzinfo=UTC),
                    number="2026112310000021", customer_user="anna.meyer")
    otrs.add_ticket(5, "Neuer Arbeitsplatz", "KIVI-1002", 5, datetime(2026, 11, 23, 0, 6, 10, tzinfo=UTC),
                    state="closed unsuccessful", number="2026112310000048", customer_user="bernd.schulz")
    otrs.add_ticket(7, "Server langsam", "KIVI-1002", 4, None, state="open", number="2026112310000066",
                    customer_user="bernd.schulz")


def test_session_create_answers_like_znuny(otrs: OtrsDouble) -> None:
    good = requests.post(url(otrs, "/Session"), json={"UserLogin": otrs.user, "Password": otrs.password}, timeout=5)
    assert set(good.json()) == set(recorded("01-session-create.json"))
    assert len(good.json()["SessionID"]) == len(recorded("01-session-create.json")["SessionID"])
    expected_headers = recorded_headers("01-session-create.headers")
    assert good.headers["Content-Type"] == expected_headers["content-type"]
    assert good.headers["Connection"] == expected_headers["connection"]
    bad = requests.post(url(otrs, "/Session"), json={"UserLogin": otrs.user, "Password": "wrong"}, timeout=5)
    assert bad.status_code == 200
    assert bad.content == (RECORDED / "30-error-session-bad-password.json").read_bytes().strip()


def test_ticket_get_has_the_recorded_keys_and_types(otrs: OtrsDouble) -> None:
    """Plain, several at once (comma route and list), Extended and AllArticles, like 20-23."""
    seed(otrs)
    sid = session(otrs)
    comma = requests.get(url(otrs, "/Ticket/2,3,5"), params={"SessionID": sid}, timeout=5).json()
    expected = recorded("20-ticketget-multi-comma.json")
    assert [t["TicketID"] for t in comma["Ticket"]] == [t["TicketID"] for t in expected["Ticket"]]
    for mine, real in zip(comma["Ticket"], expected["Ticket"], strict=True):
        assert set(mine) == set(real)
        assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in real.items()}
        for key in ("TicketNumber", "Title", "CustomerID", "State", "StateID", "StateType", "TimeUnit", "Queue"):
            assert mine[key] == real[key], key
    listed = requests.post(url(otrs, "/TicketList"), json={"SessionID": sid, "TicketID": ["2", "5"]}, timeout=5).json()
    assert [t["TicketNumber"] for t in listed["Ticket"]] == [
        t["TicketNumber"] for t in recorded("21-ticketget-multi-list.json")["Ticket"]]
    extended = requests.post(url(otrs, "/TicketList"), json={"SessionID": sid, "TicketID": "5", "Extended": 1,
                                                              "AllArticles": 1}, timeout=5).json()["Ticket"][0]
    real_ext = recorded("22-ticketget-allarticles-extended.json")["Ticket"][0]
    assert set(extended) == set(real_ext)
    assert extended["Closed"] == real_ext["Closed"] == "2026-11-23 00:06:10"
    assert set(extended["Article"][0]) <= set(real_ext["Article"][0])
    single = requests.get(url(otrs, "/Ticket/7"), params={"SessionID": sid}, timeout=5).json()
    assert set(single["Ticket"][0]) == set(recorded("23-ticketget-single.json")["Ticket"][0])
    assert "Closed" not in single["Ticket"][0]


@pytest.mark.parametrize(("name", "method", "route", "body"), [
    ("31-error-ticketget-unknown-id.json", "GET", "/Ticket/999", "session"),
    ("32-error-search-bad-password.json", "POST", "/TicketSearch", {"UserLogin": "kivi-billing", "Password": "nope"}),
    ("33-error-invalid-session.json", "POST", "/TicketSearch", {"SessionID": "expired-or-made-up"}),
    ("38-error-ticketget-missing-auth.json", "GET", "/Ticket/2", {}),
    ("36-error-ticketupdate-bad-state.json", "PATCH", "/Ticket/2", {"Ticket": {"State": "gibts nicht"}}),
    ("37-error-search-bad-date.json", "POST", "/TicketSearch", {"TicketCloseTimeNewerDate": "2026-11-01"}),
])
def test_operation_errors_are_http_200_error_objects_like_znuny(otrs: OtrsDouble, name: str, method: str, route: str,
                                                                 body: Any) -> None:
    seed(otrs)
    sid = session(otrs)
    data = {"SessionID": sid} if body == "session" else dict(body)
    if name.startswith(("36", "37")):
        data["SessionID"] = sid
    if method == "GET":
        answer = requests.get(url(otrs, route), params=data, timeout=5)
    else:
        answer = requests.request(method, url(otrs, route), json=data, timeout=5)
    assert answer.status_code == 200
    assert answer.content == (RECORDED / name).read_bytes().strip()
    assert answer.headers["Content-Type"] == recorded_headers(name.replace(".json", ".headers"))["content-type"]


def test_transport_errors_like_znuny(otrs: OtrsDouble) -> None:
    """Unknown route and broken JSON: plain-text 500; unknown web service: connection closed, no reply."""
    route = requests.post(url(otrs, "/NoSuchRoute"), json={}, timeout=5)
    assert route.status_code == 500
    assert route.content == (RECORDED / "34-error-unknown-route.json").read_bytes().rstrip(b"\n")
    assert route.headers["Content-Type"] == recorded_headers("34-error-unknown-route.headers")["content-type"]
    broken = requests.post(url(otrs, "/TicketSearch"), data=b"{not json", timeout=5)
    assert broken.status_code == 500
    assert broken.content == (RECORDED / "39-error-invalid-json.json").read_bytes().strip()
    with pytest.raises(requests.ConnectionError):
        requests.post(url(otrs, "/Session", webservice="NoSuchService"), json={}, timeout=5)
    with socket.create_connection(("127.0.0.1", otrs.port), timeout=5) as raw:
        raw.sendall(b"POST /znuny/nph-genericinterface.pl/Webservice/NoSuchService/Session HTTP/1.1\r\n"
                    b"Host: x\r\nContent-Length: 2\r\n\r\n{}")
        assert raw.recv(100) == (RECORDED / "35-error-unknown-webservice.headers").read_bytes()


def test_search_answers_string_ids_or_empty_object(otrs: OtrsDouble) -> None:
    """41: header auth works, ids are strings, newest first; no hits: {}; StateType must be a real type name."""
    seed(otrs)
    headers = {"X-OTRS-Header-UserLogin": otrs.user, "X-OTRS-Header-Password": otrs.password}
    found = requests.get(url(otrs, "/Ticket"), params={"States": "closed successful"}, headers=headers, timeout=5)
    assert found.json() == recorded("41-search-headers-auth.json") == {"TicketID": ["3", "2"]}
    sid = session(otrs)

    def search(**criteria: Any) -> Any:
        return requests.post(url(otrs, "/TicketSearch"), json={"SessionID": sid, **criteria}, timeout=5).json()

    assert search(StateType=["closed"]) == {"TicketID": ["5", "3", "2"]}
    assert search(StateType="Closed") == {}
    assert search(States=["closed successful", "closed unsuccessful"], Limit=2) == {"TicketID": ["5", "3"]}
    assert search(TicketCloseTimeNewerDate="2026-11-23 00:06:08", TicketCloseTimeOlderDate="2026-11-23 00:06:08") == {
        "TicketID": ["3"]}
    assert search(CustomerID="kivi*1002") == {"TicketID": ["7", "5"]}


def test_customer_id_goes_through_an_operator_parser() -> None:
    """Spaces and + - ! & | ( ) are operators, so a raw customer number with them does not find itself."""
    assert customer_matches("1000387", "1000387")
    assert customer_matches("kivi*1001", "KIVI-1001")
    assert not customer_matches("KIVI-1001", "KIVI-1001")
    assert not customer_matches("KD 4711", "KD 4711")
    assert customer_matches("KD*4711", "KD 4711")
    assert not customer_matches("1000387", "10003870")


def test_ticket_update_sets_and_clears_dynamic_fields(otrs: OtrsDouble) -> None:
    seed(otrs)
    sid = session(otrs)
    answer = requests.patch(url(otrs, "/Ticket/2"), json={"SessionID": sid, "DynamicField": [
        {"Name": "KivitendoOrder", "Value": "A-1/3"}]}, timeout=5).json()
    assert answer == {"TicketID": "2", "TicketNumber": "2026112310000011"}
    assert set(recorded("03-ticket-update-close-2.json")) >= set(answer)
    assert otrs.tickets[2].dynamic_fields == {"KivitendoOrder": "A-1/3"}
    unknown = requests.patch(url(otrs, "/Ticket/2"), json={"SessionID": sid, "DynamicField": [
        {"Name": "Nope", "Value": "x"}]}, timeout=5).json()
    assert unknown["Error"]["ErrorCode"] == "TicketUpdate.InvalidParameter"
    requests.patch(url(otrs, "/Ticket/2"), json={"SessionID": sid, "DynamicField": [
        {"Name": "KivitendoOrder", "Value": ""}]}, timeout=5)
    assert otrs.tickets[2].dynamic_fields == {}
