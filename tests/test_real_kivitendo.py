"""Opt-in browser tests against a REAL running kivitendo (4.1 or newer) with the kivi-otrs button installed.

They drive kivitendo's own pages with headless Chromium (Python playwright with the system browser, no
browser download) and check the rows kivitendo and kivi-otrs' triggers write in the client database.

Needs, besides a kivitendo with ``install.sh`` applied, ``[kivi_otrs]`` in kivitendo.conf and a running
``kivi-otrs serve`` that talks to a real OTRS/Znuny holding closed tickets of the previous month with
accounted time for the test customer:

    KIVI_OTRS_KIVITENDO_URL       e.g. http://127.0.0.1:8091/kivitendo/
    KIVI_OTRS_KIVITENDO_USER      a kivitendo user with sales_order_edit (and invoice/background-job rights)
    KIVI_OTRS_KIVITENDO_PASSWORD
    KIVI_OTRS_KIVITENDO_CLIENT    the client (Mandant) as named on the login screen, e.g. "Firma A"
    KIVI_OTRS_KIVITENDO_DSN       that client's database, for checking rows (kivi-otrs migrated into it)

Optional:
    KIVI_OTRS_KIVITENDO_CUSTOMER     customer number with billable tickets (default 10001)
    KIVI_OTRS_KIVITENDO_OTHER_CLIENT a second client of the same installation (e.g. "Testfirma") and
    KIVI_OTRS_KIVITENDO_OTHER_DSN    its database: enables the two-client check
    KIVI_OTRS_CHROMIUM               browser binary (default /usr/bin/chromium)
    KIVI_OTRS_SCREENSHOTS            directory for screenshots realtest-*.png (default: pytest's tmp_path)
    KIVI_OTRS_OTRS_PASSWORD          the OTRS agent's password of the client's settings: enables the
                                     monthly-run check (kivi-otrs bill from this process)

The database is treated as a throwaway test client: before and after each test the ledger entries of the
test customer are released by SQL so that every test starts with the same tickets on offer. Documents the
tests create stay in kivitendo (orders that are not invoiced are deleted through kivitendo's UI).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import POSITION_FIELDS

_REQUIRED = (
    "KIVI_OTRS_KIVITENDO_URL",
    "KIVI_OTRS_KIVITENDO_USER",
    "KIVI_OTRS_KIVITENDO_PASSWORD",
    "KIVI_OTRS_KIVITENDO_CLIENT",
    "KIVI_OTRS_KIVITENDO_DSN",
)
_MISSING = [name for name in _REQUIRED if not os.environ.get(name)]
if _MISSING:
    pytest.skip(
        "real-kivitendo browser tests are opt-in: set " + ", ".join(_MISSING) + " (see the module docstring)",
        allow_module_level=True,
    )

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[peer]' (uses the system chromium)"
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BUTTON = "#kivi_otrs_get_tickets"
ROW_PARTS = "[name='order.orderitems[].parts_id']"
ROW_LONGDESCRIPTION = "[name='order.orderitems[].longdescription']"
TIMEOUT_MS = 60_000

# The button's summary in the user's language (kivitendo/public/js/kivi.KiviOtrs.js).
TEXTS = {
    "de": {
        "label": "Geschlossene Tickets des Vormonats holen",
        "inserted": "Position(en) eingefügt",
        "billed": "Bereits abgerechnet",
        "in_order": "in Auftrag {ordnumber}",
        "in_invoice": "in Rechnung {invnumber}",
        "new": "{n} Ticket(s) neu",
    },
    "en": {
        "label": "Get closed tickets for previous month",
        "inserted": "position(s) inserted",
        "billed": "Already billed",
        "in_order": "in order {ordnumber}",
        "in_invoice": "in invoice {invnumber}",
        "new": "{n} ticket(s) new",
    },
}


@dataclass
class Peer:
    url: str
    user: str
    password: str
    client: str
    dsn: str
    customer: str
    chromium: str
    shots: Path
    other_client: str | None
    other_dsn: str | None

    def query(self, sql: str, args: tuple[Any, ...] = (), dsn: str | None = None) -> list[dict[str, Any]]:
        with psycopg.connect(dsn or self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, args)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@dataclass
class Answer:
    """What KiviOtrs/positions answered the button."""

    status: int
    body: dict[str, Any]
    positions: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Peer:
    shots = os.environ.get("KIVI_OTRS_SCREENSHOTS")
    return Peer(
        url=os.environ["KIVI_OTRS_KIVITENDO_URL"].rstrip("/") + "/",
        user=os.environ["KIVI_OTRS_KIVITENDO_USER"],
        password=os.environ["KIVI_OTRS_KIVITENDO_PASSWORD"],
        client=os.environ["KIVI_OTRS_KIVITENDO_CLIENT"],
        dsn=os.environ["KIVI_OTRS_KIVITENDO_DSN"],
        customer=os.environ.get("KIVI_OTRS_KIVITENDO_CUSTOMER", "10001"),
        chromium=os.environ.get("KIVI_OTRS_CHROMIUM", "/usr/bin/chromium"),
        shots=Path(shots) if shots else tmp_path_factory.mktemp("realtest-shots"),
        other_client=os.environ.get("KIVI_OTRS_KIVITENDO_OTHER_CLIENT") or None,
        other_dsn=os.environ.get("KIVI_OTRS_KIVITENDO_OTHER_DSN") or None,
    )


@pytest.fixture(scope="session")
def browser(peer: Peer) -> Iterator[Any]:
    if not Path(peer.chromium).exists():
        pytest.skip(f"no chromium at {peer.chromium} (set KIVI_OTRS_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=peer.chromium, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def release_ledger(peer: Peer, customer: str, dsn: str | None = None) -> None:
    """Give every live ledger entry of the customer up (throwaway test client): its tickets are offered again."""
    peer.query(
        "UPDATE kivi_otrs.ledger SET state = 'released', released_at = now(), release_reason = 'realtest reset'"
        " WHERE customer_number = %s AND state <> 'released'",
        (customer,),
        dsn=dsn,
    )


@pytest.fixture
def fresh_ledger(peer: Peer) -> Iterator[None]:
    release_ledger(peer, peer.customer)
    yield
    release_ledger(peer, peer.customer)


class Kivi:
    """One logged-in kivitendo browser session."""

    def __init__(self, peer: Peer, page: Any, shot_prefix: str) -> None:
        self.peer = peer
        self.page = page
        self.shot_prefix = shot_prefix
        self.dialogs: list[str] = []
        self.created_orders: list[int] = []
        page.on("dialog", self._accept)

    def _accept(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()

    # -- navigation -------------------------------------------------------------------------------------------

    def goto(self, path: str) -> None:
        self.page.goto(self.peer.url + path)
        self.page.wait_for_load_state("networkidle")

    def login(self, client: str) -> None:
        self.goto("controller.pl?action=LoginScreen/user_login")
        self.page.fill("#username", self.peer.user)
        self.page.fill("input[name='{AUTH}password']", self.peer.password)
        self.page.select_option("select[name='{AUTH}client_id']", label=client)
        self.page.click("input[type=submit]")
        self.page.wait_for_load_state("networkidle")
        assert "LoginScreen" not in self.page.url or "error" not in self.page.content().lower(), "login failed"

    def shot(self, name: str) -> Path:
        path = self.peer.shots / f"realtest-{self.shot_prefix}-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def actionbar_names(self) -> list[str]:
        names: list[str] = self.page.evaluate(
            "() => Array.from(document.querySelectorAll('.layout-actionbar .layout-actionbar-action'))"
            ".map(e => e.innerText.split('\\n')[0].replace(/Alt\\+.*$/, '').trim())"
        )
        return names

    def actionbar(self, text: str) -> None:
        """Click an action bar entry, also one inside a combobox drop-down (e.g. Workflow)."""
        names = self.actionbar_names()
        assert text in names, f"action bar entry {text!r} not in {names}"
        self.page.locator(".layout-actionbar .layout-actionbar-action").nth(names.index(text)).evaluate("e => e.click()")

    def actionbar_and_wait_for_page(self, text: str) -> None:
        with self.page.expect_navigation(timeout=TIMEOUT_MS):
            self.actionbar(text)
        self.page.wait_for_load_state("networkidle")

    # -- orders -----------------------------------------------------------------------------------------------

    def new_sales_order(self, customer: str, record_type: str = "sales_order") -> None:
        self.goto(f"controller.pl?action=Order/add&type={record_type}")
        field_ = self.page.locator("#order_customer_id_name")
        field_.click()
        field_.press_sequentially(customer, delay=40)
        item = self.page.locator(".ui-autocomplete .ui-menu-item").first
        item.wait_for(state="visible")
        item.click()
        self.page.wait_for_function("() => $('#order_customer_id').val() !== ''")
        self.page.wait_for_load_state("networkidle")

    def open_order(self, order_id: int) -> None:
        self.goto(f"controller.pl?action=Order/edit&type=sales_order&id={order_id}")

    def order_id(self) -> int | None:
        value = self.page.evaluate("() => $('#id').val()")
        return int(value) if value else None

    def row_count(self) -> int:
        count: int = self.page.locator(ROW_PARTS).count()
        return count

    def language(self) -> str:
        lang = self.page.get_attribute(BUTTON, "data-lang")
        return "en" if lang == "en" else "de"

    def click_button(self) -> Answer:
        """Click kivi-otrs' button; return the endpoint's answer once kivitendo has rendered the rows."""
        before = self.row_count()
        with self.page.expect_response(lambda r: "KiviOtrs/positions" in r.url, timeout=TIMEOUT_MS) as info:
            self.page.click(BUTTON)
        response = info.value
        body = response.json()
        answer = Answer(status=response.status, body=body, positions=list(body.get("positions") or []))
        if answer.positions:
            self.page.wait_for_function(
                f'() => document.querySelectorAll("{ROW_PARTS}").length >= {before + len(answer.positions)}',
                timeout=TIMEOUT_MS,
            )
        self.page.wait_for_function(f"() => !$('{BUTTON}').prop('disabled')")
        self.page.wait_for_load_state("networkidle")
        return answer

    def add_positions_as_the_button_does(self) -> Answer:
        """Ask KiviOtrs/positions and insert its positions with kivi.Order.add_multi_items, as the button does.

        For record types without the button (a quotation): same request, same name/value list
        (kivi.KiviOtrs.positions_to_form_data when that script is on the page, else the same list built here).
        """
        before = self.row_count()
        result: dict[str, Any] = self.page.evaluate(
            """fields => new Promise(resolve => {
                const val = sel => { const v = $(sel).val(); return v === undefined || v === null ? '' : String(v); };
                const toData = positions => {
                  if (window.kivi.KiviOtrs && kivi.KiviOtrs.positions_to_form_data)
                    return kivi.KiviOtrs.positions_to_form_data(positions);
                  const data = [];
                  positions.forEach(p => {
                    data.push({ name: 'add_items[+].parts_id', value: String(p.parts_id) });
                    fields.forEach(f => {
                      if (p[f] !== undefined && p[f] !== null) data.push({ name: 'add_items[].' + f, value: String(p[f]) });
                    });
                  });
                  return data;
                };
                $.ajax({
                  url: 'controller.pl?action=KiviOtrs/positions', type: 'POST', dataType: 'json',
                  data: { customer_id: val('#order_customer_id'), order_id: val('#id'), periodic: 0,
                          period: 'previous-month' },
                  success: (body, _text, xhr) => {
                    const positions = (body && body.positions) || [];
                    if (positions.length) kivi.Order.add_multi_items(toData(positions));
                    resolve({ status: xhr.status, body: body || {} });
                  },
                  error: xhr => {
                    let body;
                    try { body = JSON.parse(xhr.responseText); } catch (e) { body = { raw: String(xhr.responseText) }; }
                    resolve({ status: xhr.status, body: body });
                  }
                });
            })""",
            list(POSITION_FIELDS),
        )
        body = result["body"]
        answer = Answer(status=int(result["status"]), body=body, positions=list(body.get("positions") or []))
        if answer.positions:
            self.page.wait_for_function(
                f'() => document.querySelectorAll("{ROW_PARTS}").length >= {before + len(answer.positions)}',
                timeout=TIMEOUT_MS,
            )
        self.page.wait_for_load_state("networkidle")
        return answer

    def row_index_with(self, ticket_number: str) -> int:
        texts: list[str] = self.page.eval_on_selector_all(ROW_LONGDESCRIPTION, "els => els.map(e => e.value)")
        return next(i for i, text in enumerate(texts) if ticket_number in text)

    def save_as_new_refused(self) -> str:
        """'Als neu speichern', expecting kivi-otrs' refusal; returns the red error box's text."""
        self.actionbar("Als neu speichern")
        self.page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#layout_flash_container .layout-flash-error'))"
            ".some(e => e.offsetParent !== null && /kivi-otrs:/.test(e.innerText))",
            timeout=TIMEOUT_MS,
        )
        return self.flash("error")

    def flash(self, kind: str | None = None) -> str:
        """Text of the visible flash messages (kivitendo 4.1: #layout_flash_container)."""
        selector = "#layout_flash_container .layout-flash-message" + (f".layout-flash-{kind}" if kind else "")
        texts: list[str] = self.page.evaluate(
            "sel => Array.from(document.querySelectorAll(sel)).filter(e => e.offsetParent !== null)"
            ".map(e => e.querySelector('.layout-flash-body') ? e.querySelector('.layout-flash-body').innerText : '')",
            selector,
        )
        return " | ".join(t.strip() for t in texts if t.strip())

    def save_order(self) -> int:
        """'Speichern' (accepting kivitendo's duplicate-article question); returns the saved order's id."""
        with self.page.expect_navigation(timeout=TIMEOUT_MS):
            self.actionbar(self.save_label())
        self.page.wait_for_load_state("networkidle")
        order_id = self.order_id()
        assert order_id, f"order not saved: {self.flash()!r}"
        if order_id not in self.created_orders:
            self.created_orders.append(order_id)
        return order_id

    def save_label(self) -> str:
        names = self.actionbar_names()
        return "Speichern" if "Speichern" in names else "Save"

    def delete_row_with(self, ticket_number: str) -> None:
        rows = self.row_count()
        self.page.locator("[onclick*='delete_order_item_row']").nth(self.row_index_with(ticket_number)).click()
        self.page.wait_for_function(f'() => document.querySelectorAll("{ROW_PARTS}").length === {rows - 1}', timeout=TIMEOUT_MS)

    def delete_order(self, order_id: int) -> None:
        self.open_order(order_id)
        self.actionbar_and_wait_for_page("Löschen" if "Löschen" in self.actionbar_names() else "Delete")

    # -- user preferences -------------------------------------------------------------------------------------

    def item_input_position(self) -> str:
        self.goto("am.pl?action=config")
        value: str = self.page.input_value("select[name=order_item_input_position]")
        return value

    def set_item_input_position(self, value: str) -> None:
        self.goto("am.pl?action=config")
        panel = self.page.evaluate("() => $('select[name=order_item_input_position]').closest('.ui-tabs-panel').attr('id')")
        if panel:  # the preference sits on a tab of its own
            self.page.click(f"a[href='#{panel}']")
        self.page.select_option("select[name=order_item_input_position]", value)
        self.actionbar_and_wait_for_page(self.save_label())
        assert self.item_input_position() == value


@pytest.fixture
def new_kivi(browser: Any, peer: Peer, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Kivi]]:
    """Factory: a fresh browser context (own profile, own cookies) logged into the given client."""
    contexts: list[Any] = []
    sessions: list[Kivi] = []
    prefix = re.sub(r"^test_", "", request.node.name)[:48]

    def make(client: str) -> Kivi:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        kivi = Kivi(peer, context.new_page(), prefix + ("" if client == peer.client else "-other"))
        kivi.login(client)
        sessions.append(kivi)
        return kivi

    yield make
    for session in sessions:
        for order_id in session.created_orders:
            with contextlib.suppress(Exception):
                if peer.query("SELECT 1 FROM oe WHERE id = %s AND NOT closed", (order_id,)):
                    session.delete_order(order_id)
    for context in contexts:
        context.close()


