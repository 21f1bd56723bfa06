"""Opt-in tests against a running Znuny (house style 14): what Znuny itself decides, checked on the real thing.

Set ``KIVI_OTRS_ZNUNY_URL`` (e.g. http://127.0.0.1:8090/znuny/), ``KIVI_OTRS_ZNUNY_USER`` and
``KIVI_OTRS_ZNUNY_PASSWORD`` (an agent with ro on the billed queues; web service
``KIVI_OTRS_ZNUNY_WEBSERVICE``, default KivitendoBilling). Optional: ``KIVI_OTRS_ZNUNY_RW_USER`` /
``KIVI_OTRS_ZNUNY_RW_PASSWORD`` (an agent with rw), ``KIVI_OTRS_ZNUNY_TREE`` (the Znuny home, to load
configuration with Znuny's own Perl) and ``KIVI_OTRS_ZNUNY_KIVI_DSN`` (the kivitendo database with
kivi-otrs as Znuny's LOGIN role sees it, for customer searches through Znuny's CustomerUser::DB) and
``KIVI_OTRS_ZNUNY_KIVI_OWNER_DSN`` (the same database as the role that installed kivi-otrs, for a customer
portal login with a password set by ``kivi-otrs portal set``; the Znuny must load a module from
``kivi-otrs otrs-config --portal-login``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from kivi_otrs import otrs_config
from kivi_otrs.config import OtrsSettings
from kivi_otrs.otrs import OtrsClient

URL = os.environ.get("KIVI_OTRS_ZNUNY_URL", "")
USER = os.environ.get("KIVI_OTRS_ZNUNY_USER", "")
PASSWORD = os.environ.get("KIVI_OTRS_ZNUNY_PASSWORD", "")
TREE = os.environ.get("KIVI_OTRS_ZNUNY_TREE", "")
KIVI_DSN = os.environ.get("KIVI_OTRS_ZNUNY_KIVI_DSN", "")

pytestmark = pytest.mark.skipif(
    not (URL and USER and PASSWORD),
    reason="no real Znuny: set KIVI_OTRS_ZNUNY_URL, KIVI_OTRS_ZNUNY_USER and KIVI_OTRS_ZNUNY_PASSWORD")


def settings(user: str = USER, password: str = PASSWORD, **overrides: Any) -> OtrsSettings:
    values: dict[str, Any] = {"base_url": URL if URL.endswith("/") else URL + "/",
                              "webservice": os.environ.get("KIVI_OTRS_ZNUNY_WEBSERVICE", "KivitendoBilling"),
                              "user": user, "password": password, "read_timeout": 60.0}
    values.update(overrides)
    return OtrsSettings(**values)


def need_tree() -> Path:
    if not TREE:
        pytest.skip("set KIVI_OTRS_ZNUNY_TREE to the Znuny home to load configuration with Znuny's own Perl")
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed")
    return Path(TREE)


def as_tree_owner(tree: Path) -> list[str]:
    """Run Znuny's Perl as the OS user owning the tree (cache and log files stay theirs); root only."""
    owner = tree.stat().st_uid
    if os.geteuid() != 0 or owner == 0:
        return []
    import pwd

    return ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"]


