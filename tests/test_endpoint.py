"""The endpoint behind the order-screen button (``kivi-otrs serve``) on waitress: every bad input gets a 4xx.

Against the real PostgreSQL and the OTRS stand-in: bad bodies and fields (table-driven:
request, expected status and message), broken HTTP (half requests, a Content-Length
longer than the body, chunked bodies, aborted connections), tokens, loopback binding
(127.0.0.1, ::1, localhost) and several kivitendo clients.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from conftest import drop_database, new_database
from test_helpdesk_flow import PASSWORD, TOKEN, helpdesk  # noqa: F401  (fixture)

from kivi_otrs import config, migrate
from kivi_otrs.endpoint import Client, EndpointServer, Tuning, bind_loopback, load_client, parse_client_spec
from kivi_otrs.errors import ConfigError
from kivi_otrs.otrs_double import OtrsDouble

FAST = Tuning(threads=4, channel_timeout=1, cleanup_interval=1)
OCTOBER = {"from": "2026-10-01", "to": "2026-10-31"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANY_V4 = "0.0.0.0"  # noqa: S104  (only to show it is refused)


@pytest.fixture
def server(migrated_dsn: str, helpdesk: OtrsDouble) -> Iterator[EndpointServer]:  # noqa: F811
    """The endpoint for the test database with a 1 s channel timeout."""
    endpoint = EndpointServer([load_client(migrated_dsn, token=TOKEN)], port=0, tuning=FAST)
    endpoint.start_background()
    yield endpoint
    endpoint.shutdown()


def post(server: EndpointServer, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{server.url}/positions", json=body, headers={**AUTH, **(headers or {})}, timeout=30)


def raw(server: EndpointServer, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes, return everything the endpoint answers until it closes the connection."""
    host, port = server.addresses[0]
    with socket.create_connection((host, port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


BAD_FIELDS: list[tuple[dict[str, Any], int, str]] = [
    ({"order_id": "٣"}, 400, "order_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": "١٢"}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": "12a"}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": " 12"}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": -1}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": 0}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": 1.5}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": True}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": 2**31}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_id": "99999999999"}, 400, "customer_id must be a whole number from 1 to 2147483647 (digits 0-9 only)"),
    ({"customer_number": "KD\n4711"}, 400, "customer_number must be a text of at most 100 characters without control characters"),
    ({"customer_number": 4711}, 400, "customer_number must be a text of at most 100 characters without control characters"),
    ({"customer_id": 9001, "from": "2026-10-31", "to": "2026-10-01"}, 400, "from 2026-10-31 is after to 2026-10-01"),
    ({"customer_id": 9001, "from": "2026-02-30", "to": "2026-03-01"}, 400, "from must be a date like 2026-10-31"),
    ({"customer_id": 9001, "from": "٢٠٢٦-10-01", "to": "2026-10-31"}, 400, "from must be a date like 2026-10-31"),
    ({"customer_id": 9001, "from": "20261001", "to": "2026-10-31"}, 400, "from must be a date like 2026-10-31"),
    ({"customer_id": 9001, "from": "2026-10-01", "to": "2026-10-31\n"}, 400, "to must be a date like 2026-10-31"),
    ({"customer_id": 9001, "from": "2026-10-01", "to": None}, 400, "give both from and to (inclusive dates), or a period"),
    ({"customer_id": 9001, "period": "yesterday"}, 400,
     "period must be previous-month, current-month or last-N-days (N from 1 to 9999)"),
    ({"customer_id": 9001, "period": "last-0-days"}, 400,
     "period must be previous-month, current-month or last-N-days (N from 1 to 9999)"),
    ({"customer_id": 9001, "period": "last-٣-days"}, 400,
     "period must be previous-month, current-month or last-N-days (N from 1 to 9999)"),
    ({"customer_id": 9001, "number_format": "1.000.00"}, 400,
     "unknown number_format '1.000.00'; use one of 1.000,00, 1000,00, 1,000.00, 1000.00, 1'000.00"),
    ({"customer_id": 9001, "language": "xx"}, 400, "unknown language 'xx'; use one of de, en"),
    ({"customer_id": 9001, "periodic": "yes"}, 400, "periodic must be true or false"),
    ({"customer_id": 9001, "dry_run": 1}, 400, "dry_run must be true or false"),
    ({"customer_id": 9001, "token": TOKEN}, 400,
     "unknown field 'token'; allowed: client, order_id, customer_id, customer_number, period, from, to, periodic, "
     "number_format, language, dry_run"),
    ({}, 400, "choose a customer first (order_id, customer_id or customer_number is required)"),
    ({"order_id": None, "customer_id": ""}, 400,
     "choose a customer first (order_id, customer_id or customer_number is required)"),
    ({"customer_id": 9001, "client": "other_db"}, 400, "unknown client 'other_db'; this endpoint serves '{db}'"),
    ({"customer_id": 9001, "client": {"id": 1, "dbname": "other_db"}}, 400,
     "unknown client 'other_db'; this endpoint serves '{db}'"),
    ({"customer_id": 9001, "client": {"dbname": "x", "password": "p"}}, 400,
     "unknown field client.password; allowed: dbname, id, name, dbhost, dbport"),
    ({"customer_id": 9001, "client": 7}, 400,
     "client must be the kivitendo client's database name, or an object with dbname"),
    ({"customer_id": 424242}, 422, "customer 424242 not found in kivitendo"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_FIELDS)
