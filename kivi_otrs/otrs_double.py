"""A stand-in for the OTRS/Znuny GenericInterface: a real HTTP server on loopback.

It answers like the responses recorded from a real Znuny 7.1.7 (see
``tests/test_otrs_double.py``, which compares key sets, types and error texts with the
recordings): same routes as ``kivi-otrs otrs-webservice``, ids as strings in searches and
numbers in TicketGet, ``{}`` for an empty search or a malformed date, operation errors
as HTTP 200 ``Error`` objects, plain-text 500s for unknown routes and broken JSON, and a
closed connection without a reply for an unknown web service name.

Where the recordings are silent (the TicketSearch recordings are empty files), it
follows the Znuny source: States / StateType by exact name, the close-time bounds
inclusive, ``Limit`` (default ``search_limit``) with no paging, CustomerID through a
simplified search-expression parser (whitespace and ``+ - ! & | ( )`` split the value
into terms that must *each* match the whole CustomerID, ``*`` is a wildcard), dynamic
field ``Empty`` / ``Equals``.

Fault injection for tests, benches and the demo: ``latency`` per call, ``down`` (close
every connection without an answer), ``garbage`` (an HTML page with HTTP 200),
``fail_next(n, kind)``, ``denied`` ticket ids (searches find them, TicketGet of a batch
containing one fails with ``TicketGet.AccessDenied``) and :meth:`expire_sessions`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TIME = "%Y-%m-%d %H:%M:%S"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
STATES: dict[str, tuple[int, str]] = {
    "new": (1, "new"), "closed successful": (2, "closed"), "closed unsuccessful": (3, "closed"), "open": (4, "open"),
    "removed": (5, "removed"), "pending reminder": (6, "pending reminder"), "pending auto close+": (7, "pending auto"),
    "pending auto close-": (8, "pending auto"), "merged": (9, "merged"),
}
OPERATOR_SPLIT = re.compile(r"[\s+\-&|()]+")
FAULTS = ("down", "garbage", "error500", "unavailable")


@dataclass
class FakeTicket:
    ticket_id: int
    number: str
    title: str
    customer_id: str
    customer_user: str = ""
    state: str = "closed successful"
    queue: str = "Raw"
    service: str = ""
    type: str = "Unclassified"
    time_unit: Decimal = Decimal(0)
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    close_times: list[datetime] = field(default_factory=list)
    dynamic_fields: dict[str, str] = field(default_factory=dict)


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral() else float(value)


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=lambda v: _json_number(v) if isinstance(v, Decimal) else str(v)).encode()


def _like(pattern: str) -> re.Pattern[str]:
    regex = "".join(".*" if ch in "*%" else "." if ch == "_" else re.escape(ch) for ch in pattern.lower())
    return re.compile(regex, re.DOTALL)


def customer_matcher(expression: str) -> Callable[[str], bool]:
    """OTRS-like CustomerID matching: operators split the value into terms that must all match.

    Parsed once per search; the returned predicate is applied to every ticket.
    """
    terms = [(t.startswith("!"), t.lstrip("!")) for t in OPERATOR_SPLIT.split(expression.strip()) if t]
    if not terms or any(not term for _, term in terms):
        return lambda customer_id: False
    compiled = [(negate, _like(term)) for negate, term in terms]
    return lambda customer_id: all((pattern.fullmatch(customer_id.lower()) is not None) != negate
                                   for negate, pattern in compiled)


def customer_matches(expression: str, customer_id: str) -> bool:
    return customer_matcher(expression)(customer_id)


class OtrsDouble:
    """The helpdesk side for tests and the demo. ``with OtrsDouble() as otrs: otrs.base_url``."""

    def __init__(self, webservice: str = "KivitendoBilling", base_path: str = "/znuny/", user: str = "kivi-billing",
                 password: str = "demo-password", search_limit: int = 500,  # noqa: S107 - the stand-in's demo agent
                 dynamic_fields: tuple[str, ...] = ("KivitendoOrder",)) -> None:
        self.webservice = webservice
        self.base_path = base_path
        self.user = user
        self.password = password
        self.search_limit = search_limit
        self.dynamic_field_names = set(dynamic_fields)
        self.tickets: dict[int, FakeTicket] = {}
        self._by_customer: dict[str, dict[int, FakeTicket]] = {}
        self.sessions: set[str] = set()
        self.denied: set[int] = set()
        self.latency = 0.0
        self.down = False
        self.garbage = False
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.search_sizes: list[int] = []  # how many ids each TicketSearch answered (for tests and benches)
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self._next_article = 100
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, port: int = 0) -> OtrsDouble:
        double = self

        class Handler(_Handler):
            otrs = double

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OtrsDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the double first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    # -- data and faults -----------------------------------------------------------------------

    def add_ticket(self, ticket_id: int, title: str, customer_id: str, time_unit: Decimal | int | str = 0,
                   closed: datetime | list[datetime] | None = None, state: str = "closed successful",
                   number: str | None = None, **extra: Any) -> FakeTicket:
        closes = closed if isinstance(closed, list) else [closed] if closed else []
        closes = [c.astimezone(UTC).replace(microsecond=0) if c.tzinfo else c.replace(tzinfo=UTC) for c in closes]
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        created = (min(closes) - timedelta(hours=2)) if closes else datetime.now(UTC).replace(microsecond=0)
        ticket = FakeTicket(ticket_id=ticket_id, number=number or f"{created:%Y%m%d}1{ticket_id:07d}", title=title,
                            customer_id=customer_id, state=state, time_unit=Decimal(str(time_unit)),
                            created=created, close_times=closes, **extra)
        with self._lock:
            old = self.tickets.get(ticket_id)
            if old is not None:
                self._by_customer.get(old.customer_id.lower(), {}).pop(ticket_id, None)
            self.tickets[ticket_id] = ticket
            self._by_customer.setdefault(customer_id.lower(), {})[ticket_id] = ticket
        return ticket

    def seed_demo(self, today: date | None = None) -> list[FakeTicket]:
        """The recorded Znuny demo tickets (minutes), closed in the previous month, plus the seed's "Beamer"."""
        today = today or datetime.now(UTC).date()
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)

        def at(day: int, hour: int) -> datetime:
            return datetime(first.year, first.month, day, hour, 0, tzinfo=UTC)

        demo = [
            (2, "2026112310000011", "Drucker druckt nicht", "KIVI-1001", "anna.meyer@example.org", 135,
             [at(3, 9)], "closed successful"),
            (3, "2026112310000021", "VPN Zugang einrichten", "KIVI-1001", "anna.meyer@example.org", 180,
             [at(4, 10)], "closed successful"),
            (4, "2026112310000039", "Rechnungsexport fehlerhaft", "KIVI-1002", "bernd.schulz@example.org", 60,
             [at(5, 11), at(12, 15)], "closed successful"),
            (5, "2026112310000048", "Neuer Arbeitsplatz", "KIVI-1002", "bernd.schulz@example.org", 300,
             [at(6, 8)], "closed unsuccessful"),
            (6, "2026112310000057", "Passwort vergessen", "KIVI-1001", "anna.meyer@example.org", 15,
             [at(7, 13)], "closed successful"),
            (7, "2026112310000066", "Server langsam", "KIVI-1002", "bernd.schulz@example.org", 240, [], "open"),
            (8, "281653", "Beamer", "1000387", "it@mediasaturn.example", 20, [at(14, 16)], "closed successful"),
            (9, "2026112310000084", "Kasse bootet nicht", "KD 4711", "", 0, [at(20, 9)], "closed successful"),
            (10, "2026112310000093", "Anfrage ohne Vertrag", "EXT-0077", "info@fremd.example", 45, [at(21, 10)],
             "closed successful"),
        ]
        return [self.add_ticket(tid, title, cust, minutes, closes, state, number=number, customer_user=user)
                for tid, number, title, cust, user, minutes, closes, state in demo]

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()

    def fail_next(self, count: int, kind: str) -> None:
        """The next ``count`` requests fail with ``kind``: down, garbage, error500 or unavailable (503)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([kind] * count)

    def take_fault(self) -> str | None:
        with self._lock:
            if self.down:
                return "down"
            if self.garbage:
                return "garbage"
            return self._faults.pop(0) if self._faults else None

    # -- operations (data in, JSON out, like Kernel::GenericInterface::Operation::*) ---------------

    def authenticate(self, data: dict[str, Any], headers: dict[str, str]) -> bool:
        session = data.get("SessionID") or headers.get("x-otrs-header-sessionid")
        if session:
            with self._lock:
                return str(session) in self.sessions
        login = data.get("UserLogin") or headers.get("x-otrs-header-userlogin")
        password = data.get("Password") or headers.get("x-otrs-header-password")
        return bool(login) and login == self.user and password == self.password

    def session_create(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("UserLogin") != self.user or data.get("Password") != self.password:
            return _error("SessionCreate.AuthFail", "SessionCreate: Authorization failing!")
        session = secrets.token_urlsafe(24)[:32]
        with self._lock:
            self.sessions.add(session)
        return {"SessionID": session}

    def ticket_search(self, data: dict[str, Any]) -> dict[str, Any]:
        def values(key: str) -> list[str]:
            raw = data.get(key)
            if raw in (None, "", []):
                return []
            return [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]

        bounds = {}
        for key in ("TicketCloseTimeNewerDate", "TicketCloseTimeOlderDate", "TicketCreateTimeNewerDate",
                    "TicketCreateTimeOlderDate"):
            if key in data:
                if not DATE_RE.match(str(data[key])):
                    return {}
                bounds[key] = datetime.strptime(str(data[key]), TIME).replace(tzinfo=UTC)
        try:
            limit = int(data.get("Limit") or self.search_limit)
        except ValueError:
            limit = self.search_limit
        states, types, customers = values("States"), values("StateType"), values("CustomerID")
        logins = [v.lower() for v in values("CustomerUserLogin")]
        df_filters = {k[len("DynamicField_"):]: v for k, v in data.items()
                      if k.startswith("DynamicField_") and k[len("DynamicField_"):] in self.dynamic_field_names}
        newer, older = bounds.get("TicketCloseTimeNewerDate"), bounds.get("TicketCloseTimeOlderDate")
        created_newer, created_older = bounds.get("TicketCreateTimeNewerDate"), bounds.get("TicketCreateTimeOlderDate")
        matchers = [customer_matcher(c) for c in customers]
        hits = []
        with self._lock:
            if customers and not any(ch in c for c in customers for ch in "*%_ +-!&|()"):
                # plain customer numbers: an index instead of a scan (keeps big benches fast)
                tickets = [t for c in customers for t in self._by_customer.get(c.lower(), {}).values()]
            else:
                tickets = list(self.tickets.values())
        for t in tickets:
            if states and t.state not in states:
                continue
            if types and STATES[t.state][1] not in types:
                continue
            if matchers and not any(match(t.customer_id) for match in matchers):
                continue
            if logins and t.customer_user.lower() not in logins:
                continue
            if (newer or older) and not any((newer is None or c >= newer) and (older is None or c <= older)
                                            for c in t.close_times):
                continue
            if (created_newer and t.created < created_newer) or (created_older and t.created > created_older):
                continue
            if not all(_df_match(t.dynamic_fields.get(name, ""), rule) for name, rule in df_filters.items()):
                continue
            hits.append(t)
        hits.sort(key=lambda t: (t.created, t.ticket_id), reverse=True)
        ids = [str(t.ticket_id) for t in hits[:limit]]
        with self._lock:
            self.search_sizes.append(len(ids))
        return {"TicketID": ids} if ids else {}

    def ticket_get(self, data: dict[str, Any]) -> dict[str, Any]:
        raw = data.get("TicketID")
        items = raw if isinstance(raw, list) else str(raw or "").split(",")
        ids: list[int] = []
        for item in items:
            text = str(item).strip()
            if not text.isdigit():
                return _error("TicketGet.MissingParameter", "TicketGet: TicketID parameter is missing!") if not text else \
                    _error("TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")
            ids.append(int(text))
        if not ids:
            return _error("TicketGet.MissingParameter", "TicketGet: TicketID parameter is missing!")
        with self._lock:
            if any(i not in self.tickets or i in self.denied for i in ids):
                return _error("TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")
            found = [self.tickets[i] for i in ids]
        def flag(key: str) -> bool:
            return str(data.get(key, "")) in ("1", "True", "true")

        return {"Ticket": [self._render(t, flag("Extended"), flag("AllArticles"), flag("DynamicFields")) for t in found]}

    def ticket_update(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            ticket_id = int(str(data.get("TicketID", "")))
        except ValueError:
            return _error("TicketUpdate.MissingParameter", "TicketUpdate: TicketID or TicketNumber is required!")
        with self._lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None or ticket_id in self.denied:
                return _error("TicketUpdate.AccessDenied", "TicketUpdate: User does not have access to the ticket!")
            fields = data.get("DynamicField") or []
            if isinstance(fields, dict):
                fields = [fields]
            for item in fields:
                if not isinstance(item, dict) or item.get("Name") not in self.dynamic_field_names:
                    return _error("TicketUpdate.InvalidParameter", "TicketUpdate: DynamicField->Name parameter is invalid!")
            new_state = (data.get("Ticket") or {}).get("State") if isinstance(data.get("Ticket"), dict) else None
            if new_state is not None and new_state not in STATES:
                return _error("TicketUpdate.InvalidParameter",
                              "TicketUpdate: Ticket->StateID or Ticket->State parameter is invalid!")
            for item in fields:
                value = item.get("Value")
                if value in (None, ""):
                    ticket.dynamic_fields.pop(str(item["Name"]), None)
                else:
                    ticket.dynamic_fields[str(item["Name"])] = str(value)
            if new_state:
                ticket.state = new_state
                if STATES[new_state][1] == "closed":
                    ticket.close_times.append(datetime.now(UTC).replace(microsecond=0))
            answer: dict[str, Any] = {"TicketID": str(ticket_id), "TicketNumber": ticket.number}
            if isinstance(data.get("Article"), dict):
                self._next_article += 1
                answer["ArticleID"] = self._next_article
        return answer

    def _render(self, t: FakeTicket, extended: bool, all_articles: bool, dynamic_fields: bool) -> dict[str, Any]:
        state_id, state_type = STATES[t.state]
        now = datetime.now(UTC)
        changed = max([t.created, *t.close_times])
        out: dict[str, Any] = {
            "Age": int((now - t.created).total_seconds()), "ArchiveFlag": "n", "ChangeBy": 1,
            "Changed": f"{changed:{TIME}}", "CreateBy": 1, "Created": f"{t.created:{TIME}}", "CustomerID": t.customer_id,
            "CustomerUserID": t.customer_user, "EscalationResponseTime": 0, "EscalationSolutionTime": 0,
            "EscalationTime": 0, "EscalationUpdateTime": 0, "GroupID": 1, "Lock": "unlock", "LockID": 1,
            "Owner": "root@localhost", "OwnerID": 1, "Priority": "3 normal", "PriorityID": 3, "Queue": t.queue,
            "QueueID": 2, "RealTillTimeNotUsed": 0, "Responsible": "root@localhost", "ResponsibleID": 1, "SLAID": "",
            "ServiceID": "", "State": t.state, "StateID": state_id, "StateType": state_type, "TicketID": t.ticket_id,
            "TicketNumber": t.number, "TimeUnit": t.time_unit, "Title": t.title, "Type": t.type, "TypeID": 1,
            "UnlockTimeout": int(changed.timestamp()), "UntilTime": 0,
        }
        if t.service:
            out["Service"] = t.service
            out["ServiceID"] = 1
        if extended:
            out["FirstResponse"] = f"{t.created:{TIME}}"
            out["SolutionInMin"] = 0
            if t.close_times and state_type == "closed":
                out["Closed"] = f"{max(t.close_times):{TIME}}"
        if dynamic_fields:
            out["DynamicField"] = [{"Name": name, "Value": t.dynamic_fields.get(name)}
                                   for name in sorted(self.dynamic_field_names)]
        if all_articles:
            out["Article"] = [{"ArticleID": t.ticket_id * 10, "ArticleNumber": 1, "Body": f"Beschreibung: {t.title}",
                               "CreateTime": f"{t.created:{TIME}}", "Subject": t.title, "TicketID": t.ticket_id,
                               "TimeUnit": t.time_unit, "SenderType": "agent", "IsVisibleForCustomer": 1}]
        return out


def _df_match(value: str, rule: Any) -> bool:
    if not isinstance(rule, dict):
        return True
    if "Empty" in rule:
        wants_empty = str(rule["Empty"]) in ("1", "True", "true")
        if wants_empty != (value == ""):
            return False
    if "Equals" in rule:
        wanted = rule["Equals"] if isinstance(rule["Equals"], list) else [rule["Equals"]]
        if value not in [str(w) for w in wanted]:
            return False
    return True


def _error(code: str, message: str) -> dict[str, Any]:
    return {"Error": {"ErrorCode": code, "ErrorMessage": message}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is not an error of the stand-in."""


