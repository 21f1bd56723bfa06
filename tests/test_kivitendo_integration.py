"""The kivitendo side of the order-screen button: browser JS and Perl controller.

Runs offline without a database or kivitendo: the JS runs under node with stubbed jQuery
and kivitendo functions; the controller runs under perl with stub kivitendo modules against a
local stand-in for ``kivi-otrs serve``. Installing into a real kivitendo tree is
tests/test_kivitendo_install.py.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import POSITION_FIELDS

ROOT = Path(__file__).resolve().parent.parent
KIVI = ROOT / "kivitendo"
CONTROLLER = KIVI / "SL" / "Controller" / "KiviOtrs.pm"
JS = KIVI / "public" / "js" / "kivi.KiviOtrs.js"
TEST_TOKEN = "test-token-0123456789abcdef"

# An answer of POST /positions as the endpoint sends it.
FIXTURE_ANSWER: dict[str, Any] = {
    "positions": [
        {
            "parts_id": 5,
            "qty_as_number": "0,50",
            "description": "Systemtechnik Stundensatz",
            "longdescription": "Nummer: 2026100110000011<br>Störung Drucker <!-- kivi-otrs:7f0c2a4e -->",
            "unit": "Std",
            "sellprice_as_number": "95,00",
            "recurring_billing_mode": "once",
        },
        {
            "parts_id": 7,
            "qty_as_number": "1,25",
            "description": "Support",
            "longdescription": "Nummer: 2026100110000022 <!-- kivi-otrs:9b1d3c5f -->",
            "unit": "Std",
        },
    ],
    "preview": {
        "new": [
            {"ticket_number": "2026100110000011", "title": "Störung Drucker", "minutes": "30"},
            {"ticket_number": "2026100110000022", "title": "VPN", "minutes": "75"},
        ],
        "billed": [
            {
                "ticket_number": "2026090110000033",
                "title": "Mail",
                "minutes": "15",
                "state": "billed",
                "ordnumber": "A-1",
                "where": "billed on order A-1",
            },
            {
                "ticket_number": "2026090110000055",
                "title": "Backup",
                "minutes": "45",
                "state": "reserved",
                "ordnumber": None,
                "reserved_until": "2026-11-03T13:05:00+00:00",
                "claimed_by": "bernd",
                "where": "reserved until 14:05 by bernd for an unsaved order",
            },
        ],
        "skipped": [
            {
                "ticket_number": "2026100110000044",
                "title": "<b>x</b>",
                "minutes": "0",
                "reason": "no accounted time",
                "reason_code": "no_time",
                "reason_args": {},
            }
        ],
    },
    "message": "2 new positions, 2 already billed or reserved, 1 skipped",
    "reservation_minutes": 120,
}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed on this machine")
    return path


# --------------------------------------------------------------------------- browser JS

NODE_HARNESS = r"""
const fs = require('fs');
const scenario = JSON.parse(process.argv[3]);
const calls = { ajax: [], add_multi_items: [], flash: [], disabled_during_request: null };
const values = scenario.values;
const props = {};
let pending = [];

global.namespace = function(name, body) {
  let obj = global;
  for (const part of name.split('.')) { obj[part] = obj[part] || {}; obj = obj[part]; }
  body(obj);
};
const $ = function(selector) {
  return {
    val: function() { return values[selector]; },
    data: function(key) { return (scenario.data[selector] || {})[key]; },
    prop: function(key, value) {
      if (value === undefined) return (props[selector] || {})[key];
      props[selector] = Object.assign(props[selector] || {}, { [key]: value });
      return this;
    },
  };
};
$.each = function(list, fn) { for (let i = 0; i < list.length; i++) { if (fn(i, list[i]) === false) break; } };
$.map = function(list, fn) {
  const out = [];
  list.forEach(function(elt, i) { const r = fn(elt, i); if (r !== null && r !== undefined) out.push(r); });
  return out;
};
$.grep = function(list, fn) { return list.filter(function(elt, i) { return fn(elt, i); }); };
$.ajax = function(options) {
  calls.ajax.push({ url: options.url, method: options.method, data: options.data, dataType: options.dataType });
  calls.disabled_during_request = $('#kivi_otrs_get_tickets').prop('disabled');
  pending.push(options);
};
global.$ = $;
global.kivi = {
  Order: {
    check_cv: function() { return true; },
    add_multi_items: function(data) { calls.add_multi_items.push(data); },
  },
  display_flash: function(type, message) { calls.flash.push([type, message]); },
};

