"""The kivitendo side of the order-screen button: template patch, browser JS and Perl controller.

Runs offline without a database. The patch is checked against the copies of the upstream
kivitendo templates in kivitendo/patches/upstream; the JS runs under node with stubbed jQuery
and kivitendo functions; the controller runs under perl with stub kivitendo modules against a
local stand-in for ``kivi-otrs serve``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
KIVI = ROOT / "kivitendo"
PATCH = KIVI / "patches" / "order-screen-button.patch"
UPSTREAM = KIVI / "patches" / "upstream"
CONTROLLER = KIVI / "SL" / "Controller" / "KiviOtrs.pm"
JS = KIVI / "js" / "kivi.KiviOtrs.js"
BUTTON_LABEL = "Geschlossene Tickets des Vormonats holen"
SCRIPT_TAG = '<script type="text/javascript" src="js/kivi.KiviOtrs.js"></script>'
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
        "billed": [{"ticket_number": "2026090110000033", "title": "Mail", "minutes": "15", "where": "billed on order A-1"}],
        "skipped": [{"ticket_number": "2026100110000044", "title": "<b>x</b>", "minutes": "0",
                     "reason": "no accounted time"}],
    },
    "message": "2 new positions, 1 already billed, 1 skipped",
}


# --------------------------------------------------------------------------- patch


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: list[str] = field(default_factory=list)


@dataclass
class FilePatch:
    old_path: str
    new_path: str
    hunks: list[Hunk] = field(default_factory=list)


HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_unified_diff(text: str) -> list[FilePatch]:
    """A small strict parser: every hunk body must match its header's line counts."""
    files: list[FilePatch] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            files.append(FilePatch(line[4:].split("\t")[0], lines[i + 1][4:].split("\t")[0]))
            i += 2
            continue
        match = HUNK_RE.match(line)
        if match:
            assert files, "hunk before any file header"
            old_start, old_count, new_start, new_count = (int(g) if g is not None else 1 for g in match.groups())
            hunk = Hunk(old_start, old_count, new_start, new_count)
            i += 1
            old_seen = new_seen = 0
            while i < len(lines) and (old_seen < old_count or new_seen < new_count):
                body = lines[i]
                tag = body[:1]
                assert tag in (" ", "-", "+", "\\"), f"unexpected line in hunk: {body!r}"
                if tag in (" ", "-"):
                    old_seen += 1
                if tag in (" ", "+"):
                    new_seen += 1
                hunk.lines.append(body)
                i += 1
            assert (old_seen, new_seen) == (old_count, new_count), f"hunk {line} has {old_seen}/{new_seen} lines"
            files[-1].hunks.append(hunk)
            continue
        i += 1
    return files


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed on this machine")
    return path