def znuny_perl(tree: Path, script: str, *args: str) -> dict[str, Any]:
    command = [*as_tree_owner(tree), "perl", "-I", str(tree), "-I", str(tree / "Kernel" / "cpan-lib"), "-e", script, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_wrongly_cased_state_is_named_by_the_states_check() -> None:
    """Real TicketSearch returns nothing for the whole list when one name is unknown; check names that name."""
    with OtrsClient(settings(), retries=0) as client:
        if not client.search({"States": ["closed successful"], "Limit": 1}):
            pytest.skip("the Znuny has no ticket in 'closed successful' visible to the agent")
    with OtrsClient(settings(states=("closed successful", "Closed Successful")), retries=0) as client:
        rows = {what.split(" ")[0]: (ok, detail) for what, ok, detail in client.check(None)}
    ok, detail = rows["TicketSearch"]
    assert not ok and "OTRS knows no state 'Closed Successful'" in detail, detail


def test_write_permission_probe_tells_ro_from_rw_agents() -> None:
    """A change-free TicketUpdate: AccessDenied for the ro agent, success for the rw agent, ticket unchanged."""
    with OtrsClient(settings(), retries=0) as client:
        ids = client.search({"States": ["closed successful"], "Limit": 1})
        if not ids:
            pytest.skip("the Znuny has no ticket in 'closed successful' visible to the agent")
        before = client.get(ids)[0]
        ro_can = client.can_write(ids[0])
    rw_user = os.environ.get("KIVI_OTRS_ZNUNY_RW_USER", "")
    if rw_user:
        with OtrsClient(settings(rw_user, os.environ.get("KIVI_OTRS_ZNUNY_RW_PASSWORD", "")), retries=0) as client:
            assert client.can_write(ids[0]) is True
            after = client.get(ids)[0]
        assert after["Changed"] == before["Changed"] and after.get("DynamicField") == before.get("DynamicField")
    if not os.environ.get("KIVI_OTRS_ZNUNY_USER_HAS_RW"):
        assert ro_can is False, "set KIVI_OTRS_ZNUNY_USER_HAS_RW=1 if KIVI_OTRS_ZNUNY_USER has rw"


LOAD_WITH_ZNUNY = r"""
use strict; use warnings;
use JSON::PP;
use Kernel::Config;
my $Config = Kernel::Config->new();
my %Out;
for my $Key (qw(CustomerUser CustomerUser1 CustomerUser2 CustomerCompany1)) {
    my $Value = $Config->Get($Key) or next;
    $Out{$Key} = { Module => $Value->{Module}, Table => $Value->{Params}->{Table},
                   HasPassword => ($Value->{Params}->{Password} // '') ne '' ? 1 : 0,
                   CaseSensitive => exists $Value->{Params}->{CaseSensitive} ? 1 : 0 };
}
print JSON::PP->new->canonical->encode(\%Out);
"""


def test_installed_module_is_loaded_by_znunys_own_kernel_config() -> None:
    """Kernel::Config->new (Znuny's loader) picks up Kernel/Config/Files/ZZZKiviOtrs.pm and its backends."""
    tree = need_tree()
    if not (tree / otrs_config.module_path()).exists():
        pytest.skip(f"{tree / otrs_config.module_path()} is not installed (kivi-otrs otrs-config -o ...)")
    found = znuny_perl(tree, LOAD_WITH_ZNUNY)
    ours = [value for value in found.values() if value["Table"] == otrs_config.USER_VIEW]
    assert ours and all(v["HasPassword"] == 1 and v["CaseSensitive"] == 0 for v in ours), found
    assert found["CustomerUser"]["Module"] == "Kernel::System::CustomerUser::DB"  # Znuny's own backend still there


SEARCH_WITH_ZNUNY = r"""
use strict; use warnings; use utf8;
use JSON::PP;
use Kernel::System::ObjectManager;
my ($File, $Package, @Terms) = @ARGV;
local $Kernel::OM = Kernel::System::ObjectManager->new();
my $Config = $Kernel::OM->Get('Kernel::Config');
require $File;
$Package->Load($Config);    # what Kernel/Config/Defaults.pm does with every Kernel/Config/Files/*.pm
my %Out;
# Other CustomerUser backends of this Znuny (e.g. an installed kivi-otrs module with CacheTTL) answer from
# Znuny's cache for up to their CacheTTL: start from an empty customer-user cache.
my $Cache = $Kernel::OM->Get('Kernel::System::Cache');
for my $Count ( '', 1 .. 10 ) {
    $Cache->CleanUp( Type => "CustomerUser${Count}_CustomerSearch" );
    $Cache->CleanUp( Type => "CustomerUser${Count}" );
}
for my $Term (@Terms) {
    utf8::decode($Term);
    my %List = $Kernel::OM->Get('Kernel::System::CustomerUser')->CustomerSearch( Search => $Term, Valid => 1 );
    $Out{$Term} = [ sort keys %List ];
}
print JSON::PP->new->canonical->encode(\%Out);
"""


def test_capitalised_search_through_znunys_customer_user_db_finds_contacts() -> None:
    """Znuny's CustomerUser::DB with the generated backend finds a valid contact by its capitalised name."""
    tree = need_tree()
    if not KIVI_DSN:
        pytest.skip("set KIVI_OTRS_ZNUNY_KIVI_DSN to the kivitendo database as Znuny's LOGIN role reaches it")
    with psycopg.connect(KIVI_DSN) as conn:
        row = conn.execute("SELECT login, cp_name FROM kivi_otrs.otrs_customer_contacts WHERE cp_valid_id = 1 "
                           "AND length(cp_name) >= 4 AND cp_name <> upper(cp_name) ORDER BY login LIMIT 1").fetchone()
    if row is None:
        pytest.skip("no valid contact with a mixed-case name in the kivitendo database")
    login, name = str(row[0]), str(row[1])
    params = conninfo.conninfo_to_dict(KIVI_DSN)
    with tempfile.TemporaryDirectory(prefix="kivi-otrs-znuny-") as tmp:  # pytest's tmp_path is closed to other users
        found = _search(tree, Path(tmp), params, name, login)
    capitalised = name[0].upper() + name[1:4].lower()
    assert login in found[f"{capitalised}*"], found
    if name.upper().lower() == name.lower():  # ß has no single upper-case letter
        assert login in found[name.upper()], found


def _search(tree: Path, tmp_path: Path, params: dict[str, Any], name: str, login: str) -> dict[str, Any]:
    capitalised = name[0].upper() + name[1:4].lower()
    return _with_module(tree, tmp_path, params, SEARCH_WITH_ZNUNY, f"{capitalised}*", name.upper())


def _with_module(tree: Path, tmp_path: Path, params: dict[str, Any], script: str, *args: str) -> dict[str, Any]:
    """Run a Perl script in the Znuny tree with the generated backend module loaded (read role, cache off)."""
    secret = tmp_path / "pw"
    secret.write_text(f"{params.get('password', '')}\n", encoding="utf-8")
    module = "ZZZKiviOtrsRealTest"
    path = tmp_path / f"{module}.pm"
    path.write_text(otrs_config.render(KIVI_DSN, str(params.get("user", "")), "kivi_otrs_reader", slot=9, cache_ttl=0,
                                       password_file=str(secret), module=module), encoding="utf-8")
    if as_tree_owner(tree):
        owner = tree.stat()
        for item in (tmp_path, secret, path):
            os.chown(item, owner.st_uid, owner.st_gid)
    return znuny_perl(tree, script, str(path), f"Kernel::Config::Files::{module}", *args)


OWNER_DSN = os.environ.get("KIVI_OTRS_ZNUNY_KIVI_OWNER_DSN", "")


@contextlib.contextmanager
def flagged_contact(conn: psycopg.Connection[Any], givenname: str, name: str, login: str) -> Iterator[tuple[int, int]]:
    """A contact of the first customer with a number, flagged "may report tickets"; removed afterwards.
    Yields (cp_id, the flag's config id)."""
    customer = conn.execute("SELECT id FROM public.customer WHERE NOT coalesce(obsolete, false) "
                            "AND btrim(coalesce(customernumber, '')) <> '' ORDER BY id LIMIT 1").fetchone()
    flag_id = conn.execute("SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id'").fetchone()
    if customer is None or flag_id is None:
        pytest.skip("no non-obsolete customer with a number, or kivi-otrs not installed, in the kivitendo database")
    cp_id = conn.execute("INSERT INTO public.contacts (cp_givenname, cp_name, cp_email) VALUES (%s, %s, %s) "
                         "RETURNING cp_id", (givenname, name, login)).fetchone()[0]  # type: ignore[index]
    try:
        conn.execute("INSERT INTO public.customer_contacts (customer_id, contact_id, main) VALUES (%s, %s, false)",
                     (customer[0], cp_id))
        conn.execute("INSERT INTO public.custom_variables (config_id, trans_id, bool_value, sub_module) "
                     "VALUES (%s, %s, true, '')", (flag_id[0], cp_id))
        yield cp_id, flag_id[0]
    finally:
        conn.execute("DELETE FROM public.custom_variables WHERE config_id = %s AND trans_id = %s", (flag_id[0], cp_id))
        conn.execute("DELETE FROM public.customer_contacts WHERE contact_id = %s", (cp_id,))
        conn.execute("DELETE FROM public.contacts WHERE cp_id = %s", (cp_id,))


def _portal_login(login: str, password: str) -> bool:
    """Log in through the real customer.pl login form; True when Znuny opens a customer session."""
    import requests

    base = URL.rstrip("/") + "/customer.pl"
    with requests.Session() as session:
        session.get(base, timeout=60)  # sets OTRSBrowserHasCookie like a browser
        answer = session.post(base, data={"Action": "Login", "RequestedURL": "", "Lang": "en", "TimeZoneOffset": "",
                                          "User": login, "Password": password}, timeout=60, allow_redirects=True)
        answer.raise_for_status()
        return "Action=Logout" in answer.text


def test_portal_login_works_for_a_flagged_contact_and_is_refused_without_the_flag() -> None:
    """A password set with kivi-otrs portal set opens the real customer interface; unticking the flag locks it."""
    if not OWNER_DSN:
        pytest.skip("set KIVI_OTRS_ZNUNY_KIVI_OWNER_DSN to the kivitendo database Znuny's generated module reads, as the "
                    "role that installed kivi-otrs (and install the module with kivi-otrs otrs-config --portal-login)")
    import secrets
    import sys

    login = f"kivi-otrs-portal-{secrets.token_hex(4)}@example.org"
    password = f"Portal-{secrets.token_urlsafe(12)}"
    with psycopg.connect(OWNER_DSN, autocommit=True) as conn, \
            flagged_contact(conn, "Portal", "Probe", login) as (cp_id, flag_id):
        try:
            result = subprocess.run([sys.executable, "-m", "kivi_otrs", "portal", "set", login, "--password-stdin"],
                                    input=password + "\n", capture_output=True, text=True, timeout=120,
                                    env={**os.environ, "KIVI_OTRS_DSN": OWNER_DSN})
            assert result.returncode == 0, result.stderr
            assert _portal_login(login, password), "Znuny refused a flagged contact with the password just set"
            assert not _portal_login(login, password + "x")
            conn.execute("UPDATE public.custom_variables SET bool_value = false WHERE config_id = %s AND trans_id = %s",
                         (flag_id, cp_id))
            assert not _portal_login(login, password), "Znuny let a contact without the flag log in"
        finally:
            conn.execute("DELETE FROM kivi_otrs.portal_password WHERE login = %s", (login,))


def test_windows_sized_from_the_close_density_find_what_one_unlimited_search_finds() -> None:
    """October searched with a small limit (the windows split by the measured density, bursts split again)
    returns exactly the tickets one search with a large limit returns, on Znuny's own TicketSearch."""
    from datetime import date

    from kivi_otrs.period import resolve_period

    october = resolve_period(None, "UTC", date_from=date(2026, 10, 1), date_to=date(2026, 10, 31))
    with OtrsClient(settings(search_limit=10000), retries=0) as client:
        whole = client.closed_tickets(None, october)
    if len(whole.tickets) < 100:
        pytest.skip(f"the Znuny has {len(whole.tickets)} tickets closed in October 2026; the check needs 100 or more")
    with OtrsClient(settings(search_limit=25, parallel_requests=4), retries=0) as client:
        split = client.closed_tickets(None, october)
    assert sorted(t.ticket_id for t in split.tickets) == sorted(t.ticket_id for t in whole.tickets)
    assert whole.searches == 1
    # bursts make any split strategy search more than tickets/limit; halving took 53 here (304 tickets)
    assert split.searches <= 4 * len(whole.tickets) / 25 + 10, split.searches


def test_a_contact_saved_with_a_new_name_is_found_by_it_in_znuny() -> None:
    """A kivitendo contact save (the mirror writes the contact's fields straight into its customer user row)
    shows in Znuny's own CustomerUser::DB search at once: the new name finds the login, the old one does not."""
    tree = need_tree()
    if not (KIVI_DSN and OWNER_DSN):
        pytest.skip("set KIVI_OTRS_ZNUNY_KIVI_DSN and KIVI_OTRS_ZNUNY_KIVI_OWNER_DSN")
    import secrets
    import string

    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    old, new = f"Quokka{letters}", f"Wombat{letters}"
    login = f"kivi-otrs-rename-{letters}@example.org"
    with psycopg.connect(OWNER_DSN, autocommit=True) as conn, \
            flagged_contact(conn, "Rename", old, login) as (cp_id, _flag):
        params = conninfo.conninfo_to_dict(KIVI_DSN)
        with tempfile.TemporaryDirectory(prefix="kivi-otrs-znuny-") as tmp:
            assert login in _search(tree, Path(tmp), params, old, login)[f"{old[:4]}*"]
        conn.execute("UPDATE public.contacts SET cp_name = %s, mtime = now() WHERE cp_id = %s", (new, cp_id))
        with tempfile.TemporaryDirectory(prefix="kivi-otrs-znuny-") as tmp:
            found_new = _search(tree, Path(tmp), params, new, login)
        with tempfile.TemporaryDirectory(prefix="kivi-otrs-znuny-") as tmp:
            found_old = _search(tree, Path(tmp), params, old, login)
        assert login in found_new[new.upper()], found_new
        assert login not in found_old[old.upper()], found_old


def test_znuny_finds_contacts_through_the_rebuilt_search_indexes() -> None:
    """kivi-otrs reindex swaps every trigram index for a fresh one; Znuny's own CustomerUser::DB, logged in as
    the read role, finds a flagged contact by its capitalised name through them."""
    tree = need_tree()
    if not (KIVI_DSN and OWNER_DSN):
        pytest.skip("set KIVI_OTRS_ZNUNY_KIVI_DSN and KIVI_OTRS_ZNUNY_KIVI_OWNER_DSN")
    import secrets
    import string

    from kivi_otrs import migrate

    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    name, login = f"Reindex{letters}", f"kivi-otrs-reindex-{letters}@example.org"
    with psycopg.connect(OWNER_DSN, autocommit=True) as conn, flagged_contact(conn, "Index", name, login):
        files = "SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'kivi_otrs'::regnamespace AND relam = " \
                "(SELECT oid FROM pg_am WHERE amname = 'gin') ORDER BY 1"
        before = conn.execute(files).fetchall()
        rebuilt = migrate.reindex(OWNER_DSN)
        after = conn.execute(files).fetchall()
        assert sorted(rebuilt) == [r[0] for r in before] and all(a[1] != b[1] for a, b in zip(after, before, strict=True))
        params = conninfo.conninfo_to_dict(KIVI_DSN)
        with tempfile.TemporaryDirectory(prefix="kivi-otrs-znuny-") as tmp:
            found = _search(tree, Path(tmp), params, name, login)
        assert login in found[name.upper()] and login in found[f"{name[:4]}*"], found


DATA_WITH_ZNUNY = SEARCH_WITH_ZNUNY.replace(
    """    my %List = $Kernel::OM->Get('Kernel::System::CustomerUser')->CustomerSearch( Search => $Term, Valid => 1 );
    $Out{$Term} = [ sort keys %List ];""",
    """    my %Data = $Kernel::OM->Get('Kernel::System::CustomerUser')->CustomerUserDataGet( User => $Term );
    $Out{$Term} = { map { $_ => $Data{$_} } qw(UserLogin UserTitle UserPhone UserStreet UserCompany ValidID) };""",
)


def test_znuny_shows_a_phone_and_an_address_saved_beside_the_customer_user_row() -> None:
    """Migration 0008 keeps a contact's phone and title and its customer's street in narrow rows beside the searched
    customer user row; Znuny's own CustomerUserDataGet reads them through the view, fresh after a kivitendo save."""
    tree = need_tree()
    if not (KIVI_DSN and OWNER_DSN):
        pytest.skip("set KIVI_OTRS_ZNUNY_KIVI_DSN and KIVI_OTRS_ZNUNY_KIVI_OWNER_DSN")
    import secrets
    import string

    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    login = f"kivi-otrs-details-{letters}@example.org"
    with psycopg.connect(OWNER_DSN, autocommit=True) as conn, \
            flagged_contact(conn, "Detail", f"Numbat{letters}", login) as (cp_id, _flag):
        customer_id, street = conn.execute("SELECT customer_id, cu.street FROM public.customer_contacts cc "
                                           "JOIN public.customer cu ON cu.id = cc.customer_id WHERE contact_id = %s",
                                           (cp_id,)).fetchone()  # type: ignore[misc]
        row = conn.execute("SELECT ctid, xmin FROM kivi_otrs.customer_user WHERE login = %s", (login,)).fetchone()
        try:
            conn.execute("UPDATE public.contacts SET cp_phone1 = %s, cp_title = 'Dr.', mtime = now() WHERE cp_id = %s",
                         (f"+49 30 {letters}", cp_id))
            conn.execute("UPDATE public.customer SET street = %s WHERE id = %s", (f"Gasse {letters}", customer_id))
            assert conn.execute("SELECT ctid, xmin FROM kivi_otrs.customer_user WHERE login = %s", (login,)).fetchone() == row
            params = conninfo.conninfo_to_dict(KIVI_DSN)
            with tempfile.TemporaryDirectory(prefix="kivi-otrs-znuny-") as tmp:
                data = _with_module(tree, Path(tmp), params, DATA_WITH_ZNUNY, login)[login]
        finally:
            conn.execute("UPDATE public.customer SET street = %s WHERE id = %s", (street, customer_id))
        assert data["UserLogin"] == login and str(data["ValidID"]) == "1", data
        assert (data["UserPhone"], data["UserTitle"], data["UserStreet"]) == (f"+49 30 {letters}", "Dr.", f"Gasse {letters}")