eval(fs.readFileSync(process.argv[2], 'utf8'));

for (let i = 0; i < scenario.clicks; i++) kivi.KiviOtrs.get_tickets();
calls.ajax_after_clicks = calls.ajax.length;
for (const options of pending) {
  if (scenario.status === 200) options.success(scenario.answer);
  else options.error({ status: scenario.status, responseJSON: scenario.answer, responseText: JSON.stringify(scenario.answer) },
                     'error');
}
calls.disabled_after = $('#kivi_otrs_get_tickets').prop('disabled');
if (scenario.click_again) kivi.KiviOtrs.get_tickets();
calls.ajax_total = calls.ajax.length;
process.stdout.write(JSON.stringify(calls));
"""


def run_js(
    tmp_path: Path,
    *,
    status: int = 200,
    answer: dict[str, Any] | None = None,
    clicks: int = 1,
    values: dict[str, str] | None = None,
    click_again: bool = False,
    lang: str = "de",
    tz: str = "Europe/Berlin",
) -> dict[str, Any]:
    node = require("node")
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS)
    scenario = {
        "status": status,
        "answer": FIXTURE_ANSWER if answer is None else answer,
        "clicks": clicks,
        "click_again": click_again,
        "values": values
        if values is not None
        else {"#order_customer_id": "9001", "#id": "", "#type": "sales_order", "#order_periodic_invoices_config": ""},
        "data": {"#kivi_otrs_get_tickets": {"lang": lang}},
    }
    done = subprocess.run(
        [node, str(harness), str(JS), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "TZ": tz},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def expected_form_data(positions: list[dict[str, Any]]) -> list[dict[str, str]]:
    data = []
    for position in positions:
        data.append({"name": "add_items[+].parts_id", "value": str(position["parts_id"])})
        data.extend({"name": f"add_items[].{key}", "value": str(position[key])} for key in POSITION_FIELDS if key in position)
    return data


def test_js_hands_exactly_the_endpoint_positions_to_add_multi_items(tmp_path: Path) -> None:
    """The positions of the answer reach kivi.Order.add_multi_items once, as its add_items[] name/value pairs."""
    calls = run_js(tmp_path)
    assert calls["add_multi_items"] == [expected_form_data(FIXTURE_ANSWER["positions"])]
    first = calls["add_multi_items"][0]
    assert first[0] == {"name": "add_items[+].parts_id", "value": "5"}
    assert {"name": "add_items[].recurring_billing_mode", "value": "once"} in first
    assert sum(1 for pair in first if pair["name"] == "add_items[+].parts_id") == 2


def test_js_posts_customer_order_and_periodic_flag_to_the_controller(tmp_path: Path) -> None:
    """One POST to KiviOtrs/positions with customer id, order id, period and the periodic flag."""
    calls = run_js(
        tmp_path,
        values={
            "#order_customer_id": "9001",
            "#id": "12",
            "#type": "sales_order",
            "#order_periodic_invoices_config": "---\nactive: 1\nperiodicity: m\n",
        },
    )
    assert len(calls["ajax"]) == 1
    request = calls["ajax"][0]
    assert request["url"] == "controller.pl?action=KiviOtrs/positions"
    assert request["method"] == "POST" and request["dataType"] == "json"
    assert request["data"] == {"customer_id": "9001", "order_id": "12", "periodic": 1, "period": "previous-month"}

    inactive = run_js(
        tmp_path,
        values={
            "#order_customer_id": "9001",
            "#id": "",
            "#type": "sales_order",
            "#order_periodic_invoices_config": "---\nactive: 0\n",
        },
    )
    assert inactive["ajax"][0]["data"]["periodic"] == 0


def test_js_summary_counts_new_billed_and_skipped_with_reasons(tmp_path: Path) -> None:
    """The flash message, in German, says how many tickets are new, billed, reserved, skipped, and that nothing is saved."""
    calls = run_js(tmp_path)
    assert len(calls["flash"]) == 1
    kind, message = calls["flash"][0]
    assert kind == "info"
    assert "2 Ticket(s) neu, 1 bereits abgerechnet, 1 reserviert, 1 übersprungen." in message
    assert "Bereits abgerechnet: 2026090110000033 (in Auftrag A-1)." in message
    assert "2026100110000044 (keine erfasste Zeit)" in message
    assert "speichern" in message and "120 Minuten" in message
    assert "<" not in message
    for english in ("billed on", "reserved until", "no accounted time", "order A-1"):
        assert english not in message


def test_js_tells_a_reservation_from_a_billed_ticket_in_the_browser_time_zone(tmp_path: Path) -> None:
    """A reserved ticket reads 'reserviert bis HH:MM (nicht gespeicherter Auftrag von X)', HH:MM in local time."""
    berlin = run_js(tmp_path)["flash"][0][1]
    assert "Reserviert: 2026090110000055 (reserviert bis 14:05 (nicht gespeicherter Auftrag von bernd))." in berlin
    new_york = run_js(tmp_path, tz="America/New_York")["flash"][0][1]
    assert "reserviert bis 08:05 (nicht gespeicherter Auftrag von bernd)" in new_york


def test_js_speaks_english_for_an_english_kivitendo_user(tmp_path: Path) -> None:
    """With data-lang=en on the button the summary is English throughout."""
    message = run_js(tmp_path, lang="en")["flash"][0][1]
    assert "2 ticket(s) new, 1 already billed, 1 reserved, 1 skipped." in message
    assert "2026090110000033 (in order A-1)" in message
    assert "reserved until 14:05 (unsaved order of bernd)" in message
    assert "2026100110000044 (no accounted time)" in message
    assert "Ticket" not in message and "Auftrag" not in message


def test_js_names_the_invoice_of_an_invoiced_ticket(tmp_path: Path) -> None:
    """A ticket a periodic invoice already took reads 'in Rechnung R-7 (Auftrag A-1)'."""
    invoiced = {"ticket_number": "77", "state": "invoiced", "ordnumber": "A-1", "invnumber": "R-7"}
    answer = {"positions": [], "preview": {"new": [], "billed": [invoiced], "skipped": []}}
    assert "Bereits abgerechnet: 77 (in Rechnung R-7 (Auftrag A-1))." in run_js(tmp_path, answer=answer)["flash"][0][1]


def test_js_names_the_reservation_time_the_endpoint_gives(tmp_path: Path) -> None:
    """reservation_minutes in the answer replaces the default of 120 minutes in the summary."""
    message = run_js(tmp_path, answer={**FIXTURE_ANSWER, "reservation_minutes": 30})["flash"][0][1]
    assert "nach 30 Minuten" in message


def test_js_falls_back_to_the_endpoint_reason_for_an_unknown_code(tmp_path: Path) -> None:
    """A skip reason without a known reason_code is shown as the endpoint wrote it."""
    answer = {
        "positions": [],
        "preview": {
            "new": [],
            "billed": [],
            "skipped": [{"ticket_number": "1", "reason": "something new", "reason_code": "brand_new"}],
        },
    }
    assert "1 (something new)" in run_js(tmp_path, answer=answer)["flash"][0][1]


def test_js_guards_against_double_clicks(tmp_path: Path) -> None:
    """A second click while the request runs sends nothing; the button is disabled meanwhile and enabled afterwards."""
    calls = run_js(tmp_path, clicks=3, click_again=True)
    assert calls["ajax_after_clicks"] == 1
    assert calls["disabled_during_request"] is True
    assert calls["disabled_after"] is False
    assert calls["ajax_total"] == 2  # a click after the answer works again
    assert len(calls["add_multi_items"]) == 1


def test_js_shows_endpoint_errors_and_adds_nothing(tmp_path: Path) -> None:
    """An error answer is shown with kivi.display_flash('error', ...) and no positions are inserted."""
    calls = run_js(tmp_path, status=502, answer={"error": "OTRS answered 500: try again later"})
    assert calls["add_multi_items"] == []
    assert calls["flash"] == [["error", "kivi-otrs: OTRS answered 500: try again later"]]
    assert calls["disabled_after"] is False


def test_js_without_customer_asks_for_one(tmp_path: Path) -> None:
    """Without customer and order id nothing is posted and an error flash asks for a customer."""
    calls = run_js(tmp_path, values={"#order_customer_id": "", "#id": "", "#type": "sales_order"})
    assert calls["ajax"] == []
    assert calls["flash"][0][0] == "error"


def test_js_with_no_positions_does_not_call_add_multi_items(tmp_path: Path) -> None:
    """An answer without positions inserts nothing but still reports billed/skipped tickets."""
    answer = {
        "positions": [],
        "preview": {"new": [], "billed": FIXTURE_ANSWER["preview"]["billed"], "skipped": []},
        "message": "",
    }
    calls = run_js(tmp_path, answer=answer)
    assert calls["add_multi_items"] == []
    assert "1 bereits abgerechnet, 1 reserviert" in calls["flash"][0][1]


# --------------------------------------------------------------------------- Perl controller

STUB_BASE = """package SL::Controller::Base;
use strict;
use warnings;
my @before;
sub new { my ($class, %args) = @_; return bless { %args }, $class }
sub run_before { my ($class, $hook) = @_; push @before, $hook; return 1 }
sub before_hooks { return @before }
sub render {
  my ($self, $template, $options) = @_;
  die "expected a scalar ref" if ref($template) ne 'SCALAR';
  die "expected json/process 0" if $options->{type} ne 'json' || $options->{process};
  print ${$template};
  return ${$template};
}
1;
"""

PERL_HARNESS = r"""use strict;
use warnings;
use JSON::PP;