def run_patch(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    patch = require("patch")
    with PATCH.open() as stdin:
        return subprocess.run(
            [patch, "-p1", "--batch", *args], cwd=workdir, stdin=stdin, capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture
def kivitendo_tree(tmp_path: Path) -> Path:
    """A kivitendo root holding only the upstream templates the patch touches."""
    tree = tmp_path / "kivitendo-erp"
    shutil.copytree(UPSTREAM, tree)
    return tree


def test_patch_hunks_match_their_headers_and_target_upstream_templates() -> None:
    """Every hunk's line counts match its header; every patched file has an upstream copy."""
    files = parse_unified_diff(PATCH.read_text())
    assert [f.new_path for f in files] == [
        "b/templates/design40_webpages/order/tabs/_item_input.html",
        "b/templates/webpages/order/tabs/_item_input.html",
    ]
    for file_patch in files:
        assert file_patch.old_path.startswith("a/") and file_patch.new_path.startswith("b/")
        assert file_patch.old_path[2:] == file_patch.new_path[2:]
        upstream = UPSTREAM / file_patch.old_path[2:]
        assert upstream.is_file(), f"no upstream copy for {file_patch.old_path}"
        original = upstream.read_text().splitlines()
        assert file_patch.hunks
        for hunk in file_patch.hunks:
            expected = [body[1:] for body in hunk.lines if body[:1] in (" ", "-")]
            start = hunk.old_start - 1
            assert original[start : start + len(expected)] == expected, "context does not match the upstream template"
            assert not any(body.startswith("-") for body in hunk.lines), "the patch only adds lines"


def test_upstream_templates_are_the_order_screen_add_item_controls() -> None:
    """The stored upstream copies are kivitendo's item input rows wired to kivi.Order.add_multi_items."""
    for path in UPSTREAM.rglob("_item_input.html"):
        text = path.read_text()
        assert "kivi.Order.add_item()" in text
        assert "set_multi_items='kivi.Order.add_multi_items'" in text
        assert "kivi-otrs" not in text


def test_patch_applies_cleanly_and_adds_button_and_script(kivitendo_tree: Path) -> None:
    """patch -p1 --dry-run and the real run apply without fuzz; button and script include land in both designs."""
    dry = run_patch(kivitendo_tree, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "fuzz" not in dry.stdout.lower() and "offset" not in dry.stdout.lower(), dry.stdout

    applied = run_patch(kivitendo_tree)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    for rel in ("templates/design40_webpages/order/tabs/_item_input.html", "templates/webpages/order/tabs/_item_input.html"):
        text = (kivitendo_tree / rel).read_text()
        assert text.count(BUTTON_LABEL) == 1
        assert text.count(SCRIPT_TAG) == 1
        assert "L.button_tag('kivi.KiviOtrs.get_tickets()'" in text
        assert "id='kivi_otrs_get_tickets'" in text
        # only on sales orders, and the upstream controls stay untouched
        assert text.index("[%- IF SELF.type == 'sales_order' %]") < text.index(BUTTON_LABEL)
        assert "kivi.Order.add_item()" in text
    design40 = (kivitendo_tree / "templates/design40_webpages/order/tabs/_item_input.html").read_text()
    assert design40.index("open_multi_items_dialog") < design40.index(BUTTON_LABEL) < design40.index("create_part_table_id")


def test_patch_reverses_cleanly_back_to_upstream(kivitendo_tree: Path) -> None:
    """After applying, -R --dry-run succeeds and reversing restores the upstream files byte for byte."""
    assert run_patch(kivitendo_tree).returncode == 0
    reverse_dry = run_patch(kivitendo_tree, "-R", "--dry-run")
    assert reverse_dry.returncode == 0, reverse_dry.stdout + reverse_dry.stderr
    assert run_patch(kivitendo_tree, "-R").returncode == 0
    for upstream in UPSTREAM.rglob("*.html"):
        assert (kivitendo_tree / upstream.relative_to(UPSTREAM)).read_bytes() == upstream.read_bytes()


def test_install_script_checks_with_dry_run_before_patching() -> None:
    """install.sh runs patch --dry-run before the real patch and copies controller and JS."""
    script = (KIVI / "install.sh").read_text()
    dry = script.index("patch -p1 --dry-run --forward")
    real = script.index('patch -p1 --forward --no-backup-if-mismatch < "$patch_file"')
    assert dry < real
    assert "SL/Controller/KiviOtrs.pm" in script and "js/kivi.KiviOtrs.js" in script


def test_install_script_installs_and_uninstalls(tmp_path: Path) -> None:
    """install.sh patches a kivitendo tree and copies the files; --uninstall restores it."""
    require("patch")
    sh = require("sh")
    tree = tmp_path / "kivitendo-erp"
    shutil.copytree(UPSTREAM, tree)
    (tree / "SL" / "Controller").mkdir(parents=True)
    (tree / "SL" / "Controller" / "Order.pm").write_text("package SL::Controller::Order;\n1;\n")
    (tree / "js").mkdir()
    (tree / "js" / "kivi.Order.js").write_text("// stub\n")

    done = subprocess.run([sh, str(KIVI / "install.sh"), str(tree)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tree / "SL" / "Controller" / "KiviOtrs.pm").read_bytes() == CONTROLLER.read_bytes()
    assert (tree / "js" / "kivi.KiviOtrs.js").read_bytes() == JS.read_bytes()
    assert BUTTON_LABEL in (tree / "templates/webpages/order/tabs/_item_input.html").read_text()

    again = subprocess.run([sh, str(KIVI / "install.sh"), str(tree)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tree / "templates/webpages/order/tabs/_item_input.html").read_text().count(BUTTON_LABEL) == 1

    gone = subprocess.run(
        [sh, str(KIVI / "install.sh"), "--uninstall", str(tree)], capture_output=True, text=True, timeout=60, check=False
    )
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not (tree / "SL" / "Controller" / "KiviOtrs.pm").exists()
    assert not (tree / "js" / "kivi.KiviOtrs.js").exists()
    for upstream in UPSTREAM.rglob("*.html"):
        assert (tree / upstream.relative_to(UPSTREAM)).read_bytes() == upstream.read_bytes()


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
    }
    done = subprocess.run(
        [node, str(harness), str(JS), json.dumps(scenario)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def expected_form_data(positions: list[dict[str, Any]]) -> list[dict[str, str]]:
    fields = [
        "qty_as_number",
        "description",
        "longdescription",
        "unit",
        "sellprice_as_number",
        "discount_as_percent",
        "recurring_billing_mode",
    ]
    data = []
    for position in positions:
        data.append({"name": "add_items[+].parts_id", "value": str(position["parts_id"])})
        data.extend({"name": f"add_items[].{key}", "value": str(position[key])} for key in fields if key in position)
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
    """The flash message says how many tickets are new, billed, skipped, with reasons, and that nothing is saved yet."""
    calls = run_js(tmp_path)
    assert len(calls["flash"]) == 1
    kind, message = calls["flash"][0]
    assert kind == "info"
    assert "2 Ticket(s) neu" in message and "1 bereits abgerechnet" in message and "1 übersprungen" in message
    assert "2026090110000033 (billed on order A-1)" in message
    assert "2026100110000044 (no accounted time)" in message
    assert "speichern" in message and "120 Minuten" in message
    assert "<" not in message


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
    answer = {"positions": [], "preview": {"new": [], "billed": FIXTURE_ANSWER["preview"]["billed"], "skipped": []},
              "message": ""}
    calls = run_js(tmp_path, answer=answer)
    assert calls["add_multi_items"] == []
    assert "1 bereits abgerechnet" in calls["flash"][0][1]


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
sub new { my ($class, $rights) = @_; return bless { rights => $rights }, $class }
sub assert { my ($self, $right) = @_; die "access denied: $right\n" unless $self->{rights}{$right}; return 1 }

package main;
no warnings 'once';
binmode STDOUT, ':encoding(UTF-8)';
require SL::Controller::KiviOtrs;

my $scenario = JSON::PP->new->decode($ENV{KO_SCENARIO});
%::lx_office_conf = (kivi_otrs => $scenario->{conf});
%::myconfig       = (login => 'anna', numberformat => '1.000,00');
$::form           = StubForm->new($scenario->{form});
$::auth           = StubAuth->new($scenario->{rights});
$ENV{REQUEST_METHOD} = $scenario->{method} // 'POST';

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


@pytest.fixture
def perl_lib(tmp_path: Path) -> Path:
    lib = tmp_path / "stub-lib"
    (lib / "SL" / "Controller").mkdir(parents=True)
    (lib / "SL" / "Controller" / "Base.pm").write_text(STUB_BASE)
    return lib


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
) -> PerlRun:
    perl = require("perl")
    harness = perl_lib / "harness.pl"
    harness.write_text(PERL_HARNESS)
    scenario = {
        "conf": {"url": url, "token": token, "timeout": "5"},
        "form": form if form is not None else {"customer_id": "9001", "order_id": "", "periodic": "1"},
        "rights": rights if rights is not None else {"sales_order_edit": 1},
        "method": method,
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
    """A 200 answer reaches the browser unchanged; the request carries token, login, numberformat and form values."""
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
    run = run_controller(perl_lib, url=url)
    assert run.status.startswith("502 "), run.output
    assert run.body["error"].startswith(f"kivi-otrs service not reachable at {url}")
    assert "\n" not in run.body["error"]


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
