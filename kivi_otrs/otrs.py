"""A thin client for the OTRS/Znuny/OTOBO GenericInterface (HTTP::REST), over requests.

Why not a PyPI client: see docs/otrs-client.md. The client calls four operations of
the web service printed by ``kivi-otrs otrs-webservice``, all with a JSON body so that
neither the password nor the session id ever lands in a URL, a proxy log or an error:

    POST  /Session          SessionCreate
    POST  /TicketSearch     TicketSearch   (ids only; Limit explicit, big periods split)
    POST  /TicketList       TicketGet      (many ids per call, Extended=1 for the last close)
    PATCH /Ticket/:TicketID TicketUpdate   (write-back of a dynamic field)

What the GenericInterface does and how it is handled here:

* operation errors arrive as HTTP 200 with ``{"Error": {"ErrorCode", "ErrorMessage"}}``;
  they become :class:`HelpdeskError` with the ErrorCode kept;
* an expired or unknown session fails with ``<Operation>.AuthFail``: the session is
  created again and the call repeated once;
* an unknown route or broken JSON is a plain-text HTTP 500; an unknown web service name
  closes the connection without an answer; both get a message that says what to check;
* read operations are retried on connection failures and timeouts; TicketUpdate sets a
  field to a fixed value, so repeating it is harmless too;
* TicketSearch returns at most ``Limit`` ids with no paging: a period that hits the limit
  is halved (by close time) until every part is below it;
* searches and TicketGet batches go out ``otrs.parallel_requests`` at a time (Znuny
  serves each in its own process); every thread has its own ``requests.Session`` and a
  renewed session id is shared, so an expired session costs one SessionCreate, not one
  per thread; ``parallel_requests = 1`` sends one request after another;
* TicketGet batches start at ``otrs.batch_size`` tickets and are then sized from what the
  calls so far cost (:class:`BatchSizer`); answers are turned into :class:`Ticket` batch
  by batch, so the raw JSON of a month is never held at once;
* one ticket the agent may not see fails a whole TicketGet batch with
  ``TicketGet.AccessDenied``: the batch is bisected and only that ticket is skipped;
* a ticket closed, reopened and closed again matches every period with a close event;
  it belongs to the period of its last close (TicketGet ``Closed``);
* CustomerID goes through OTRS's search-expression parser, where spaces, ``+ - * ! & |
  ( )`` are operators: such characters are sent as ``*`` wildcards (a superset) and the
  answer is filtered to exactly that customer number here.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from .config import OtrsSettings
from .errors import ConfigError, HelpdeskAuthError, HelpdeskError, HelpdeskUnavailable
from .period import OTRS_FORMAT, Period, otrs_bounds, parse_otrs_time

log = logging.getLogger("kivi_otrs.otrs")

ROUTES: dict[str, tuple[str, str]] = {
    "SessionCreate": ("POST", "/Session"),
    "TicketSearch": ("POST", "/TicketSearch"),
    "TicketGet": ("POST", "/TicketList"),
    "TicketUpdate": ("PATCH", "/Ticket/{ticket_id}"),
}
# Characters OTRS's search-expression parser (Kernel::System::DB::QueryCondition) treats as operators.
PARSER_OPERATORS = re.compile(r"[\s+\-*!&|()%_\"']+")
MINUTES_PER_UNIT = {"minutes": Decimal(1), "hours": Decimal(60)}
MAX_TIME_UNITS = Decimal(100000)  # beyond this an accounted time is a typo (1e9, 1e30), not work to bill
CREATE_TIME_FLOOR = datetime(1970, 1, 1, 0, 0, 1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# TicketGet batch sizing (see BatchSizer): one call should answer well within otrs.read_timeout
# and carry at most about 1 MiB, larger batches only where they save noticeable time.
TARGET_CALL_SECONDS = 5.0
TARGET_CALL_BYTES = 1 << 20
MAX_BATCH = 1000
MIN_GAIN_SECONDS = 1.0
_T = TypeVar("_T")
HEADERS = {"Accept": "application/json", "User-Agent": "kivi-otrs"}


_NO_FIELDS: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Ticket:
    """One billable ticket as the billing code needs it."""

    ticket_id: int
    number: str
    title: str
    state: str
    state_type: str
    queue: str
    service: str
    type: str
    customer_id: str
    customer_user: str
    closed: datetime | None
    time_units: Decimal
    minutes: Decimal
    dynamic_fields: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, "number": self.number, "title": self.title, "state": self.state,
                "queue": self.queue, "service": self.service, "type": self.type, "customer_id": self.customer_id,
                "customer_user": self.customer_user, "closed": self.closed.isoformat() if self.closed else None,
                "time_units": str(self.time_units), "minutes": str(self.minutes)}


@dataclass
class TicketResult:
    """What :meth:`OtrsClient.closed_tickets` found: billable tickets and tickets left out, with why."""

    tickets: list[Ticket] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    searches: int = 0
    stale_marked: list[int] = field(default_factory=list)


def clean_text(value: object, limit: int = 200) -> str:
    """Untrusted helpdesk text made safe for a one-line message."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def customer_search_value(customer_number: str) -> str:
    """CustomerID for TicketSearch: parser operators become ``*`` wildcards (matches a superset)."""
    value = PARSER_OPERATORS.sub("*", customer_number.strip())
    return value or "*"