def test_bad_fields_get_a_4xx_with_one_line(server: EndpointServer, conn: psycopg.Connection[Any], body: dict[str, Any],
                                            status: int, message: str) -> None:
    """Each malformed field is answered with its status and a one-line message; nothing is reserved."""
    answer = post(server, {**OCTOBER, **body} if "period" not in body else body)
    assert answer.status_code == status, answer.text
    assert answer.json() == {"error": message.format(db=next(iter(server.app.clients)))}
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone() == (0,)


BAD_BODIES: list[tuple[str, bytes, str, int, str]] = [
    ("broken JSON", b'{"customer_id": 9001', "application/json", 400, "request body is not a JSON object (UTF-8)"),
    ("JSON array", b"[9001]", "application/json", 400, "request body is not a JSON object (UTF-8)"),
    ("JSON string", b'"9001"', "application/json", 400, "request body is not a JSON object (UTF-8)"),
    ("NaN", b'{"customer_id": NaN}', "application/json", 400, "request body is not a JSON object (UTF-8)"),
    ("latin-1 bytes", '{"customer_number": "Müller"}'.encode("latin-1"), "application/json", 400,
     "request body is not a JSON object (UTF-8)"),
    ("deep nesting", b"[" * 20_000 + b"]" * 20_000, "application/json", 400, "request body is not a JSON object (UTF-8)"),
    ("form post", b"customer_id=9001", "application/x-www-form-urlencoded", 415,
     "send the request body as JSON (Content-Type: application/json)"),
    ("too large", b'{"customer_number": "' + b"x" * 70_000 + b'"}', "application/json", 413,
     "request body too large (at most 65536 bytes)"),
    ("empty", b"", "application/json", 400,
     "choose a customer first (order_id, customer_id or customer_number is required)"),
]