@pytest.fixture
def kivi(new_kivi: Callable[[str], Kivi], peer: Peer, fresh_ledger: None) -> Kivi:
    """The test user logged into the test client, with the test customer's tickets on offer."""
    return new_kivi(peer.client)


def ledger(peer: Peer, ticket_numbers: list[str] | None = None) -> list[dict[str, Any]]:
    rows = peer.query(
        "SELECT id, ticket_number, state, oe_id, orderitems_id, invoice_id, release_reason FROM kivi_otrs.ledger"
        " WHERE customer_number = %s ORDER BY id",
        (peer.customer,),
    )
    return [r for r in rows if ticket_numbers is None or r["ticket_number"] in ticket_numbers]


def live(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["ticket_number"]: r for r in rows if r["state"] != "released"}


def ticket_numbers(answer: Answer) -> list[str]:
    return [str(entry["ticket_number"]) for entry in answer.body.get("preview", {}).get("new", [])]


def require_tickets(answer: Answer, peer: Peer) -> list[str]:
    assert answer.status == 200, f"button failed: HTTP {answer.status} {answer.body}"
    numbers = ticket_numbers(answer)
    assert answer.positions and numbers, (
        f"OTRS offers no billable closed ticket of customer {peer.customer} in the previous month: {answer.body}"
    )
    return numbers