def _info(raw: dict[str, Any]) -> dict[str, Any]:
    """How a skipped ticket is named in the run's report."""
    return {"ticket_id": raw.get("TicketID"), "ticket_number": clean_text(raw.get("TicketNumber", ""), 40),
            "title": clean_text(raw.get("Title", ""))}


def _decimal(value: object) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        return Decimal("NaN")
    return _decimal_of(str(value).strip())


@functools.lru_cache(maxsize=4096)
def _decimal_of(text: str) -> Decimal:
    """One Decimal object per distinct accounted time (a month has few distinct values: memory)."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal("NaN")


def _text(value: object) -> str:
    """Helpdesk text as PostgreSQL can store it (no NUL characters)."""
    return str(value).replace("\x00", "")


class BatchSizer:
    """How many tickets the next TicketGet asks for, from the calls measured so far.

    A call costs a fixed part (Znuny under CGI: about 0.8 s to start the process and check
    the session; the stand-in: its latency) plus a part per ticket (reading it, Extended's
    close time, dynamic fields), and its answer has some bytes per ticket. The fixed part
    is the quickest call seen (SessionCreate and TicketSearch answers carry no tickets); the
    part per ticket is what TicketGet calls took beyond it, divided by their tickets. The
    ideal batch is the largest whose call stays within :data:`TARGET_CALL_SECONDS` (and a
    quarter of ``otrs.read_timeout``) and whose answer within :data:`TARGET_CALL_BYTES`
    (memory stays flat however big the month), never above :data:`MAX_BATCH`.

    The size starts at ``otrs.batch_size``; it shrinks at once to the ideal when calls are
    too slow or too big, and grows at most twofold per step (a wrong estimate costs one slow
    call, not a timeout) and only when the calls saved on the tickets still to fetch save at
    least :data:`MIN_GAIN_SECONDS` of fixed costs: a small month keeps the configured size.
    """

    def __init__(self, start: int, parallel: int = 1, read_timeout: float = 30.0) -> None:
        self.size = max(1, min(start, MAX_BATCH))
        self.parallel = max(1, parallel)
        self.target_seconds = min(TARGET_CALL_SECONDS, read_timeout / 4)
        self.fixed: float | None = None
        self.calls = 0
        self.tickets = 0
        self.seconds = 0.0
        self.bytes = 0
        self.sizes: list[int] = []

    def fixed_cost(self, seconds: float) -> None:
        """A call's duration: the fixed part is at most the quickest call."""
        self.fixed = seconds if self.fixed is None else min(self.fixed, seconds)

    def observe(self, tickets: int, seconds: float, size: int) -> None:
        """One TicketGet call of ``tickets`` tickets took ``seconds`` and answered ``size`` bytes."""
        self.fixed_cost(seconds)
        self.calls += 1
        self.tickets += tickets
        self.seconds += seconds
        self.bytes += size

    def ideal(self) -> int:
        if not self.tickets:
            return self.size
        fixed = self.fixed or 0.0
        per_second = max(0.0, self.seconds - self.calls * fixed) / self.tickets
        per_byte = self.bytes / self.tickets
        best = float(MAX_BATCH)
        if per_second > 0:
            best = min(best, max(0.0, self.target_seconds - fixed) / per_second)
        if per_byte > 0:
            best = min(best, TARGET_CALL_BYTES / per_byte)
        return max(1, int(best))

    def next_size(self, remaining: int) -> int:
        """The size of the next batch, ``remaining`` tickets still to fetch."""
        ideal = self.ideal()
        if ideal < self.size:
            self.size = ideal
        elif ideal > self.size and remaining > self.size:
            grown = min(ideal, 2 * self.size)
            saved = math.ceil(remaining / self.size) - math.ceil(remaining / grown)
            if saved * (self.fixed or 0.0) / self.parallel >= MIN_GAIN_SECONDS:
                self.size = grown
        size = min(self.size, remaining)
        if not self.sizes or self.sizes[-1] != self.size:
            self.sizes.append(self.size)
        return size


def _done(fn: Callable[..., _T], *args: Any) -> Future[_T]:
    """``fn(*args)`` run in this thread, as a finished future (parallel_requests = 1)."""
    future: Future[_T] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # handed to the caller through the future, as a pool would
        future.set_exception(exc)
    return future


@dataclass
class TicketStream:
    """Tickets yielded as OTRS answers (``tickets``); ``result`` gets searches, skipped and stale_marked
    while they are consumed."""

    tickets: Iterator[Ticket]
    result: TicketResult


