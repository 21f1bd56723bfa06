"""The local HTTP endpoint behind kivitendo's order-screen button (``kivi-otrs serve``).

A small WSGI application served by waitress (house style 16): the HTTP plumbing
(request parsing, chunked bodies, timeouts, connection limit, listen backlog) is
waitress'; this module keeps the application logic: authentication, strict input
validation and the one-line JSON errors.

Bound to loopback addresses only (127.0.0.1, ::1, localhost); every request needs
``Authorization: Bearer <api.token>``. kivitendo's controller
(kivitendo/SL/Controller/KiviOtrs.pm) calls it server-side, so the browser never sees
the token.

    POST /positions   {"order_id": 1, "customer_id": 9001, "period": "previous-month", ...}
    GET  /health      {"status": "ok"}

Several kivitendo clients (Mandanten, one database each) can be served by one
endpoint: each client is a DSN whose name is its database name; a request names its
client in the field ``client``. A request is only ever run against the DSN of the client
it names, so nothing of one client is read or written for another.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from pathlib import Path
from typing import Any

import psycopg
from waitress import wasyncore
from waitress.server import create_server

from . import config, db
from .errors import (
    BillingError,
    ConfigError,
    DatabaseError,
    HelpdeskError,
    KiviOtrsError,
    RequestError,
    TemplateError,
)
from .render import NUMBER_FORMATS
from .service import Request, TicketFetcher, make_positions

log = logging.getLogger("kivi_otrs.endpoint")
access_log = logging.getLogger("kivi_otrs.endpoint.access")

MAX_BODY = 64 * 1024
MAX_ID = 2**31 - 1
STATUS = [(HelpdeskError, 502), (DatabaseError, 503), (ConfigError, 500), (TemplateError, 500), (BillingError, 422)]
FIELDS = ("client", "order_id", "customer_id", "customer_number", "period", "from", "to", "periodic",
          "number_format", "language", "dry_run")
CLIENT_FIELDS = ("dbname", "id", "name", "dbhost", "dbport")
LANGUAGES = ("de", "en")
_DIGITS = re.compile(r"[0-9]{1,10}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PERIOD = re.compile(r"previous-month|current-month|last-[1-9][0-9]{0,3}-days")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
_CLIENT_NAME = re.compile(r"[^\s=/:@?#]{1,63}")

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Client:
    """One kivitendo client (Mandant) the endpoint serves: its database name, DSN and token."""

    name: str
    dsn: str
    token: str


@dataclass(frozen=True)
class Tuning:
    """waitress settings; the defaults suit one kivitendo installation on the same host."""

    threads: int = 8
    backlog: int = 1024
    connection_limit: int = 256
    channel_timeout: int = 15
    cleanup_interval: int = 5


def load_client(dsn: str, name: str | None = None, token: str | None = None) -> Client:
    """Read the client's database name and token; ``name`` (if given) must be that database name."""
    with db.connect(dsn) as conn:
        if token is None:
            token = str(config.effective(conn)["api.token"])
        row = conn.execute("SELECT current_database()").fetchone()
    dbname = str(row[0]) if row else ""
    if name is not None and name != dbname:
        raise ConfigError(f"client {name!r} points at database {dbname!r} ({db.describe(dsn)}); "
                          "name each client after its kivitendo database")
    if len(token) < 16:
        raise ConfigError(f"the endpoint needs a token of at least 16 characters for client {dbname!r}: "
                          "kivi-otrs config set api.token --from-env VAR (or set KIVI_OTRS_API_TOKEN)")
    return Client(dbname, dsn, token)


def parse_client_spec(spec: str) -> tuple[str, str]:
    """``NAME=DSN`` (``--client``, a line of ``--clients-file``) as (name, DSN)."""
    name, sep, dsn = spec.partition("=")
    name, dsn = name.strip(), dsn.strip()
    if not sep or not dsn or not _CLIENT_NAME.fullmatch(name):
        raise ConfigError(f"client {db.redact(spec)!r} is not NAME=DSN; e.g. firma=postgresql://kivi_otrs@localhost/firma")
    return name, db.resolve_dsn(dsn)