def ordnumber(peer: Peer, order_id: int) -> str:
    return str(peer.query("SELECT ordnumber FROM oe WHERE id = %s", (order_id,))[0]["ordnumber"])


def order_with_tickets(kivi: Kivi) -> tuple[int, list[str]]:
    """A new sales order of the test customer with all tickets on offer, saved."""
    kivi.new_sales_order(kivi.peer.customer)
    numbers = require_tickets(kivi.click_button(), kivi.peer)
    order_id = kivi.save_order()
    return order_id, numbers


def wait_for(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------------------------------------


def test_button_is_on_the_sales_order_screen_in_both_item_input_layouts(kivi: Kivi, peer: Peer) -> None:
    """The button shows (and inserts rows) with the item input above and below the positions."""
    original = kivi.item_input_position()
    try:
        for value, layout, tag in (("0", "above", "DIV"), ("1", "below", "TR")):
            release_ledger(peer, peer.customer)
            kivi.set_item_input_position(value)
            kivi.new_sales_order(peer.customer)
            button = kivi.page.locator(BUTTON)
            assert button.is_visible(), f"no button with the item input {layout} the positions"
            assert TEXTS[kivi.language()]["label"] in button.evaluate("e => e.value || e.innerText")
            row = kivi.page.locator("#kivi_otrs_row")
            assert row.evaluate("e => e.tagName") == tag
            if layout == "below":
                # a row of its own in the positions table's foot, after the add-item row
                assert row.evaluate("e => e.closest('tfoot') !== null")
            answer = kivi.click_button()
            require_tickets(answer, peer)
            assert kivi.row_count() == len(answer.positions)
            button.scroll_into_view_if_needed()
            kivi.shot(f"layout-{layout}")
    finally:
        kivi.set_item_input_position(original)


def test_contact_checkbox_drives_the_otrs_contact_view(kivi: Kivi, peer: Peer) -> None:
    """Ticking "Darf Tickets melden (OTRS)" in the contact form makes the contact valid in the OTRS view at once."""
    contacts = peer.query(
        "SELECT c.cp_id, c.cp_email FROM contacts c JOIN customer_contacts cc ON cc.contact_id = c.cp_id"
        " JOIN customer cu ON cu.id = cc.customer_id WHERE cu.customernumber = %s AND c.cp_email <> '' ORDER BY c.cp_id",
        (peer.customer,),
    )
    if not contacts:
        pytest.skip(f"customer {peer.customer} has no contact with an e-mail address")
    cp_id, email = contacts[0]["cp_id"], contacts[0]["cp_email"]
    checkbox = "#contact_cvars_otrs_may_report_tickets"

    def valid_id() -> int:
        rows = peer.query("SELECT cp_valid_id FROM kivi_otrs.otrs_customer_contacts WHERE cp_email = %s", (email,))
        assert len(rows) == 1, f"contact {email} not (or twice) in kivi_otrs.otrs_customer_contacts: {rows}"
        return int(rows[0]["cp_valid_id"])

    def set_flag(on: bool) -> None:
        kivi.goto(f"controller.pl?action=Contact/edit&id={cp_id}")
        label = kivi.page.locator("xpath=//input[@id='contact_cvars_otrs_may_report_tickets']/ancestor::tr[1]")
        assert "Darf Tickets melden (OTRS)" in label.inner_text()
        kivi.page.set_checked(checkbox, on)
        kivi.actionbar_and_wait_for_page(kivi.save_label())

    kivi.goto(f"controller.pl?action=Contact/edit&id={cp_id}")
    original = kivi.page.is_checked(checkbox)
    try:
        set_flag(True)
        assert valid_id() == 1
        kivi.goto(f"controller.pl?action=Contact/edit&id={cp_id}")
        assert kivi.page.is_checked(checkbox)
        kivi.shot("checked")
        set_flag(False)
        assert valid_id() == 2
    finally:
        set_flag(original)


def test_phone_and_street_saved_in_kivitendos_forms_reach_the_view_beside_the_customer_user(
    kivi: Kivi, peer: Peer
) -> None:
    """Migration 0008: kivitendo's contact form (a new phone) and customer form (a new street) write every column;
    the view shows both at once while the searched customer user row keeps its version (ctid, xmin)."""
    rows = peer.query(
        "SELECT c.cp_id, c.cp_phone1, cu.id AS customer_id, cu.street, u.login FROM contacts c"
        " JOIN customer_contacts cc ON cc.contact_id = c.cp_id JOIN customer cu ON cu.id = cc.customer_id"
        " JOIN kivi_otrs.customer_user u ON u.cp_id = c.cp_id AND u.customer_db_id = cu.id"
        " WHERE cu.customernumber = %s ORDER BY c.cp_id LIMIT 1",
        (peer.customer,),
    )
    if not rows:
        pytest.skip(f"customer {peer.customer} has no contact that is the primary contact of an OTRS login")
    row = rows[0]
    version = "SELECT ctid::text, xmin::text FROM kivi_otrs.customer_user WHERE login = %s"
    before = peer.query(version, (row["login"],))
    phone, street = "+49 30 0008-1", "Nebenweg 8"

    def save(path: str, field: str, value: str) -> None:
        kivi.goto(path)
        kivi.page.fill(field, value)
        kivi.actionbar_and_wait_for_page(kivi.save_label())

    contact_form = f"controller.pl?action=Contact/edit&id={row['cp_id']}"
    customer_form = f"controller.pl?action=CustomerVendor/edit&db=customer&id={row['customer_id']}"
    try:
        save(contact_form, "#contact_cp_phone1", phone)
        save(customer_form, "#cv_street", street)
        shown = peer.query("SELECT cp_phone1, street FROM kivi_otrs.otrs_customer_contacts WHERE login = %s", (row["login"],))
        assert shown == [{"cp_phone1": phone, "street": street}]
        assert peer.query(version, (row["login"],)) == before
        kivi.shot("details-saved")
    finally:
        save(contact_form, "#contact_cp_phone1", row["cp_phone1"] or "")
        save(customer_form, "#cv_street", row["street"] or "")


def test_button_inserts_positions_and_saving_bills_them_once(kivi: Kivi, peer: Peer) -> None:
    """A click inserts one priced row per ticket with a summary; saving links the ledger, recurring mode 'once'."""
    kivi.new_sales_order(peer.customer)
    answer = kivi.click_button()
    numbers = require_tickets(answer, peer)
    assert kivi.row_count() == len(answer.positions)
    texts = kivi.page.eval_on_selector_all(ROW_LONGDESCRIPTION, "els => els.map(e => e.value)")
    for number in numbers:
        assert any(number in text for text in texts), f"ticket {number} not in the rows"
    summary = kivi.flash("info")
    lang = TEXTS[kivi.language()]
    assert lang["new"].format(n=len(numbers)) in summary
    assert lang["inserted"] in summary
    assert {r["state"] for r in live(ledger(peer, numbers)).values()} == {"reserved"}
    kivi.shot("inserted")

    order_id = kivi.save_order()
    kivi.shot("saved")
    entries = live(ledger(peer, numbers))
    assert sorted(entries) == sorted(numbers)
    for number, entry in entries.items():
        assert entry["state"] == "billed", (number, entry)
        assert entry["oe_id"] == order_id
    modes = peer.query(
        "SELECT id, recurring_billing_mode::text AS mode FROM orderitems WHERE id = ANY(%s)",
        ([e["orderitems_id"] for e in entries.values()],),
    )
    assert len(modes) == len(numbers)
    assert {m["mode"] for m in modes} == {"once"}


def test_second_click_offers_nothing_and_names_the_billing_order(kivi: Kivi, peer: Peer) -> None:
    """After saving, a click on the saved order or on a new order adds nothing and says "billed in order N"."""
    order_id, numbers = order_with_tickets(kivi)
    expected = TEXTS[kivi.language()]["in_order"].format(ordnumber=ordnumber(peer, order_id))
    rows = kivi.row_count()

    again = kivi.click_button()
    assert again.status == 200 and again.positions == []
    assert kivi.row_count() == rows
    assert TEXTS[kivi.language()]["billed"] in kivi.flash("warning")
    assert expected in kivi.flash("warning")

    kivi.new_sales_order(peer.customer)
    other = kivi.click_button()
    assert other.status == 200 and other.positions == []
    assert kivi.row_count() == 0
    summary = kivi.flash("warning")
    kivi.shot("second-click")
    for number in numbers:
        assert f"{number} ({expected})" in summary, summary
    assert {e["state"] for e in live(ledger(peer, numbers)).values()} == {"billed"}


def test_save_as_new_is_refused_with_kivi_otrs_message(kivi: Kivi, peer: Peer) -> None:
    """ "Als neu speichern" of an order with ticket rows is refused; kivitendo shows kivi-otrs' one-line reason."""
    order_id, numbers = order_with_tickets(kivi)
    orders_before = peer.query("SELECT count(*) AS n FROM oe")[0]["n"]
    ledger_before = ledger(peer)

    error = kivi.save_as_new_refused()
    kivi.shot("refused")
    assert "kivi-otrs: Ticket" in error
    assert f"ist bereits abgerechnet in Auftrag {ordnumber(peer, order_id)}" in error
    assert any(number in error for number in numbers)
    assert kivi.order_id() == order_id
    assert peer.query("SELECT count(*) AS n FROM oe")[0]["n"] == orders_before
    assert ledger(peer) == ledger_before


def test_deleting_a_position_releases_its_ticket(kivi: Kivi, peer: Peer) -> None:
    """Removing one ticket row and saving releases that ticket only; the button offers it again."""
    order_id, numbers = order_with_tickets(kivi)
    gone = numbers[0]
    kivi.delete_row_with(gone)
    kivi.save_order()
    entries = {r["ticket_number"]: r for r in ledger(peer, numbers) if r["oe_id"] == order_id}
    assert entries[gone]["state"] == "released"
    assert entries[gone]["release_reason"] == "position deleted"
    for number in numbers[1:]:
        assert entries[number]["state"] == "billed"

    answer = kivi.click_button()
    assert ticket_numbers(answer) == [gone]
    kivi.shot("offered-again")


def test_invoiced_order_deleted_keeps_its_tickets_invoiced(kivi: Kivi, peer: Peer) -> None:
    """Order -> invoice -> post -> delete the order: the tickets stay invoiced and the button offers nothing."""
    order_id, numbers = order_with_tickets(kivi)
    kivi.actionbar_and_wait_for_page("Speichern und Rechnung erfassen")
    kivi.actionbar_and_wait_for_page("Buchen")
    kivi.shot("invoice-posted")
    entries = live(ledger(peer, numbers))
    assert {e["state"] for e in entries.values()} == {"invoiced"}, entries
    invoice_ids = {e["invoice_id"] for e in entries.values()}
    assert len(invoice_ids) == 1
    invnumber = peer.query("SELECT invnumber FROM ar WHERE id = %s", (invoice_ids.pop(),))[0]["invnumber"]

    kivi.delete_order(order_id)
    assert peer.query("SELECT 1 FROM oe WHERE id = %s", (order_id,)) == []
    after = live(ledger(peer, numbers))
    assert sorted(after) == sorted(numbers)
    assert {e["state"] for e in after.values()} == {"invoiced"}, after

    kivi.new_sales_order(peer.customer)
    answer = kivi.click_button()
    assert answer.status == 200 and answer.positions == []
    summary = kivi.flash("warning")
    kivi.shot("nothing-offered")
    assert TEXTS[kivi.language()]["in_invoice"].format(invnumber=invnumber) in summary, summary


def test_periodic_invoice_job_puts_each_ticket_into_exactly_one_invoice(kivi: Kivi, peer: Peer) -> None:
    """An order with monthly periodic invoices: kivitendo's CreatePeriodicInvoices job bills each ticket once."""
    jobs = peer.query("SELECT id FROM background_jobs WHERE package_name = 'CreatePeriodicInvoices'")
    if not jobs:
        pytest.skip("no CreatePeriodicInvoices background job in this client")
    kivi.new_sales_order(peer.customer)
    kivi.page.locator("button:has-text('Konfigurieren'), input[value='Konfigurieren']").first.click()
    kivi.page.locator("[name=start_date_as_date]").wait_for(state="visible")
    if not kivi.page.is_checked("[name=active]"):
        kivi.page.check("[name=active]")
    kivi.page.select_option("[name=periodicity]", "m")
    start = kivi.page.evaluate(
        "() => { const d = new Date(); d.setDate(1); d.setMonth(d.getMonth() - 1);"
        " return '01.' + String(d.getMonth() + 1).padStart(2, '0') + '.' + d.getFullYear(); }"
    )
    kivi.page.fill("[name=start_date_as_date]", start)
    kivi.shot("periodic-config")
    kivi.page.locator("[onclick*=assign_periodic_invoices_config]").first.click()
    kivi.page.wait_for_function("() => $('#order_periodic_invoices_config').val() !== ''")

    numbers = require_tickets(kivi.click_button(), peer)
    order_id = kivi.save_order()
    config = peer.query("SELECT id FROM periodic_invoices_configs WHERE oe_id = %s", (order_id,))
    assert config, "order saved without its periodic invoices configuration"
    config_id = config[0]["id"]
    try:
        entries = live(ledger(peer, numbers))
        modes = peer.query(
            "SELECT recurring_billing_mode::text AS mode FROM orderitems WHERE id = ANY(%s)",
            ([e["orderitems_id"] for e in entries.values()],),
        )
        assert {m["mode"] for m in modes} == {"once"}

        kivi.goto(f"controller.pl?action=BackgroundJob/execute&id={jobs[0]['id']}")
        kivi.shot("job-run")
        wait_for(
            lambda: len(peer.query("SELECT 1 FROM periodic_invoices WHERE config_id = %s", (config_id,))) >= 2,
            "two periodic invoices (previous and current month)",
        )
        invoices = peer.query(
            "SELECT pi.ar_id, pi.period_start_date FROM periodic_invoices pi WHERE pi.config_id = %s", (config_id,)
        )
        items = peer.query(
            "SELECT trans_id, longdescription FROM invoice WHERE trans_id = ANY(%s)", ([i["ar_id"] for i in invoices],)
        )
        for number in numbers:
            holding = [item["trans_id"] for item in items if number in (item["longdescription"] or "")]
            assert len(holding) == 1, f"ticket {number} is in {len(holding)} of the invoices {invoices}"
        after = live(ledger(peer, numbers))
        assert {e["state"] for e in after.values()} == {"invoiced"}, after
        assert {e["invoice_id"] for e in after.values()} <= {i["ar_id"] for i in invoices}
    finally:
        # the job must not bill this order again in later months
        peer.query("UPDATE periodic_invoices_configs SET active = false WHERE id = %s", (config_id,))


def test_button_in_another_client_never_reads_or_reserves_this_clients_tickets(
    new_kivi: Callable[[str], Kivi], peer: Peer, fresh_ledger: None
) -> None:
    """In a second client (Mandant) the button is served from that client's database only, or refused."""
    if not (peer.other_client and peer.other_dsn):
        pytest.skip("set KIVI_OTRS_KIVITENDO_OTHER_CLIENT and KIVI_OTRS_KIVITENDO_OTHER_DSN for the two-client check")
    main_customer_id = peer.query("SELECT id FROM customer WHERE customernumber = %s", (peer.customer,))[0]["id"]
    # the sharpest case: a customer of the other client with the same id as this client's test customer
    others = peer.query(
        "SELECT id, customernumber FROM customer ORDER BY (id = %s) DESC, id LIMIT 1", (main_customer_id,), dsn=peer.other_dsn
    )
    if not others:
        pytest.skip(f"client {peer.other_client} has no customer")
    other = others[0]
    assert other["customernumber"] != peer.customer, "use a different customer number in the other client"
    this_clients_tickets = {r["ticket_number"] for r in ledger(peer)}
    before = peer.query("SELECT * FROM kivi_otrs.ledger ORDER BY id")
    has_schema = bool(peer.query("SELECT 1 FROM pg_namespace WHERE nspname = 'kivi_otrs'", dsn=peer.other_dsn))
    if has_schema:
        release_ledger(peer, other["customernumber"], dsn=peer.other_dsn)

    session = new_kivi(peer.other_client)
    try:
        session.new_sales_order(other["customernumber"])
        answer = session.click_button()
        session.shot("click")
        if answer.status == 200:
            offered = set(ticket_numbers(answer)) | {str(p.get("longdescription", "")) for p in answer.positions}
            assert not any(t in text for t in this_clients_tickets for text in offered), answer.body
            for entry in answer.body.get("preview", {}).get("billed", []):
                assert entry.get("ticket_number") not in this_clients_tickets, entry
            if has_schema and answer.positions:
                reserved = peer.query("SELECT customer_number FROM kivi_otrs.ledger WHERE state = 'reserved'", dsn=peer.other_dsn)
                assert {r["customer_number"] for r in reserved} == {other["customernumber"]}
        else:
            assert "kivi-otrs:" in session.flash("error")
        assert peer.query("SELECT * FROM kivi_otrs.ledger ORDER BY id") == before
    finally:
        if has_schema:
            release_ledger(peer, other["customernumber"], dsn=peer.other_dsn)


def order_items(peer: Peer, order_id: int) -> list[dict[str, Any]]:
    return peer.query(
        "SELECT id, parts_id, position, description, longdescription, qty, sellprice,"
        " recurring_billing_mode::text AS mode FROM orderitems WHERE trans_id = %s ORDER BY position, id",
        (order_id,),
    )


def test_quotation_keeps_tickets_reserved_and_its_order_confirmation_bills_them(kivi: Kivi, peer: Peer) -> None:
    """Quotation with ticket rows saved: still reserved; "Speichern und Auftragsbestätigung" + save bills the order."""
    kivi.new_sales_order(peer.customer, record_type="sales_quotation")
    assert not kivi.page.locator(BUTTON).is_visible(), "the button is meant for sales orders only"
    answer = kivi.add_positions_as_the_button_does()
    numbers = require_tickets(answer, peer)
    assert kivi.row_count() == len(answer.positions)
    quotation_id = kivi.save_order()
    kivi.shot("quotation-saved")
    assert peer.query("SELECT record_type::text AS t FROM oe WHERE id = %s", (quotation_id,))[0]["t"] == "sales_quotation"
    assert len(order_items(peer, quotation_id)) == len(numbers)
    reserved = live(ledger(peer, numbers))
    assert sorted(reserved) == sorted(numbers)
    for number, entry in reserved.items():
        assert entry["state"] == "reserved", (number, entry)
        assert entry["oe_id"] is None and entry["orderitems_id"] is None, (number, entry)

    label = "Speichern und Auftragsbestätigung"
    kivi.actionbar_and_wait_for_page(label)
    assert kivi.order_id() is None, "the order confirmation form should not be saved yet"
    assert kivi.row_count() == len(numbers)
    order_id = kivi.save_order()
    kivi.shot("order-saved")
    assert order_id != quotation_id
    assert peer.query("SELECT record_type::text AS t FROM oe WHERE id = %s", (order_id,))[0]["t"] == "sales_order"
    items = order_items(peer, order_id)
    entries = live(ledger(peer, numbers))
    assert sorted(entries) == sorted(numbers)
    for number, entry in entries.items():
        assert entry["state"] == "billed", (number, entry)
        assert entry["oe_id"] == order_id, (number, entry)
    assert sorted(e["orderitems_id"] for e in entries.values()) == sorted(i["id"] for i in items)
    assert {i["mode"] for i in items} == {"once"}
    assert peer.query(
        "SELECT 1 FROM record_links WHERE from_table = 'oe' AND from_id = %s AND to_table = 'oe' AND to_id = %s",
        (quotation_id, order_id),
    )


def test_delivery_order_from_an_order_leaves_ledger_and_positions_alone(kivi: Kivi, peer: Peer) -> None:
    """Order -> "Speichern und Lieferschein" -> save: the tickets stay billed on the order's positions."""
    order_id, numbers = order_with_tickets(kivi)
    ledger_before = ledger(peer)
    items_before = order_items(peer, order_id)

    names = kivi.actionbar_names()
    labels = [n for n in names if n.startswith("Speichern und Lieferschein")]
    assert labels, f"no delivery order workflow in {names}"
    kivi.actionbar_and_wait_for_page(labels[0])
    kivi.actionbar_and_wait_for_page(kivi.save_label())
    kivi.shot("delivery-order-saved")
    delivery_orders = peer.query(
        "SELECT to_id AS id FROM record_links WHERE from_table = 'oe' AND from_id = %s AND to_table = 'delivery_orders'",
        (order_id,),
    )
    assert len(delivery_orders) == 1, f"delivery order not saved: {kivi.flash()!r}"
    texts = [
        r["longdescription"] or ""
        for r in peer.query(
            "SELECT longdescription FROM delivery_order_items WHERE delivery_order_id = %s", (delivery_orders[0]["id"],)
        )
    ]
    for number in numbers:
        assert any(number in text for text in texts), f"ticket {number} not in the delivery order"
    assert ledger(peer) == ledger_before
    assert order_items(peer, order_id) == items_before
    assert {e["state"] for e in live(ledger(peer, numbers)).values()} == {"billed"}


def test_longdescription_editor_keeps_the_position_billed_and_save_as_new_is_refused(kivi: Kivi, peer: Peer) -> None:
    """Editing a ticket row's text in the editor drops the marker; the row stays billed; a copy is refused (digest)."""
    order_id, numbers = order_with_tickets(kivi)
    before = live(ledger(peer, numbers))
    ids_before = [i["id"] for i in order_items(peer, order_id)]
    number = numbers[0]
    index = kivi.row_index_with(number)
    assert index == 0, "the first row should hold the first ticket"

    kivi.page.locator("[onclick*='show_longdescription_dialog']").nth(index).click()
    dialog = kivi.page.locator("#edit_longdescription_dialog")
    editable = dialog.locator("[contenteditable=true]").first
    editable.wait_for(state="visible")
    kivi.shot("editor")
    editable.click()
    kivi.page.keyboard.press("Control+End")
    kivi.page.keyboard.type(" (geprüft)")
    # CKEditor copies its text back to the textarea when it loses focus (a person's mouse-down on "Übernehmen"
    # does that before the click; playwright's click is too quick for the editor's deferred blur)
    kivi.page.locator("#popup_edit_longdescription_runningnumber").click()
    kivi.page.wait_for_function("() => $('#popup_edit_longdescription_input').val().includes('(geprüft)')")
    dialog.locator("[onclick*='set_longdescription']").first.click()
    dialog.wait_for(state="hidden")
    kivi.page.wait_for_function("sel => document.querySelectorAll(sel)[0].value.includes('(geprüft)')", arg=ROW_LONGDESCRIPTION)
    assert kivi.save_order() == order_id
    kivi.shot("edited-saved")

    assert [i["id"] for i in order_items(peer, order_id)] == ids_before
    stored = peer.query("SELECT longdescription FROM orderitems WHERE id = %s", (before[number]["orderitems_id"],))
    text = stored[0]["longdescription"] or ""
    assert "(geprüft)" in text and number in text, text
    assert "kivi-otrs:" not in text and "<!--" not in text, text
    after = live(ledger(peer, numbers))
    assert sorted(after) == sorted(numbers)
    for ticket, entry in after.items():
        assert entry["state"] == "billed", (ticket, entry)
        assert entry["oe_id"] == order_id
        assert entry["orderitems_id"] == before[ticket]["orderitems_id"], (ticket, entry, before[ticket])

    orders_before = peer.query("SELECT count(*) AS n FROM oe")[0]["n"]
    ledger_before = ledger(peer)
    error = kivi.save_as_new_refused()
    kivi.shot("save-as-new-refused")
    assert f"kivi-otrs: Ticket {number} ist bereits abgerechnet in Auftrag {ordnumber(peer, order_id)}" in error, error
    assert kivi.order_id() == order_id
    assert peer.query("SELECT count(*) AS n FROM oe")[0]["n"] == orders_before
    assert ledger(peer) == ledger_before


def test_monthly_run_draft_opens_and_saves_in_kivitendo_with_tickets_still_billed_once(
        kivi: Kivi, peer: Peer) -> None:
    """kivi-otrs bill (the chunked, set-based run) writes a draft order; kivitendo opens it, saving it recalculates
    the totals and the ledger keeps every ticket billed on that order exactly once; a second run adds nothing."""
    if not os.environ.get("KIVI_OTRS_OTRS_PASSWORD"):
        pytest.skip("set KIVI_OTRS_OTRS_PASSWORD (the agent of the client's OTRS settings) for the monthly run")
    from kivi_otrs import billing_run

    summary = billing_run.run(peer.dsn, "previous-month", customers=[peer.customer], user="realtest")
    result = {c.customer_number: c for c in summary.customers}.get(peer.customer)
    assert result is not None and result.status == "billed", summary.text()
    entries = live(ledger(peer))
    order_id = {e["oe_id"] for e in entries.values()}
    assert len(order_id) == 1, entries
    order = order_id.pop()
    kivi.created_orders.append(order)
    assert {e["state"] for e in entries.values()} == {"billed"}
    kivi.open_order(order)
    assert kivi.row_count() == result.positions
    kivi.shot("bill-draft")
    assert kivi.save_order() == order
    after = live(ledger(peer))
    assert sorted(after) == sorted(entries)
    assert {(e["state"], e["oe_id"]) for e in after.values()} == {("billed", order)}
    items = peer.query("SELECT count(*) AS n FROM orderitems WHERE id = ANY(%s)",
                       ([e["orderitems_id"] for e in after.values()],))
    assert items[0]["n"] == len(after)
    assert peer.query("SELECT amount > 0 AS priced FROM oe WHERE id = %s", (order,))[0]["priced"]
    again = billing_run.run(peer.dsn, "previous-month", customers=[peer.customer], user="realtest")
    assert [(c.status, c.positions) for c in again.customers] == [("nothing", 0)], again.text()