def fetch_closed(settings: OtrsSettings, customer_number: str | None, period: Period,
                 stale_filter: Callable[[list[int]], list[int]] | None = None) -> TicketResult:
    """Billable closed tickets and the tickets left out with their reason, of one customer or of all."""
    with OtrsClient(settings) as client:
        return client.closed_tickets(customer_number, period, stale_filter)


def fetch_closed_tickets(settings: OtrsSettings, customer_number: str | None, period: Period) -> list[Ticket]:
    """Billable closed tickets of one customer (or of all with None) in the period: one client, closed after."""
    with OtrsClient(settings) as client:
        return client.closed_tickets(customer_number, period).tickets


class _SessionCache:
    """Session ids shared by the clients of one process (the endpoint serves many clicks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._ids: dict[tuple[str, str, int], str] = {}

    def get(self, key: tuple[str, str, int]) -> str | None:
        with self._lock:
            return self._ids.get(key)

    def put(self, key: tuple[str, str, int], session_id: str | None) -> None:
        with self._lock:
            if session_id is None:
                self._ids.pop(key, None)
            else:
                self._ids[key] = session_id

    def renew(self, key: tuple[str, str, int], stale: str | None, login: Callable[[], str]) -> str:
        """A session id other than ``stale``: one another thread just created, else a new login.

        Threads whose calls fail on the same expired session wait here for one SessionCreate.
        """
        with self._login_lock:
            current = self.get(key)
            if current is not None and current != stale:
                return current
            return login()


SESSIONS = _SessionCache()


class OtrsClient:
    """One conversation with the helpdesk; cheap to create, call :meth:`close` when done."""

    def __init__(self, settings: OtrsSettings, retries: int = 2, backoff: float = 0.5,
                 http: requests.Session | None = None) -> None:
        if not settings.user:
            raise ConfigError("no OTRS agent login configured; run kivi-otrs config set otrs.user AGENT")
        if settings.time_unit not in MINUTES_PER_UNIT:
            raise ConfigError(f"otrs.time_unit {settings.time_unit!r} is not minutes or hours")
        self.settings = settings
        self.retries = retries
        self.backoff = backoff
        self.http = http or requests.Session()
        self.http.headers.update(HEADERS)
        self.requests_made = 0
        self._answered = False  # has OTRS answered this client yet (tells "went away" from "wrong web service")
        self.calls: dict[str, int] = {}
        self.fastest: float | None = None  # seconds of the quickest call so far (BatchSizer's fixed cost)
        self.batch_sizes: list[int] = []  # TicketGet sizes of the last closed_tickets, for reports and benches
        self._count_lock = threading.Lock()
        self._local = threading.local()
        self._thread_http: list[requests.Session] = []
        self._pool: ThreadPoolExecutor | None = None
        parts = urlsplit(settings.endpoint)
        self._where = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self._cache_key = (settings.endpoint, settings.user, hash(settings.password))

    def __repr__(self) -> str:
        return f"OtrsClient({self._where!r}, user={self.settings.user!r})"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for session in self._thread_http:
            session.close()
        self._thread_http.clear()
        self.http.close()

    # -- parallel requests ---------------------------------------------------------------------

    @property
    def parallel(self) -> int:
        return max(1, self.settings.parallel_requests)

    def _start_thread(self) -> None:
        """Worker threads get their own requests.Session (a Session is not meant to be shared)."""
        session = requests.Session()
        session.headers.update(HEADERS)
        self._local.http = session
        with self._count_lock:
            self._thread_http.append(session)

    def _submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """``fn(*args)`` on one of ``parallel_requests`` worker threads, or here when that is 1."""
        if self.parallel == 1:
            return _done(fn, *args)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, "kivi-otrs-otrs", initializer=self._start_thread)
        return self._pool.submit(fn, *args)

    def __enter__(self) -> OtrsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _send(self, operation: str, body: dict[str, Any], ticket_id: int | None = None) -> dict[str, Any]:
        """One HTTP exchange; maps every failure to a one-line HelpdeskError without secrets."""
        method, route = ROUTES[operation]
        url = self.settings.endpoint + route.format(ticket_id=ticket_id)
        with self._count_lock:
            self.requests_made += 1
            self.calls[operation] = self.calls.get(operation, 0) + 1
        http: requests.Session = getattr(self._local, "http", None) or self.http
        started = time.perf_counter()
        try:
            response = http.request(
                method, url, data=json.dumps(body), headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=(self.settings.connect_timeout, self.settings.read_timeout), verify=self.settings.verify_tls,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError:
            raise HelpdeskUnavailable(f"TLS verification of {self._where} failed ({operation}); fix the certificate "
                                      "or, for a test system only, kivi-otrs config set otrs.verify_tls false") from None
        except requests.exceptions.ConnectTimeout:
            raise HelpdeskUnavailable(f"OTRS at {self._where} did not accept a connection within "
                                      f"{self.settings.connect_timeout:g} s ({operation})") from None
        except requests.exceptions.Timeout:
            raise HelpdeskUnavailable(f"OTRS at {self._where} did not answer {operation} within "
                                      f"{self.settings.read_timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            detail = repr(exc)
            if ("RemoteDisconnected" in detail or "Connection aborted" in detail) and self._answered:
                raise HelpdeskUnavailable(  # the web service answered before: OTRS went away meanwhile
                    f"OTRS at {self._where} stopped answering ({operation}: connection closed); try again when "
                    "the helpdesk is back") from None
            if "RemoteDisconnected" in detail or "Connection aborted" in detail:
                raise HelpdeskUnavailable(
                    f"OTRS at {self._where} closed the connection without answering {operation}; check the web "
                    f"service name (otrs.webservice = {self.settings.webservice!r}) and the base URL") from None
            raise HelpdeskUnavailable(f"OTRS not reachable at {self._where} ({operation}): connection failed") from None
        except requests.exceptions.RequestException as exc:
            raise HelpdeskUnavailable(f"request to OTRS at {self._where} failed ({operation}): "
                                      f"{type(exc).__name__}") from None
        seconds = time.perf_counter() - started
        self._answered = True
        self._local.last = (seconds, len(response.content))
        with self._count_lock:
            self.fastest = seconds if self.fastest is None else min(self.fastest, seconds)
        return self._decode(operation, response)

    def _decode(self, operation: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        ctype = response.headers.get("Content-Type", "")
        if status in (502, 503, 504):
            raise HelpdeskUnavailable(f"OTRS at {self._where} answered HTTP {status} to {operation} (not available)")
        if status == 500 and not ctype.startswith("application/json"):
            text = clean_text(response.text)
            hint = ""
            if "determine Operation" in text:
                hint = "; the web service has no such route: import the YAML of kivi-otrs otrs-webservice"
            elif "decoding request content" in text:
                hint = "; OTRS could not read the request"
            raise HelpdeskError(f"OTRS answered HTTP 500 to {operation}: {text or '(empty)'}{hint}")
        if status in (301, 302, 303, 307, 308):
            raise HelpdeskError(f"OTRS redirected {operation} (HTTP {status}); check otrs.base_url "
                                f"(http vs https, /otrs/ vs /znuny/ vs /otobo/)")
        if status != 200:
            raise HelpdeskError(f"OTRS at {self._where} answered HTTP {status} to {operation}; check otrs.base_url")
        if not response.content:
            raise HelpdeskUnavailable(f"OTRS answered {operation} with an empty reply")
        try:
            data = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise HelpdeskError(f"OTRS answered {operation} with something that is not JSON "
                                f"({clean_text(ctype, 60) or 'no content type'}, {len(response.content)} bytes)") from None
        if not isinstance(data, dict):
            raise HelpdeskError(f"OTRS answered {operation} with JSON that is not an object")
        error = data.get("Error")
        if error is not None:
            code = clean_text(error.get("ErrorCode", "") if isinstance(error, dict) else "", 80) or "unknown"
            message = clean_text(error.get("ErrorMessage", "") if isinstance(error, dict) else error)
            cls = HelpdeskAuthError if code.endswith(".AuthFail") else HelpdeskError
            raise cls(f"OTRS refused {operation}: {code}: {message}", error_code=code)
        return data

    def _attempts(self, operation: str, body: dict[str, Any], ticket_id: int | None) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            try:
                return self._send(operation, body, ticket_id)
            except HelpdeskUnavailable:
                if attempt == self.retries:
                    raise
                pause = self.backoff * (2 ** attempt)
                log.warning("OTRS %s failed, retrying in %.1f s", operation, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")

    def login(self) -> str:
        """SessionCreate; returns the new session id (kept for the following calls)."""
        if not self.settings.password:
            raise ConfigError("no OTRS agent password: set otrs.password (kivi-otrs config set otrs.password "
                              "--from-env VAR) or the environment variable KIVI_OTRS_OTRS_PASSWORD")
        data = self._attempts("SessionCreate", {"UserLogin": self.settings.user, "Password": self.settings.password},
                              None)
        session_id = data.get("SessionID")
        if not isinstance(session_id, str) or not session_id:
            raise HelpdeskError("OTRS answered SessionCreate without a SessionID")
        SESSIONS.put(self._cache_key, session_id)
        return session_id

    def call(self, operation: str, body: dict[str, Any], ticket_id: int | None = None) -> dict[str, Any]:
        """An authenticated operation: reuses the session, logs in again once if it expired."""
        session_id = SESSIONS.get(self._cache_key)
        fresh = session_id is None
        if session_id is None:
            session_id = SESSIONS.renew(self._cache_key, None, self._login_or_explain)
        try:
            return self._attempts(operation, {**body, "SessionID": session_id}, ticket_id)
        except HelpdeskAuthError:
            if fresh:
                SESSIONS.put(self._cache_key, None)
                raise HelpdeskAuthError(f"OTRS refused {operation} for a brand-new session of agent "
                                        f"{self.settings.user!r}; the agent lacks permission", f"{operation}.AuthFail") from None
            log.info("OTRS session expired; logging in again")
            session_id = SESSIONS.renew(self._cache_key, session_id, self._login_or_explain)
            return self._attempts(operation, {**body, "SessionID": session_id}, ticket_id)

    def _login_or_explain(self) -> str:
        try:
            return self.login()
        except HelpdeskAuthError as exc:
            raise HelpdeskAuthError(f"OTRS rejected the agent login {self.settings.user!r} ({exc.error_code}); "
                                    "check otrs.user and otrs.password (or KIVI_OTRS_OTRS_PASSWORD)",
                                    exc.error_code) from None

    # -- operations ---------------------------------------------------------------------------

    def search(self, criteria: dict[str, Any]) -> list[int]:
        """TicketSearch; ids as ints (OTRS sends strings, ``{}`` when nothing matched)."""
        data = self.call("TicketSearch", criteria)
        raw = data.get("TicketID", [])
        if isinstance(raw, (str, int)):
            raw = [raw]
        if not isinstance(raw, list):
            raise HelpdeskError("OTRS answered TicketSearch with a TicketID that is not a list")
        try:
            return [int(str(item)) for item in raw]
        except ValueError:
            raise HelpdeskError("OTRS answered TicketSearch with a ticket id that is not a number") from None

    def get(self, ticket_ids: list[int], extended: bool = True, dynamic_fields: bool = True) -> list[dict[str, Any]]:
        """TicketGet for one batch (fails as a whole if one ticket is not accessible)."""
        body: dict[str, Any] = {"TicketID": [str(i) for i in ticket_ids]}
        if extended:
            body["Extended"] = 1
        if dynamic_fields:
            body["DynamicFields"] = 1
        data = self.call("TicketGet", body)
        tickets = data.get("Ticket", [])
        if isinstance(tickets, dict):
            tickets = [tickets]
        if not isinstance(tickets, list) or not all(isinstance(t, dict) for t in tickets):
            raise HelpdeskError("OTRS answered TicketGet without a Ticket list")
        return tickets

    def _get_measured(self, ticket_ids: list[int]) -> tuple[list[dict[str, Any]], float, int]:
        """One TicketGet batch with the seconds and answer bytes of its (last) HTTP exchange."""
        tickets = self.get(ticket_ids)
        seconds, size = self._local.last
        return tickets, seconds, size

    def iter_batches(self, ticket_ids: Iterable[int], skipped: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Batched TicketGet, ``parallel_requests`` calls at a time; yields each answer as it arrives.

        Batch sizes come from :class:`BatchSizer`. A batch denied as a whole is bisected so
        only the denied tickets are left out (and listed in ``skipped``).
        """
        todo = sorted(set(ticket_ids))
        sizer = BatchSizer(self.settings.batch_size, self.parallel, self.settings.read_timeout)
        self.batch_sizes = sizer.sizes
        position = 0
        halves: list[list[int]] = []
        running: dict[Future[tuple[list[dict[str, Any]], float, int]], list[int]] = {}
        try:
            while True:
                while len(running) < self.parallel and (halves or position < len(todo)):
                    if halves:
                        batch = halves.pop(0)
                    else:
                        if self.fastest is not None:
                            sizer.fixed_cost(self.fastest)
                        size = sizer.next_size(len(todo) - position)
                        batch, position = todo[position:position + size], position + size
                    running[self._submit(self._get_measured, batch)] = batch
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: running[f][0]):
                    batch = running.pop(future)
                    try:
                        tickets, seconds, size = future.result()
                    except HelpdeskError as exc:
                        if exc.error_code != "TicketGet.AccessDenied":
                            raise
                        if len(batch) == 1:
                            skipped.append({"ticket_id": batch[0], "ticket_number": "", "title": "",
                                            "reason": "OTRS denies the agent access to this ticket "
                                                      "(TicketGet.AccessDenied)"})
                        else:
                            middle = len(batch) // 2
                            halves[:0] = [batch[:middle], batch[middle:]]
                        continue
                    sizer.observe(len(batch), seconds, size)
                    yield tickets
        finally:
            for future in running:
                future.cancel()

    def get_many(self, ticket_ids: Iterable[int], skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Batched TicketGet (see :meth:`iter_batches`), all answers in one list."""
        return [ticket for batch in self.iter_batches(ticket_ids, skipped) for ticket in batch]

    def search_period(self, criteria: dict[str, Any], start: datetime, last: datetime) -> tuple[list[int], int]:
        """Ids of tickets closed in [start, last] (OTRS time zone, inclusive), splitting at the search limit.

        A window that still hits the limit is halved; a single second that does (a bulk close) is split
        further by the tickets' create time, so no admin has to raise ``otrs.search_limit``. The parts
        are searched ``parallel_requests`` at a time.
        """
        limit = self.settings.search_limit
        ids: set[int] = set()
        searches = 0
        density = _Density()
        parts: list[tuple[str, datetime, datetime, datetime, datetime]] = [("close", start, last, start, last)]
        running: dict[Future[list[int]], tuple[str, datetime, datetime, datetime, datetime]] = {}
        try:
            while parts or running:
                # Until one window answered below the limit nothing is known about the density: descend
                # one search at a time instead of sending windows that will all come back full.
                while parts and len(running) < (self.parallel if density.known else 1):
                    part = parts.pop()
                    kind, low, high, close_low, close_high = part
                    if kind == "close" and density.known:
                        pieces = density.parts(_seconds(low, high), limit)
                        if pieces > 1:  # would likely hit the limit: split before searching
                            parts.extend(("close", a, b, a, b) for a, b in _split(low, high, pieces))
                            continue
                    window = {"TicketCloseTimeNewerDate": close_low.strftime(OTRS_FORMAT),
                              "TicketCloseTimeOlderDate": close_high.strftime(OTRS_FORMAT), "Limit": limit}
                    if kind == "create":
                        window.update({"TicketCreateTimeNewerDate": low.strftime(OTRS_FORMAT),
                                       "TicketCreateTimeOlderDate": high.strftime(OTRS_FORMAT)})
                    running[self._submit(self.search, {**criteria, **window})] = part
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    kind, low, high, close_low, close_high = running.pop(future)
                    found = future.result()
                    searches += 1
                    if len(found) < limit:
                        ids.update(found)
                        if kind == "close":
                            density.observe(len(found), _seconds(low, high))
                        continue
                    if high <= low:
                        if kind == "close":  # one second of closes: split it by create time
                            parts.append(("create", CREATE_TIME_FLOOR, high, low, high))
                            continue
                        raise HelpdeskError(f"more than {limit} tickets created and closed within the same second "
                                            f"({low:%Y-%m-%d %H:%M:%S}); raise otrs.search_limit")
                    if kind == "close":
                        # Into as many parts as the closes seen so far say fill about 70 % of the limit
                        # (halves while nothing is known): every full answer is a wasted search, and a
                        # month halved down to the limit wastes as many as it keeps.
                        pieces = density.parts(_seconds(low, high), limit, full=True)
                        parts.extend(("close", a, b, a, b) for a, b in _split(low, high, pieces))
                    else:
                        middle = (low + (high - low) / 2).replace(microsecond=0)
                        parts.append(("create", low, middle, close_low, close_high))
                        parts.append(("create", middle + timedelta(seconds=1), high, close_low, close_high))
        finally:
            for future in running:
                future.cancel()
        return sorted(ids), searches

    def closed_tickets(self, customer_number: str | None, period: Period,
                       stale_filter: Callable[[list[int]], list[int]] | None = None) -> TicketResult:
        """All of :meth:`iter_closed_tickets` in one list, ordered by close time."""
        result = TicketResult()
        result.tickets = list(self.iter_closed_tickets(customer_number, period, stale_filter, result))
        result.tickets.sort(key=lambda t: (t.closed or period.start, t.ticket_id))
        log.info("OTRS: %d tickets, %d skipped, %d requests (%d searches), TicketGet batch sizes %s",
                 len(result.tickets), len(result.skipped), self.requests_made, result.searches,
                 "/".join(map(str, self.batch_sizes)) or "-")
        return result

    def iter_closed_tickets(self, customer_number: str | None, period: Period,
                            stale_filter: Callable[[list[int]], list[int]] | None,
                            result: TicketResult) -> Iterator[Ticket]:
        """Tickets in a billable state whose last close falls into the period (one customer or all).

        With write-back exclusion on, tickets whose dynamic field is set are left out of the search.
        ``stale_filter`` (given the ids whose field is set, returns those kivitendo bills nowhere: an
        order deleted while write-back was off) brings such tickets back, so a stale field never hides
        a billable ticket; they are listed in ``stale_marked``.
        """
        settings = self.settings
        criteria: dict[str, Any] = {"States": list(settings.states)}
        if customer_number is not None:
            criteria["CustomerID"] = customer_search_value(customer_number)
        if settings.exclude_field:
            criteria[f"DynamicField_{settings.exclude_field}"] = {"Empty": 1}
        low_text, high_text = otrs_bounds(period, settings.otrs_timezone)
        start = datetime.strptime(low_text, OTRS_FORMAT)
        last = datetime.strptime(high_text, OTRS_FORMAT)
        ids, result.searches = self.search_period(criteria, start, last)
        if settings.exclude_field and stale_filter is not None:
            marked, searches = self.search_period(
                {**criteria, f"DynamicField_{settings.exclude_field}": {"Empty": 0}}, start, last)
            result.searches += searches
            result.stale_marked = sorted(set(stale_filter(marked)) - set(ids))
            ids = sorted(set(ids) | set(result.stale_marked))
        period_start = period.start
        period_end = period.end
        shared: dict[str, str] = {}  # one str object per distinct state, queue, customer ... (memory)
        for raw in (raw for batch in self.iter_batches(ids, result.skipped) for raw in batch):
            ticket, reason = self._ticket(raw, shared)
            if ticket is None:
                result.skipped.append({**_info(raw), "reason": reason})
                continue
            if customer_number is not None and ticket.customer_id != customer_number:
                if ticket.customer_id.casefold() == customer_number.casefold():
                    result.skipped.append({**_info(raw), "customer_id": ticket.customer_id,
                                           "reason_code": "case_only",
                                           "reason": f"CustomerID {ticket.customer_id!r} differs "
                                                     f"from {customer_number!r} in case only; correct it in OTRS"})
                continue  # another customer's ticket matched the wildcard search
            if ticket.state not in settings.states:
                continue
            if ticket.closed is not None and not (period_start <= ticket.closed < period_end):
                result.skipped.append({**_info(raw), "reason": f"last closed {ticket.closed:%Y-%m-%d %H:%M %Z}, "
                                                              "billed in that period"})
                continue
            yield ticket

    def _ticket(self, raw: dict[str, Any], shared: dict[str, str] | None = None) -> tuple[Ticket | None, str]:
        try:
            ticket_id = int(str(raw["TicketID"]))
        except (KeyError, ValueError):
            return None, "OTRS sent a ticket without a usable TicketID"
        units = _decimal(raw.get("TimeUnit"))
        if not units.is_finite():
            return None, f"accounted time {clean_text(raw.get('TimeUnit'), 20)!r} is not a number"
        if units < 0:
            return None, f"accounted time {clean_text(raw.get('TimeUnit'), 20)} is negative; correct it in OTRS"
        if units > MAX_TIME_UNITS:
            return None, (f"accounted time {clean_text(raw.get('TimeUnit'), 20)} is implausible (more than "
                          f"{MAX_TIME_UNITS} units); correct it in OTRS")
        if not str(raw.get("CustomerID") or "").strip():
            return None, "ticket has no CustomerID; assign the customer in OTRS"
        closed = None
        closed_raw = raw.get("Closed")
        if closed_raw:
            try:
                closed = parse_otrs_time(str(closed_raw), self.settings.otrs_timezone)
            except ValueError:
                return None, f"close time {clean_text(closed_raw, 30)!r} is not YYYY-MM-DD HH:MM:SS"
        fields: dict[str, str] = {}
        for item in raw.get("DynamicField") or []:
            if isinstance(item, dict) and item.get("Name"):
                value = item.get("Value")
                if isinstance(value, list):
                    value = ",".join(map(str, value))
                fields[str(item["Name"])] = "" if value is None else str(value)
        factor = MINUTES_PER_UNIT[self.settings.time_unit]
        if factor == 1 and units.as_tuple().exponent == 0:
            minutes = units  # the same value: one object
        else:
            minutes = units * factor
            if minutes == minutes.to_integral():
                minutes = minutes.quantize(Decimal(1))
        one = (lambda text: shared.setdefault(text, text)) if shared is not None else (lambda text: text)
        return Ticket(
            ticket_id=ticket_id, number=_text(raw.get("TicketNumber", "")), title=_text(raw.get("Title", "")),
            state=one(str(raw.get("State", ""))), state_type=one(str(raw.get("StateType", ""))),
            queue=one(str(raw.get("Queue", ""))), service=one(str(raw.get("Service") or "")),
            type=one(str(raw.get("Type") or "")), customer_id=one(str(raw.get("CustomerID") or "")),
            customer_user=one(str(raw.get("CustomerUserID") or "")),
            closed=closed, time_units=units, minutes=minutes,
            dynamic_fields=fields or _NO_FIELDS,  # one shared empty dict for the many tickets without any
        ), ""

    def update_ticket(self, ticket_id: int, dynamic_fields: dict[str, str]) -> None:
        """TicketUpdate setting dynamic fields (an empty value clears the field)."""
        body = {"TicketID": str(ticket_id),
                "DynamicField": [{"Name": name, "Value": value} for name, value in dynamic_fields.items()]}
        data = self.call("TicketUpdate", body, ticket_id=ticket_id)
        if str(data.get("TicketID", "")) != str(ticket_id):
            raise HelpdeskError(f"OTRS answered TicketUpdate of ticket {ticket_id} without confirming the ticket")

    def state_hits(self) -> dict[str, bool]:
        """Each billable state searched alone (Limit 1): does any ticket the agent can see have it?

        One name unknown to OTRS makes TicketSearch return nothing for the whole list (Znuny
        looks every name up and gives up on the first miss), so only single searches tell which.
        """
        return {state: bool(self.search({"States": [state], "Limit": 1})) for state in self.settings.states}

    def can_write(self, ticket_id: int) -> bool:
        """TicketUpdate without any change: Znuny checks ``rw`` on the ticket's queue, then changes nothing.

        Znuny 7.1.7's TicketUpdate answers AccessDenied before looking at the data when the agent lacks
        ``rw``; with neither Ticket, Article nor DynamicField it updates nothing and writes no history.
        Only a missing ``rw`` leaves an error in OTRS's log.
        """
        try:
            self.call("TicketUpdate", {"TicketID": str(ticket_id)}, ticket_id=ticket_id)
        except HelpdeskError as exc:
            if exc.error_code == "TicketUpdate.AccessDenied":
                return False
            raise
        return True

    def check(self, writeback_field: str | None = None) -> list[tuple[str, bool, str]]:
        """Connection, credentials and every operation the bridge needs; (what, ok, detail) rows."""
        rows: list[tuple[str, bool, str]] = []
        try:
            self.login()
            rows.append(("SessionCreate (POST /Session): connection and agent login", True, self._where))
        except HelpdeskError as exc:
            return [("SessionCreate (POST /Session): connection and agent login", False, str(exc))]
        sample: list[int] = []
        states = ", ".join(self.settings.states)
        try:
            sample = self.search({"States": list(self.settings.states), "Limit": 1})
            hits = self.state_hits() if len(self.settings.states) > 1 else {}
            missing = [state for state, hit in hits.items() if not hit]
            if not sample and len(missing) < len(hits):
                rows.append(("TicketSearch (POST /TicketSearch)", False,
                             f"states {states}: the list finds nothing although {', '.join(sorted(set(hits) - set(missing)))} "
                             f"alone finds tickets; OTRS knows no state {', '.join(map(repr, missing))} (names are "
                             "case-sensitive, one unknown name empties the whole search): fix billing.states"))
            elif missing and sample:
                rows.append(("TicketSearch (POST /TicketSearch)", True,
                             f"states {states}: no ticket at all in {', '.join(map(repr, missing))}; if OTRS has such "
                             "tickets the name is misspelled or wrongly cased"))
            elif not sample:
                rows.append(("TicketSearch (POST /TicketSearch)", True,
                             f"states {states}: no ticket yet (or a state name unknown to OTRS: names are "
                             "case-sensitive; check billing.states once tickets are closed)"))
            else:
                rows.append(("TicketSearch (POST /TicketSearch)", True, f"states {states}: a ticket found"))
        except HelpdeskError as exc:
            rows.append(("TicketSearch (POST /TicketSearch)", False, str(exc)))
        try:
            probe = sample or self.search({"Limit": 1})  # any ticket the agent sees: no error in OTRS's log
            if probe:
                got = self.get(probe)
                has_closed = bool(got) and ("Closed" in got[0] or got[0].get("StateType") != "closed")
                rows.append(("TicketGet (POST /TicketList, Extended)", has_closed,
                             "close time present" if has_closed else "no Closed field: TicketGet lacks Extended=1 support"))
            else:
                rows.append(("TicketGet (POST /TicketList)", True, "not checked: the agent sees no ticket at all"))
        except HelpdeskError as exc:
            rows.append(("TicketGet (POST /TicketList)", False, str(exc)))
        what = "TicketUpdate (PATCH /Ticket/:TicketID)"
        if not writeback_field:
            rows.append((what, True, "not checked: only needed for write-back (writeback.enabled is off)"))
        elif not sample:
            rows.append((what, True, "not checked yet: no ticket in a billable state to test rw on"))
        else:
            try:
                if self.can_write(sample[0]):
                    rows.append((what, True, f"rw on ticket {sample[0]} (checked without changing it)"))
                else:
                    rows.append((what, False, f"agent {self.settings.user!r} may read but not change ticket {sample[0]} "
                                              "(TicketUpdate.AccessDenied): write-back needs rw on every billed queue"))
            except HelpdeskError as exc:
                rows.append((what, False, f"{exc} (needed for write-back)"))
        return rows


class _Density:
    """Closes per second, from the search windows that answered below the limit."""

    FILL = 0.7  # aim below the limit: closes are not spread evenly over a month
    MAX_PARTS = 256

    def __init__(self) -> None:
        self.tickets = 0
        self.seconds = 0

    @property
    def known(self) -> bool:
        return self.seconds > 0

    def observe(self, tickets: int, seconds: int) -> None:
        self.tickets += tickets
        self.seconds += seconds

    def parts(self, seconds: int, limit: int, full: bool = False) -> int:
        """Into how many windows of expected ~70 % of the limit ``seconds`` fall (1: search it whole).

        The average is global; a window that came back ``full`` holds at least ``limit`` (a burst
        somewhere says nothing about the quiet rest of the month, so that bound stays local).
        """
        if not self.known:
            return 2 if full else 1
        expected = seconds * self.tickets / self.seconds
        if full:
            expected = max(expected, limit)
        return max(2 if full else 1, min(self.MAX_PARTS, seconds, math.ceil(expected / (self.FILL * limit))))


def _seconds(low: datetime, high: datetime) -> int:
    return int((high - low).total_seconds()) + 1


def _split(low: datetime, high: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """[low, high] (whole seconds, inclusive) in ``parts`` adjacent windows of nearly equal length."""
    total = _seconds(low, high)
    bounds = [low + timedelta(seconds=total * i // parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - timedelta(seconds=1)) for i in range(parts) if bounds[i + 1] > bounds[i]]