@pytest.mark.parametrize(("name", "data", "content_type", "status", "message"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_get_a_4xx_json_error(server: EndpointServer, name: str, data: bytes, content_type: str, status: int,
                                         message: str) -> None:
    """Bodies that are not a JSON object, too large or of another type: 4xx with a JSON one-line error."""
    answer = requests.post(f"{server.url}/positions", data=data, headers={**AUTH, "Content-Type": content_type},
                           timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json() == {"error": message}


BAD_ROUTES: list[tuple[str, str, dict[str, str], int, str]] = [
    ("GET", "/health", {}, 401, "missing or wrong token"),
    ("GET", "/health", {"Authorization": "Bearer wrong-token-wrong-token"}, 401, "missing or wrong token"),
    ("GET", "/health", {"Authorization": f"bearer {TOKEN}"}, 401, "missing or wrong token"),
    ("GET", "/health", {"Authorization": TOKEN}, 401, "missing or wrong token"),
    ("POST", "/positions", {"Authorization": "Bearer "}, 401, "missing or wrong token"),
    ("GET", "/health", AUTH, 200, ""),
    ("POST", "/health", AUTH, 405, "use GET /health"),
    ("GET", "/positions", AUTH, 405, "use POST /positions with a JSON body"),
    ("GET", "/admin", AUTH, 404, "unknown path; use POST /positions or GET /health"),
    ("GET", f"/health?token={TOKEN}", {}, 400, "query strings are not accepted; send the token in the Authorization "
                                                "header and the fields as a JSON body"),
]


@pytest.mark.parametrize(("method", "path", "headers", "status", "message"), BAD_ROUTES)
def test_routes_and_tokens(server: EndpointServer, method: str, path: str, headers: dict[str, str], status: int,
                           message: str) -> None:
    """Wrong token, method, path or a query string: the right status and one line."""
    answer = requests.request(method, f"{server.url}{path}", headers=headers, json={"customer_id": 9001}, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json() == ({"status": "ok"} if status == 200 else {"error": message})


def test_token_in_the_query_string_is_never_logged(server: EndpointServer, caplog: pytest.LogCaptureFixture) -> None:
    """The access log has method, path and status, never the query string or headers."""
    caplog.set_level(logging.DEBUG)
    requests.get(f"{server.url}/health?access_token={TOKEN}", timeout=30)
    requests.post(f"{server.url}/positions?token={TOKEN}", json={"customer_id": 9001}, headers=AUTH, timeout=30)
    post(server, {"customer_id": 9001, "dry_run": True, **OCTOBER})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("kivi_otrs", "waitress"))]  # not the client's
    assert any('"GET /health" 400' in line for line in lines), lines
    assert any('"POST /positions" 200' in line and "client=kivi_test" in line for line in lines), lines
    assert not any(TOKEN in line or "token=" in line for line in lines)


def test_dry_run_computes_positions_and_writes_nothing(server: EndpointServer, conn: psycopg.Connection[Any]) -> None:
    """dry_run answers the positions from a read-only transaction: the ledger stays empty."""
    answer = post(server, {"customer_id": 9001, "dry_run": True, **OCTOBER})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["positions"]) == 2
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone() == (0,)
    assert len(post(server, {"customer_id": 9001, **OCTOBER}).json()["positions"]) == 2
    assert conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone() == (2,)


def test_chunked_body_is_read(server: EndpointServer) -> None:
    """A chunked request body is de-chunked by the server and answered like any other."""
    body = json.dumps({"customer_id": 9001, "dry_run": True, **OCTOBER}).encode()
    head = (f"POST /positions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    answer = raw(server, head + chunks)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["positions"]) == 2


@pytest.mark.parametrize("data", [
    b"POST /positions HTTP/1.1\r\nHost: x\r\n",
    b"POST /positions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}",
    b"",
], ids=["half headers", "Content-Length longer than body", "nothing"])
def test_incomplete_requests_are_closed_after_the_channel_timeout(server: EndpointServer, data: bytes) -> None:
    """A half-sent request holds a connection only for the channel timeout (1 s here), then it is closed."""
    started = time.monotonic()
    assert raw(server, data, wait=10) == b""
    assert 0.5 < time.monotonic() - started < 5


def test_aborted_connections_log_no_traceback(server: EndpointServer, helpdesk: OtrsDouble,  # noqa: F811
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Clients that hang up before the answer (or mid-request) leave no traceback in the log."""
    caplog.set_level(logging.DEBUG)
    helpdesk.latency = 0.3
    body = json.dumps({"customer_id": 9001, "dry_run": True, **OCTOBER}).encode()
    host, port = server.addresses[0]
    for cut in (len(body), 5):
        sock = socket.create_connection((host, port))
        sock.sendall(f"POST /positions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.close()
    time.sleep(1.5)
    assert requests.get(f"{server.url}/health", headers=AUTH, timeout=30).status_code == 200
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize("host", ["::1", "localhost", "127.0.0.1", "[::1]"])
def test_loopback_hosts_bind(migrated_dsn: str, host: str) -> None:
    """::1, localhost (every address it resolves to) and 127.0.0.1 serve the endpoint."""
    if host.strip("[]") == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    endpoint = EndpointServer([load_client(migrated_dsn, token=TOKEN)], host, 0, tuning=FAST)
    endpoint.start_background()
    try:
        for url in endpoint.urls:
            assert requests.get(f"{url}/health", headers=AUTH, timeout=30).json() == {"status": "ok"}
    finally:
        endpoint.shutdown()


@pytest.mark.parametrize(("host", "message"), [
    (ANY_V4, "refusing to listen on 0.0.0.0 (0.0.0.0): the endpoint binds to loopback only"),
    ("::", "refusing to listen on :: (::): the endpoint binds to loopback only"),
    ("192.0.2.1", "refusing to listen on 192.0.2.1 (192.0.2.1): the endpoint binds to loopback only"),
    ("no-such-host.invalid", "cannot resolve --host 'no-such-host.invalid'"),
])
def test_other_hosts_are_refused(host: str, message: str) -> None:
    """Anything but loopback is refused with a one-line ConfigError before a socket is bound."""
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        bind_loopback(host, 0)


def test_serve_command_on_ipv6_loopback(migrated_dsn: str) -> None:
    """kivi-otrs serve --host ::1 starts (it crashed with 'unexpected ...' on http.server)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KIVI_OTRS_DSN": migrated_dsn, "KIVI_OTRS_API_TOKEN": TOKEN}
    with subprocess.Popen([sys.executable, "-m", "kivi_otrs", "serve", "--host", "::1", "--port", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("kivi-otrs endpoint on http://[::1]:"), line
            url = line.split()[3]
            assert requests.get(f"{url}/health", headers=AUTH, timeout=30).json() == {"status": "ok"}
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=10)
    assert TOKEN not in err


def test_serve_command_refuses_a_public_host(migrated_dsn: str) -> None:
    """--host 0.0.0.0 is one line 'Error: refusing ...' and exit 2."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KIVI_OTRS_DSN": migrated_dsn, "KIVI_OTRS_API_TOKEN": TOKEN}
    run = subprocess.run([sys.executable, "-m", "kivi_otrs", "serve", "--host", ANY_V4, "--port", "0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "Error: refusing to listen on 0.0.0.0 (0.0.0.0): the endpoint binds to loopback only (127.0.0.1, ::1 or localhost)"]


# Several kivitendo clients ------------------------------------------------------------------------------------


@pytest.fixture
def second_dsn(pg_admin_dsn: str, template_db: str, helpdesk: OtrsDouble) -> Iterator[str]:  # noqa: F811
    """A second kivitendo client database (same demo data), configured for the same stand-in."""
    dsn = new_database(pg_admin_dsn, template_db)
    migrate.migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        for key, value in {"otrs.base_url": helpdesk.base_url, "otrs.user": helpdesk.user, "otrs.password": PASSWORD,
                           "billing.default_part": "SYS-STD"}.items():
            config.set_value(conn, key, value)
    yield dsn
    drop_database(pg_admin_dsn, dsn)


def dbname(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


def ledger(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM kivi_otrs.ledger").fetchone()
    return int(row[0]) if row else -1


def test_each_request_runs_only_against_the_client_it_names(migrated_dsn: str, second_dsn: str) -> None:
    """Two clients: a request reserves in its own client's database only; naming none or an unknown one is refused."""
    first, second = dbname(migrated_dsn), dbname(second_dsn)
    other_token = "another-token-for-client-two"
    endpoint = EndpointServer([load_client(migrated_dsn, first, token=TOKEN), load_client(second_dsn, token=other_token)],
                              port=0, tuning=FAST)
    endpoint.start_background()
    try:
        two = {"Authorization": f"Bearer {other_token}"}
        answer = post(endpoint, {"customer_id": 9001, "client": {"id": 2, "dbname": second}, **OCTOBER}, two)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["positions"]) == 2
        assert (ledger(migrated_dsn), ledger(second_dsn)) == (0, 2)

        refused = post(endpoint, {"customer_id": 9001, "client": second, **OCTOBER})
        assert (refused.status_code, refused.json()) == (403, {"error": f"the token is not valid for client {second!r}"})
        unnamed = post(endpoint, {"customer_id": 9001, **OCTOBER})
        assert (unnamed.status_code, unnamed.json()) == (400, {
            "error": "name the kivitendo client (field client: its database name); this endpoint serves several"})
        unknown = post(endpoint, {"customer_id": 9001, "client": "firma", **OCTOBER}, two)
        assert (unknown.status_code, unknown.json()) == (400, {
            "error": f"unknown client 'firma'; this endpoint serves {second!r}"})
        assert (ledger(migrated_dsn), ledger(second_dsn)) == (0, 2)
    finally:
        endpoint.shutdown()


def test_client_configuration_is_checked_at_start(migrated_dsn: str) -> None:
    """A client name that is not its DSN's database name, a duplicate, or a short token stops the start."""
    with pytest.raises(ConfigError, match=r"^client 'firma' points at database 'kivi_test_"):
        load_client(migrated_dsn, "firma", token=TOKEN)
    with pytest.raises(ConfigError, match=r"^the endpoint needs a token of at least 16 characters"):
        load_client(migrated_dsn, token="short")
    client = load_client(migrated_dsn, token=TOKEN)
    with pytest.raises(ConfigError, match=rf"^client '{client.name}' is configured twice"):
        EndpointServer([client, Client(client.name, migrated_dsn, TOKEN)], port=0)
    assert parse_client_spec("firma = dbname=firma host=localhost") == ("firma", "dbname=firma host=localhost")
    with pytest.raises(ConfigError, match="is not NAME=DSN"):
        parse_client_spec("postgresql://kivi@localhost/firma")


def test_the_body_kivitendos_controller_sends_is_accepted(server: EndpointServer, conn: psycopg.Connection[Any]) -> None:
    """Contract: the controller's body (tests/test_kivitendo_integration.py) with the session's client object works."""
    db = next(iter(server.app.clients))
    body = {"customer_id": 9001, "periodic": True, "number_format": "1.000,00", "from": "2026-10-01", "to": "2026-10-31",
            "dry_run": False, "language": "de",
            "client": {"id": 2, "name": "Firma A", "dbname": db, "dbhost": "localhost", "dbport": 5432}}
    answer = post(server, body, {"X-Kivitendo-User": "anna"})
    assert answer.status_code == 200, answer.text
    assert [p["qty_as_number"] for p in answer.json()["positions"]] == ["2,25", "0,50"]
    assert conn.execute("SELECT DISTINCT claimed_by FROM kivi_otrs.ledger").fetchall() == [("anna",)]