package StubForm;
sub new { my ($class, $fields) = @_; return bless { %$fields }, $class }
sub create_http_response { my ($self, %p) = @_; return "Status: $p{status}\nContent-Type: $p{content_type}\n\n" }

package StubAuth;
sub new { my ($class, $rights, $client) = @_; return bless { rights => $rights, client => $client }, $class }
sub assert { my ($self, $right) = @_; die "access denied: $right\n" unless $self->{rights}{$right}; return 1 }
sub client { return $_[0]{client} }

package StubRequest;
sub new { my ($class, $ajax) = @_; return bless { ajax => $ajax }, $class }
sub is_ajax { return $_[0]{ajax} }

package main;
no warnings 'once';
binmode STDOUT, ':encoding(UTF-8)';
require SL::Controller::KiviOtrs;

my $scenario = JSON::PP->new->decode($ENV{KO_SCENARIO});
%::lx_office_conf = (kivi_otrs => $scenario->{conf});
%::myconfig       = (login => 'anna', numberformat => '1.000,00', countrycode => $scenario->{countrycode});
$::form           = StubForm->new($scenario->{form});
$::auth           = StubAuth->new($scenario->{rights}, $scenario->{client});
$::request        = StubRequest->new($scenario->{ajax});
%SL::DB::Order::ROWS    = %{ $scenario->{orders} };
%SL::DB::Customer::ROWS = %{ $scenario->{customers} };
$ENV{REQUEST_METHOD} = $scenario->{method} // 'POST';
$ENV{$_} = $scenario->{env}{$_} for keys %{ $scenario->{env} };