class _Handler(BaseHTTPRequestHandler):
    otrs: OtrsDouble
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json; charset=UTF-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _hang_up(self) -> None:
        self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        otrs = self.otrs
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        if otrs.latency:
            time.sleep(otrs.latency)
        fault = otrs.take_fault()
        if fault == "down":
            return self._hang_up()
        if fault == "garbage":
            return self._reply(200, b"<html><body><h1>Proxy Error</h1></body></html>", "text/html")
        if fault == "unavailable":
            return self._reply(503, b"Service Unavailable", "text/plain")
        if fault == "error500":
            return self._reply(500, b"Internal Server Error", "text/plain; charset=UTF-8")
        url = urlsplit(self.path)
        prefix = f"{otrs.base_path}nph-genericinterface.pl/Webservice/"
        if not url.path.startswith(prefix):
            return self._reply(404, b"<html><body>Not Found</body></html>", "text/html")
        name, _, route = url.path[len(prefix):].partition("/")
        if unquote(name) != otrs.webservice:
            return self._hang_up()  # Znuny: unknown web service -> connection closed, no reply
        route = "/" + unquote(route)
        operation, params = _route(method, route)
        if operation is None:
            text = f"HTTP::REST Error while determine Operation for request URI '{route}'."
            return self._reply(500, text.encode(), "text/plain; charset=UTF-8")
        data: dict[str, Any] = {}
        if method == "GET":
            for key, vals in parse_qs(url.query, keep_blank_values=True).items():
                data[key] = vals if len(vals) > 1 else vals[0]
        elif raw_body:
            try:
                parsed = json.loads(raw_body)
                if not isinstance(parsed, dict):
                    raise ValueError
                data = parsed
            except ValueError:
                return self._reply(500, b"Error while decoding request content.", "text/plain; charset=UTF-8")
        data.update(params)
        headers = {k.lower(): v for k, v in self.headers.items()}
        otrs.calls[operation] += 1
        otrs.requests.append({"operation": operation, "data": {k: v for k, v in data.items()
                                                                if k not in ("Password", "SessionID")}})
        if operation == "SessionCreate":
            answer = otrs.session_create(data)
        elif not otrs.authenticate(data, headers):
            answer = _error(f"{operation}.AuthFail", f"{operation}: Authorization failing!")
        elif operation == "TicketSearch":
            answer = otrs.ticket_search(data)
        elif operation == "TicketGet":
            answer = otrs.ticket_get(data)
        else:
            answer = otrs.ticket_update(data)
        self._reply(200, _encode(answer))


def _route(method: str, route: str) -> tuple[str | None, dict[str, str]]:
    """The RouteOperationMapping of templates/otrs-webservice.yml."""
    if method == "POST" and route == "/Session":
        return "SessionCreate", {}
    if method == "POST" and route == "/TicketSearch":
        return "TicketSearch", {}
    if method == "GET" and route == "/Ticket":
        return "TicketSearch", {}
    if method == "POST" and route == "/TicketList":
        return "TicketGet", {}
    match = re.fullmatch(r"/Ticket/([^/]+)", route)
    if match and method == "GET":
        return "TicketGet", {"TicketID": match.group(1)}
    if match and method == "PATCH":
        return "TicketUpdate", {"TicketID": match.group(1)}
    return None, {}