def read_clients_file(path: Path) -> list[tuple[str, str]]:
    """Lines ``NAME = DSN`` (``#`` starts a comment) of a clients file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the clients file {path}: {exc}") from None
    specs = [line.strip() for line in text.splitlines()]
    return [parse_client_spec(line) for line in specs if line and not line.startswith("#")]


def _opt_id(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise RequestError(f"{key} must be a whole number from 1 to {MAX_ID} (digits 0-9 only)")
    return value


def _opt_text(body: dict[str, Any], key: str, limit: int = 100) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or _CONTROL.search(value) or len(value) > limit or not value.strip():
        raise RequestError(f"{key} must be a text of at most {limit} characters without control characters")
    return value


def _opt_day(body: dict[str, Any], key: str) -> date | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str) or not _DAY.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise RequestError(f"{key} must be a date like 2026-10-31") from None


def _opt_flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{key} must be true or false")
    return value


def parse_request(body: dict[str, Any], user: str) -> Request:
    """The request fields, strictly: ASCII digits, real dates, from <= to, a known number format."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}")
    period = _opt_text(body, "period", 20)
    if period is not None and not _PERIOD.fullmatch(period):
        raise RequestError("period must be previous-month, current-month or last-N-days (N from 1 to 9999)")
    date_from, date_to = _opt_day(body, "from"), _opt_day(body, "to")
    if (date_from is None) != (date_to is None):
        raise RequestError("give both from and to (inclusive dates), or a period")
    if date_from and date_to and date_from > date_to:
        raise RequestError(f"from {date_from} is after to {date_to}")
    language = _opt_text(body, "language", 10)
    if language is not None and language not in LANGUAGES:
        raise RequestError(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")
    number_format = _opt_text(body, "number_format", 20)
    if number_format is not None and number_format not in NUMBER_FORMATS:
        raise RequestError(f"unknown number_format {number_format!r}; use one of {', '.join(NUMBER_FORMATS)}")
    request = Request(
        order_id=_opt_id(body, "order_id"), customer_db_id=_opt_id(body, "customer_id"),
        customer_number=_opt_text(body, "customer_number"), period=period, date_from=date_from, date_to=date_to,
        periodic=_opt_flag(body, "periodic"), number_format=number_format, dry_run=_opt_flag(body, "dry_run"),
        user=_CONTROL.sub("", user)[:100] or "kivitendo", source="button",
    )
    if request.order_id is None and request.customer_db_id is None and request.customer_number is None:
        raise RequestError("choose a customer first (order_id, customer_id or customer_number is required)")
    return request


def _printable(text: str, limit: int = 200) -> str:
    return _UNPRINTABLE.sub("?", text[:limit])


class EndpointApp:
    """The WSGI application: routes, token, request validation, one-line JSON answers."""

    def __init__(self, clients: Iterable[Client], fetch: TicketFetcher | None = None) -> None:
        self.clients: dict[str, Client] = {}
        for client in clients:
            if client.name in self.clients:
                raise ConfigError(f"client {client.name!r} is configured twice; give each kivitendo database once")
            self.clients[client.name] = client
        if not self.clients:
            raise ConfigError("no kivitendo database to serve: pass --dsn, --client NAME=DSN or --clients-file")
        self.fetch = fetch

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        started = time.monotonic()
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        client = "-"
        try:
            status, payload, client = self._handle(environ, method, path)
        except RequestError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except KiviOtrsError as exc:
            status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
            payload = {"error": db.redact(str(exc))}
        except psycopg.OperationalError:
            status, payload = 503, {"error": "lost the connection to the kivitendo database; try again, "
                                             "check that PostgreSQL is running"}
        except Exception as exc:
            log.exception("unexpected error while serving %s %s", _printable(method, 10), _printable(path))
            status, payload = 500, {"error": f"unexpected {type(exc).__name__}; see the kivi-otrs serve log"}
        data = json.dumps(payload, ensure_ascii=False).encode()
        headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data))),
                   ("Cache-Control", "no-store")]
        if status == 405:
            headers.append(("Allow", "GET" if path == "/health" else "POST"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        # the path only: never the query string (a token someone put there) nor headers
        access_log.info('%s "%s %s" %d %.0fms client=%s', environ.get("REMOTE_ADDR", "-"), _printable(method, 10),
                        _printable(path), status, (time.monotonic() - started) * 1000, _printable(client, 64))
        yield data

    def _authorized_for(self, environ: dict[str, Any]) -> list[str]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        given = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        # compare with every client's token (no early exit), so timing tells nothing
        matches = [hmac.compare_digest(given.encode("utf-8", "replace"), c.token.encode()) for c in self.clients.values()]
        return [name for name, ok in zip(self.clients, matches, strict=True) if ok and given]

    def _handle(self, environ: dict[str, Any], method: str, path: str) -> tuple[int, dict[str, Any], str]:
        if path not in ("/positions", "/health"):
            raise RequestError("unknown path; use POST /positions or GET /health", 404)
        if environ.get("QUERY_STRING"):
            raise RequestError("query strings are not accepted; send the token in the Authorization header "
                               "and the fields as a JSON body")
        allowed = self._authorized_for(environ)
        if not allowed:
            raise RequestError("missing or wrong token", 401)
        if path == "/health":
            if method not in ("GET", "HEAD"):
                raise RequestError("use GET /health", 405)
            return 200, {"status": "ok"}, "-"
        if method != "POST":
            raise RequestError("use POST /positions with a JSON body", 405)
        body = self._json_body(environ)
        client = self._client(body, allowed)
        request = parse_request(body, environ.get("HTTP_X_KIVITENDO_USER", ""))
        plan, _period = make_positions(client.dsn, request, self.fetch)
        return 200, plan.as_dict(), client.name

    def _json_body(self, environ: dict[str, Any]) -> dict[str, Any]:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError("send the request body as JSON (Content-Type: application/json)", 415)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "0")
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
        if length > MAX_BODY:
            raise RequestError(f"request body too large (at most {MAX_BODY} bytes)", 413)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}", parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise RequestError("request body is not a JSON object (UTF-8)") from None
        if not isinstance(body, dict):
            raise RequestError("request body is not a JSON object (UTF-8)")
        return body

    def _client(self, body: dict[str, Any], allowed: list[str]) -> Client:
        name = body.get("client")
        if isinstance(name, dict):  # kivitendo's session client: {"id": 1, "dbname": "firma", "name": ...}
            unknown = sorted(set(name) - set(CLIENT_FIELDS))
            if unknown:
                raise RequestError(f"unknown field client.{unknown[0]}; allowed: {', '.join(CLIENT_FIELDS)}")
            name = name.get("dbname")
            if not isinstance(name, str) or not name:
                raise RequestError("client.dbname must be the kivitendo client's database name")
        if name is None or name == "":
            if len(self.clients) == 1:
                return next(iter(self.clients.values()))
            raise RequestError("name the kivitendo client (field client: its database name); "
                               "this endpoint serves several")
        if not isinstance(name, str):
            raise RequestError("client must be the kivitendo client's database name, or an object with dbname")
        if name not in self.clients:
            served = ", ".join(repr(n) for n in allowed)
            raise RequestError(f"unknown client {_printable(name, 64)!r}; this endpoint serves {served}")
        if name not in allowed:
            raise RequestError(f"the token is not valid for client {name!r}", 403)
        return self.clients[name]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def bind_loopback(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets for every address of ``host``; all must be loopback."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (1-65535)")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"cannot resolve --host {host!r} ({exc}); use 127.0.0.1, ::1 or localhost") from None
    addresses: list[tuple[int, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if family not in (socket.AF_INET, socket.AF_INET6) or (family, address) in addresses:
            continue
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise ConfigError(f"refusing to listen on {host} ({address}): the endpoint binds to loopback only "
                              "(127.0.0.1, ::1 or localhost)")
        addresses.append((family, address))
    if not addresses:
        raise ConfigError(f"--host {host!r} has no IPv4 or IPv6 address; use 127.0.0.1, ::1 or localhost")
    sockets: list[socket.socket] = []
    try:
        for kind, address in addresses:
            sock = socket.socket(kind, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if kind == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise ConfigError(f"cannot listen on {address} port {port} ({exc.strerror}); is another "
                                  "kivi-otrs serve running? choose another --port") from None
            port = sock.getsockname()[1]  # port 0: the others take the same free port
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class EndpointServer:
    """The endpoint on waitress: ``serve_forever()`` in the foreground, or ``start_background()`` for tests."""

    def __init__(self, clients: Iterable[Client], host: str = "127.0.0.1", port: int = 8765,
                 fetch: TicketFetcher | None = None, tuning: Tuning = Tuning()) -> None:
        self.app = EndpointApp(clients, fetch)
        sockets = bind_loopback(host, port)
        self._map: dict[int, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = create_server(
            self.app, map=self._map, sockets=sockets, threads=tuning.threads, backlog=tuning.backlog,
            connection_limit=tuning.connection_limit, channel_timeout=tuning.channel_timeout,
            cleanup_interval=tuning.cleanup_interval, max_request_body_size=4 * MAX_BODY, ident="kivi-otrs",
            expose_tracebacks=False, log_socket_errors=False, asyncore_use_poll=True,
            clear_untrusted_proxy_headers=True,
        )
        self.addresses = [(str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in sockets]

    @property
    def url(self) -> str:
        host, port = self.addresses[0]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def urls(self) -> list[str]:
        return [f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}" for h, p in self.addresses]

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or Ctrl-C in the caller)."""
        while not self._stop.is_set():
            wasyncore.loop(timeout=0.2, map=self._map, use_poll=True, count=1)

    def start_background(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="kivi-otrs-endpoint", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self) -> None:
        """Stop serving, finish the running requests, close every socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.server_close()

    def server_close(self) -> None:
        self._server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(self._map)