my @hooks = SL::Controller::Base->before_hooks;
die "check_auth not registered\n" unless grep { $_ eq 'check_auth' } @hooks;
my $controller = SL::Controller::KiviOtrs->new;
$controller->$_('positions') for @hooks;
$controller->action_positions;
"""


class FakeEndpoint(BaseHTTPRequestHandler):
    """Stand-in for kivi-otrs serve: records requests, answers what the test configured."""

    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers.items()), "body": json.loads(self.rfile.read(length))}
        )
        status, payload = self.server.reply
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeEndpoint)
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, dict[str, Any]] = (200, FIXTURE_ANSWER)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def endpoint() -> Iterator[FakeServer]:
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


STUB_RECORD = """package SL::DB::{name};
use strict;
use warnings;
our %ROWS;
sub new {{ my ($class, %args) = @_; return bless {{ %args }}, $class }}
sub load {{ my ($self, %p) = @_; my $row = $ROWS{{$self->{{id}}}} or return undef; return bless {{ %$row }}, ref($self) }}
sub AUTOLOAD {{ our $AUTOLOAD; my $key = $AUTOLOAD =~ s/.*:://r; return if $key eq 'DESTROY'; return $_[0]{{$key}} }}
1;
"""


@pytest.fixture
def perl_lib(tmp_path: Path) -> Path:
    lib = tmp_path / "stub-lib"
    (lib / "SL" / "Controller").mkdir(parents=True)
    (lib / "SL" / "Controller" / "Base.pm").write_text(STUB_BASE)
    for name in ("Order", "Customer"):
        (lib / "SL" / "DB").mkdir(exist_ok=True)
        (lib / "SL" / "DB" / f"{name}.pm").write_text(STUB_RECORD.format(name=name))
    return lib


CLIENT = {
    "id": 2,
    "name": "Firma A",
    "dbname": "kivi_firma",
    "dbhost": "localhost",
    "dbport": "5432",
    "dbuser": "kivitendo",
    "dbpasswd": "secret-db-password",
}
ORDERS = {
    "12": {"id": 12, "ordnumber": "A-12", "record_type": "sales_order", "customer_id": 9001},
    "13": {"id": 13, "ordnumber": "Q-13", "record_type": "sales_quotation", "customer_id": 9001},
}
CUSTOMERS = {"9001": {"id": 9001, "name": "Kunde"}, "9002": {"id": 9002, "name": "Anderer Kunde"}}


@dataclass
class PerlRun:
    status: str
    body: dict[str, Any]
    output: str


def run_controller(
    perl_lib: Path,
    *,
    url: str,
    token: str = TEST_TOKEN,
    form: dict[str, str] | None = None,
    rights: dict[str, int] | None = None,
    method: str = "POST",
    ajax: int = 1,
    env: dict[str, str] | None = None,
    countrycode: str = "de",
    client: dict[str, Any] | None = CLIENT,
) -> PerlRun:
    perl = require("perl")
    harness = perl_lib / "harness.pl"
    harness.write_text(PERL_HARNESS)
    scenario = {
        "conf": {"url": url, "token": token, "timeout": "5"},
        "form": form if form is not None else {"customer_id": "9001", "order_id": "", "periodic": "1"},
        "rights": rights if rights is not None else {"sales_order_edit": 1},
        "method": method,
        "ajax": ajax,
        "env": env or {},
        "countrycode": countrycode,
        "client": client,
        "orders": ORDERS,
        "customers": CUSTOMERS,
    }
    done = subprocess.run(
        [perl, "-I", str(perl_lib), "-I", str(KIVI), str(harness)],
        capture_output=True,
        timeout=60,
        check=False,
        env={"KO_SCENARIO": json.dumps(scenario), "PATH": "/usr/bin:/bin"},
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert token not in output, "the token leaked into the output"
    assert "secret-db-password" not in output
    if done.returncode != 0:
        return PerlRun("", {}, output)
    assert done.stderr == b"", output  # no Perl warnings
    head, _, body = done.stdout.decode().partition("\n\n")
    assert "Content-Type: application/json" in head
    return PerlRun(head.splitlines()[0].removeprefix("Status: "), json.loads(body), output)


def test_controller_compiles_with_perl_c(perl_lib: Path) -> None:
    """perl -c accepts the controller with a stub SL::Controller::Base."""
    perl = require("perl")
    done = subprocess.run(
        [perl, "-c", "-I", str(perl_lib), str(CONTROLLER)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "syntax OK" in done.stderr


def test_controller_passes_the_endpoint_answer_through(perl_lib: Path, endpoint: FakeServer) -> None:
    """A 200 answer reaches the browser unchanged; the request carries token, login, client, language and form values."""
    run = run_controller(perl_lib, url=endpoint.url)
    assert run.status == "200 OK", run.output
    assert run.body == FIXTURE_ANSWER
    assert len(endpoint.requests) == 1
    request = endpoint.requests[0]
    assert request["path"] == "/positions"
    assert request["headers"]["Authorization"] == f"Bearer {TEST_TOKEN}"
    assert request["headers"]["X-Kivitendo-User"] == "anna"
    assert request["body"] == {
        "customer_id": 9001,
        "periodic": True,
        "number_format": "1.000,00",
        "period": "previous-month",
        "dry_run": False,
        "language": "de",
        "client": {"id": 2, "name": "Firma A", "dbname": "kivi_firma", "dbhost": "localhost", "dbport": 5432},
    }


def test_controller_sends_order_id_of_a_saved_order(perl_lib: Path, endpoint: FakeServer) -> None:
    """A saved order's id goes along as order_id; periodic off stays false."""
    run = run_controller(perl_lib, url=endpoint.url + "/", form={"customer_id": "9001", "order_id": "12", "periodic": "0"})
    assert run.status == "200 OK", run.output
    body = endpoint.requests[0]["body"]
    assert body["order_id"] == 12 and body["customer_id"] == 9001 and body["periodic"] is False


@pytest.mark.parametrize("status", [400, 422, 502, 503])
def test_controller_keeps_status_and_error_of_the_endpoint(perl_lib: Path, endpoint: FakeServer, status: int) -> None:
    """Endpoint errors keep their HTTP status and one-line message."""
    endpoint.reply = (status, {"error": "no hourly-rate article for customer 1000387"})
    run = run_controller(perl_lib, url=endpoint.url)
    assert run.status.startswith(f"{status} "), run.output
    assert run.body == {"error": "no hourly-rate article for customer 1000387"}


def test_controller_explains_a_rejected_token(perl_lib: Path, endpoint: FakeServer) -> None:
    """A 401 from the endpoint says to compare the tokens, without showing them."""
    endpoint.reply = (401, {"error": "missing or wrong token"})
    run = run_controller(perl_lib, url=endpoint.url)
    assert run.status.startswith("401 ")
    assert "api.token" in run.body["error"] and "[kivi_otrs]" in run.body["error"]


def test_controller_reports_an_unreachable_service(perl_lib: Path) -> None:
    """Nothing listening: 502 with 'kivi-otrs service not reachable at URL'."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    run = run_controller(perl_lib, url=url, countrycode="en")
    assert run.status.startswith("502 "), run.output
    assert run.body["error"].startswith(f"kivi-otrs service not reachable at {url}")
    assert "\n" not in run.body["error"]
    german = run_controller(perl_lib, url=url)
    assert german.body["error"].startswith(f"kivi-otrs-Dienst unter {url} nicht erreichbar")


def test_controller_refuses_without_token_in_kivitendo_conf(perl_lib: Path, endpoint: FakeServer) -> None:
    """A missing or short token in [kivi_otrs] is a clear 500 and the endpoint is not called."""
    run = run_controller(perl_lib, url=endpoint.url, token="short")
    assert run.status.startswith("500 ")
    assert "[kivi_otrs]" in run.body["error"]
    assert endpoint.requests == []


def test_controller_validates_form_values(perl_lib: Path, endpoint: FakeServer) -> None:
    """Without customer/order, or with a non-numeric id, it answers 400 without calling the endpoint."""
    assert run_controller(perl_lib, url=endpoint.url, form={"customer_id": "", "order_id": ""}).status.startswith("400 ")
    bad = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "9001; drop", "order_id": ""})
    assert bad.status.startswith("400 ") and "customer_id" in bad.body["error"]
    assert endpoint.requests == []


def test_controller_requires_post_and_the_sales_order_right(perl_lib: Path, endpoint: FakeServer) -> None:
    """GET is refused with 405; a user without sales_order_edit is stopped by check_auth."""
    assert run_controller(perl_lib, url=endpoint.url, method="GET").status.startswith("405 ")
    denied = run_controller(perl_lib, url=endpoint.url, rights={})
    assert "access denied: sales_order_edit" in denied.output
    assert endpoint.requests == []


def test_controller_never_prints_or_logs_the_token() -> None:
    """No output or logging statement in the controller mentions the token or its variable."""
    source = CONTROLLER.read_text()
    code = source.split("__END__")[0]
    output_statement = re.compile(r"\b(print|printf|warn|die|carp|croak|cluck|confess|message|Dumper|lxdebug|log)\b")
    for number, line in enumerate(code.splitlines(), 1):
        if output_statement.search(line):
            assert "secret" not in line and "{token}" not in line, f"line {number} may expose the token: {line.strip()}"
    # the token is used in one place only: the Authorization header
    assert len(re.findall(r"\{secret\}", code)) == 1
    assert re.search(r"'Authorization'\s*=>\s*'Bearer ' \. \$settings->\{secret\}", code)


def test_controller_refuses_requests_that_are_not_same_site_ajax(perl_lib: Path, endpoint: FakeServer) -> None:
    """Without X-Requested-With, or with an Origin of another host, it answers 403 and calls nothing."""
    plain_post = run_controller(perl_lib, url=endpoint.url, ajax=0)
    assert plain_post.status.startswith("403 ") and "X-Requested-With" in plain_post.body["error"]
    foreign = run_controller(perl_lib, url=endpoint.url, env={"HTTP_ORIGIN": "https://evil.example", "HTTP_HOST": "erp.example"})
    assert foreign.status.startswith("403 ") and "evil.example" in foreign.body["error"]
    assert endpoint.requests == []
    same = run_controller(perl_lib, url=endpoint.url, env={"HTTP_ORIGIN": "https://erp.example", "HTTP_HOST": "erp.example"})
    assert same.status == "200 OK", same.output


def test_controller_checks_order_type_customer_and_existence(perl_lib: Path, endpoint: FakeServer) -> None:
    """A quotation, a missing order, an order whose customer was changed and a missing customer are refused."""
    quotation = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "9001", "order_id": "13"})
    assert quotation.status.startswith("400 ") and "Q-13" in quotation.body["error"]
    missing = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "9001", "order_id": "99"})
    assert missing.status.startswith("404 ")
    changed = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "9002", "order_id": "12"})
    assert changed.status.startswith("409 ") and "speichern" in changed.body["error"]
    no_customer = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "4711", "order_id": ""})
    assert no_customer.status.startswith("404 ")
    assert endpoint.requests == []


def test_controller_speaks_the_users_language_and_needs_a_client(perl_lib: Path, endpoint: FakeServer) -> None:
    """Own messages follow the user's countrycode; without a client in the session nothing is sent."""
    german = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "", "order_id": ""})
    assert german.body["error"] == "Bitte zuerst einen Kunden wählen."
    english = run_controller(perl_lib, url=endpoint.url, form={"customer_id": "", "order_id": ""}, countrycode="en")
    assert english.body["error"] == "Choose a customer first."
    run_controller(perl_lib, url=endpoint.url, countrycode="en")
    assert endpoint.requests[0]["body"]["language"] == "en"
    no_client = run_controller(perl_lib, url=endpoint.url, client=None)
    assert no_client.status.startswith("500 ") and "Mandant" in no_client.body["error"]
    assert len(endpoint.requests) == 1
