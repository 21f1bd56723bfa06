"""The local HTTP endpoint behind kivitendo's order-screen button (``kivi-otrs serve``).

Bound to the loopback interface only; every request needs ``Authorization: Bearer
<api.token>``. kivitendo's controller (kivitendo/SL/Controller/KiviOtrs.pm) calls it
server-side, so the browser never sees the token.

    POST /positions   {"order_id": 1, "customer_id": 9001, "period": "previous-month", ...}
    GET  /health      {"status": "ok"}
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import config, db
from .errors import BillingError, ConfigError, DatabaseError, HelpdeskError, KiviOtrsError, TemplateError
from .service import Request, TicketFetcher, fetch_from_otrs, make_positions

log = logging.getLogger("kivi_otrs.endpoint")
MAX_BODY = 64 * 1024
STATUS = [(HelpdeskError, 502), (DatabaseError, 503), (ConfigError, 500), (TemplateError, 500), (BillingError, 422)]


def load_token(dsn: str) -> str:
    with db.connect(dsn) as conn:
        token = str(config.effective(conn)["api.token"])
    if len(token) < 16:
        raise ConfigError("the endpoint needs a token of at least 16 characters: "
                          "kivi-otrs config set api.token --from-env VAR (or set KIVI_OTRS_API_TOKEN)")
    return token


def _parse_request(body: dict[str, Any], user: str) -> Request:
    def opt_int(key: str) -> int | None:
        value = body.get(key)
        if value in (None, ""):
            return None
        if isinstance(value, bool) or not str(value).isdigit():
            raise BillingError(f"{key} must be a whole number")
        return int(value)

    def opt_date(key: str) -> date | None:
        value = body.get(key)
        if not value:
            return None
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise BillingError(f"{key} must be a date like 2026-10-31") from None

    request = Request(
        order_id=opt_int("order_id"), customer_db_id=opt_int("customer_id"),
        customer_number=str(body["customer_number"]) if body.get("customer_number") else None,
        period=str(body["period"]) if body.get("period") else None,
        date_from=opt_date("from"), date_to=opt_date("to"), periodic=bool(body.get("periodic")),
        number_format=str(body["number_format"]) if body.get("number_format") else None,
        dry_run=bool(body.get("dry_run")), user=user[:100], source="button",
    )
    if request.order_id is None and request.customer_db_id is None and request.customer_number is None:
        raise BillingError("choose a customer first (order_id or customer_id is required)")
    return request


class Handler(BaseHTTPRequestHandler):
    server: EndpointServer
    server_version = "kivi-otrs"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def do_GET(self) -> None:
        if self.path != "/health":
            self._send(404, {"error": "unknown path; use POST /positions"})
        elif not self._authorized():
            self._send(401, {"error": "missing or wrong token"})
        else:
            self._send(200, {"status": "ok"})

    def do_POST(self) -> None:
        if self.path != "/positions":
            self._send(404, {"error": "unknown path; use POST /positions"})
            return
        if not self._authorized():
            self._send(401, {"error": "missing or wrong token"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(413, {"error": "request body missing or too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self._send(400, {"error": "request body is not a JSON object"})
            return
        user = self.headers.get("X-Kivitendo-User", "") or "kivitendo"
        try:
            request = _parse_request(body, user)
            plan, _period = make_positions(self.server.dsn, request, self.server.fetch)
        except KiviOtrsError as exc:
            status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
            self._send(status, {"error": db.redact(str(exc))})
            return
        except Exception as exc:
            log.exception("unexpected error")
            self._send(500, {"error": f"unexpected {type(exc).__name__}; see the kivi-otrs serve log"})
            return
        self._send(200, plan.as_dict())


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dsn: str, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                 fetch: TicketFetcher = fetch_from_otrs) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigError(f"refusing to listen on {host}: the endpoint binds to loopback only (127.0.0.1 or ::1)")
        self.dsn = dsn
        self.token = token if token is not None else load_token(dsn)
        self.fetch = fetch
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread
