"""``Kernel/Config/Files/ZZZKiviOtrs.pm``: the customer backends as a module Znuny loads as it is.

Znuny 7.1.7 (``Kernel/Config/Defaults.pm``, ``new``) globs ``Kernel/Config/Files/*.pm`` after
``Kernel/Config.pm``, loads each file with ``require``, and calls ``<Package>->Load($Self)`` with the config
object, skipping (with a message on STDERR) a file whose ``Load`` dies. Files are taken in name
order, those with "Ticket" in the name first, so ``ZZZKiviOtrs.pm`` comes after SysConfig's
``ZZZAAuto.pm`` and its keys win. OTRS 6, Znuny 6.5 and OTOBO inherit that loader from OTRS
(read in Znuny 7.1.7's tree and run there; the others not yet tried).

The database password of the LOGIN role is not in the module: ``Load`` reads it from a file
(``--password-file``) each time the configuration is built, and refuses to define the
backends when it cannot. Znuny falls back to its *own* database password when a backend's
``Password`` is empty, so an empty password file is refused as well.

The column names come from :data:`CUSTOMER_USER_MAP` and :data:`COMPANY_MAP`; a test checks
every one of them against the installed views, so the module and the views cannot drift apart.
``Params`` must not carry ``CaseSensitive``: Znuny passes ``Params`` to its DB layer, where it
means "the database compares case-insensitively" and drops ``LOWER()`` from searches.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass

from psycopg import conninfo

from .errors import ConfigError

USER_VIEW = "kivi_otrs.otrs_customer_contacts"
COMPANY_VIEW = "kivi_otrs.otrs_customer_companies"
AUTH_VIEW = "kivi_otrs.otrs_customer_auth"
AUTH_KEY = "login"
AUTH_PASSWORD = "pw"  # noqa: S105 - a column name


@dataclass(frozen=True)
class MapRow:
    """One row of an OTRS backend ``Map``: [var, label, column, shown, required, type, link, readonly]."""

    var: str
    label: str
    column: str
    shown: int
    required: int
    storage: str = "var"
    link: str = ""


CUSTOMER_USER_MAP = [
    MapRow("UserTitle", "Title or salutation", "cp_title", 1, 0),
    MapRow("UserFirstname", "Firstname", "cp_givenname", 1, 1),
    MapRow("UserLastname", "Lastname", "cp_name", 1, 1),
    MapRow("UserLogin", "Username", "login", 1, 1),
    MapRow("UserEmail", "Email", "cp_email", 1, 1),
    MapRow("UserCustomerID", "CustomerID", "customernumber", 0, 1),
    MapRow("UserCustomerIDs", "CustomerIDs", "customer_ids", 1, 0),
    MapRow("UserPhone", "Phone", "cp_phone1", 1, 0),
    MapRow("UserMobile", "Mobile", "cp_mobile1", 1, 0),
    MapRow("UserFax", "Fax", "cp_fax", 1, 0),
    MapRow("UserDepartment", "Department", "department", 1, 0),
    MapRow("UserPosition", "Position", "position", 1, 0),
    MapRow("UserGender", "Gender", "gender", 0, 0),
    MapRow("UserCompany", "Company", "name", 1, 0),
    MapRow("UserStreet", "Street", "street", 1, 0),
    MapRow("UserZip", "Zip", "zipcode", 1, 0),
    MapRow("UserCity", "City", "city", 1, 0),
    MapRow("UserCountry", "Country", "country", 1, 0),
    MapRow("UserGLN", "GLN", "gln", 0, 0),
    MapRow("ValidID", "Valid", "cp_valid_id", 0, 1, "int"),
]

COMPANY_MAP = [
    MapRow("CustomerID", "CustomerID", "customer_id", 0, 1),
    MapRow("CustomerCompanyName", "Customer", "name", 1, 1),
    MapRow("CustomerCompanyDepartment", "Department", "department", 1, 0),
    MapRow("CustomerCompanyStreet", "Street", "street", 1, 0),
    MapRow("CustomerCompanyZIP", "Zip", "zipcode", 1, 0),
    MapRow("CustomerCompanyCity", "City", "city", 1, 0),
    MapRow("CustomerCompanyCountry", "Country", "country", 1, 0),
    MapRow("CustomerCompanyURL", "URL", "homepage", 1, 0, link="[% Data.CustomerCompanyURL | html %]"),
    MapRow("CustomerCompanyComment", "Comment", "comments", 1, 0),
    MapRow("ValidID", "Valid", "valid_id", 0, 1, "int"),
]

USER_KEYS = {
    "CustomerKey": "login",
    "CustomerID": "customernumber",
    "CustomerValid": "cp_valid_id",
}
USER_LIST_FIELDS = ["cp_givenname", "cp_name", "cp_email"]
USER_SEARCH_FIELDS = ["search_text"]
USER_POSTMASTER_FIELDS = ["cp_email"]
USER_NAME_FIELDS = ["cp_title", "cp_givenname", "cp_name"]
COMPANY_KEYS = {"CustomerCompanyKey": "customer_id", "CustomerCompanyValid": "valid_id"}
COMPANY_LIST_FIELDS = ["customer_id", "name"]
COMPANY_SEARCH_FIELDS = ["search_text"]


def referenced_columns() -> dict[str, set[str]]:
    """Every view column the generated configuration names, per view."""
    user = {row.column for row in CUSTOMER_USER_MAP} | set(USER_KEYS.values())
    user |= set(USER_LIST_FIELDS + USER_SEARCH_FIELDS + USER_POSTMASTER_FIELDS + USER_NAME_FIELDS)
    company = {row.column for row in COMPANY_MAP} | set(COMPANY_KEYS.values())
    company |= set(COMPANY_LIST_FIELDS + COMPANY_SEARCH_FIELDS)
    return {USER_VIEW: user, COMPANY_VIEW: company, AUTH_VIEW: {AUTH_KEY, AUTH_PASSWORD}}


def _perl_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _perl_list(values: list[str]) -> str:
    return "[" + ", ".join(_perl_str(v) for v in values) + "]"


def _map_lines(rows: list[MapRow], with_link_target: bool) -> list[str]:
    lines = []
    for row in rows:
        cells = [
            _perl_str(row.var), _perl_str(row.label), _perl_str(row.column), str(row.shown),
            str(row.required), _perl_str(row.storage), _perl_str(row.link), "1",
        ]
        if with_link_target:
            cells += ["undef", "undef"]
        lines.append(f"        [ {', '.join(cells)} ],")
    return lines


def dbi_dsn(dsn: str) -> str:
    """``DBI:Pg:dbname=...;host=...;port=...`` from a libpq DSN (no user, no password)."""
    params = conninfo.conninfo_to_dict(dsn)
    parts = [f"dbname={params.get('dbname', '')}"]
    if params.get("host"):
        parts.append(f"host={params['host']}")
    if params.get("port"):
        parts.append(f"port={params['port']}")
    if params.get("sslmode"):
        parts.append(f"sslmode={params['sslmode']}")
    return "DBI:Pg:" + ";".join(parts)


MODULE_NAME = "ZZZKiviOtrs"
DEFAULT_PASSWORD_FILE = "/etc/kivi-otrs/otrs-db-password"  # noqa: S105 - a path, not a password


def module_path(module: str = MODULE_NAME) -> str:
    """Where the module goes, relative to the Znuny/OTRS/OTOBO home."""
    return f"Kernel/Config/Files/{module}.pm"


def auth_lines(dsn: str, db_user: str, slot: int = 1) -> list[str]:
    """The ``Customer::AuthModule<slot>`` block of ``Load`` (customer portal login), for inside ``sub Load``.

    Znuny 7.1.7 (``Kernel/System/CustomerAuth.pm``) tries ``Customer::AuthModule``, ``...1`` .. ``...10`` in
    turn; ``Kernel/System/CustomerAuth/DB.pm`` reads ``Customer::AuthModule::DB::<Key><slot>`` and runs
    ``SELECT pw, login FROM kivi_otrs.otrs_customer_auth WHERE login = ?`` on its own connection. It detects
    the ``BCRYPT:`` form from the stored value; ``CryptType`` only has to be anything but ``plain``. Uses
    ``$Password`` read from the password file earlier in ``Load``.
    """
    suffix = "" if slot == 0 else str(slot)
    values = [
        (f"Customer::AuthModule{suffix}", _perl_str("Kernel::System::CustomerAuth::DB")),
        (f"Customer::AuthModule::DB::Table{suffix}", _perl_str(AUTH_VIEW)),
        (f"Customer::AuthModule::DB::CustomerKey{suffix}", _perl_str(AUTH_KEY)),
        (f"Customer::AuthModule::DB::CustomerPassword{suffix}", _perl_str(AUTH_PASSWORD)),
        (f"Customer::AuthModule::DB::CryptType{suffix}", _perl_str("bcrypt")),
        (f"Customer::AuthModule::DB::DSN{suffix}", _perl_str(dbi_dsn(dsn))),
        (f"Customer::AuthModule::DB::User{suffix}", _perl_str(db_user)),
        (f"Customer::AuthModule::DB::Password{suffix}", "$Password"),
    ]
    width = max(len(f"$Self->{{{_perl_str(key)}}}") for key, _ in values)
    return [
        "    # Customer portal login: contacts that may report tickets, with a password set by",
        "    # kivi-otrs portal set|reset (bcrypt). The backend is read-only: the customer interface's",
        "    # password change and lost-password functions fail for these logins (Znuny's SetPassword",
        "    # refuses ReadOnly backends), passwords are set with kivi-otrs portal.",
        *[f"    {'$Self->{' + _perl_str(key) + '}':<{width}} = {value};" for key, value in values],
    ]


def render(dsn: str, db_user: str, reader_role: str, slot: int = 1, cache_ttl: int = 300,
           password_file: str = DEFAULT_PASSWORD_FILE, module: str = MODULE_NAME, portal_login: bool = False) -> str:
    """The Perl module ``Kernel/Config/Files/<module>.pm``; it names the password file, never a password.

    ``portal_login`` adds the ``Customer::AuthModule<slot>`` block (:func:`auth_lines`).
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", module):
        raise ConfigError(f"module name {module!r} is not a Perl package name (letters, digits, _)")
    if not password_file.startswith("/"):
        raise ConfigError(f"--password-file {password_file!r} must be an absolute path (Znuny's working "
                          "directory differs between web server, daemon and console)")
    suffix = "" if slot == 0 else str(slot)
    backends = f"CustomerUser{suffix}/CustomerCompany{suffix}"
    if portal_login:
        backends += f"/Customer::AuthModule{suffix}"
    params = [
        f"            DSN                 => {_perl_str(dbi_dsn(dsn))},",
        f"            User                => {_perl_str(db_user)},",
        "            Password            => $Password,",
    ]
    lines = [
        "# --",
        f"# {module_path(module)}: kivitendo contacts and customers as OTRS/Znuny/OTOBO customer",
        f"# backends {backends} (read-only views of kivi-otrs). Generated by kivi-otrs otrs-config.",
        "#",
        "# Znuny loads every Kernel/Config/Files/*.pm after Kernel/Config.pm and calls its Load;",
        "# do not paste this into Kernel/Config.pm. After installing or changing it: restart the",
        "# web server (mod_perl) and run bin/znuny.Console.pl Maint::Cache::Delete as the Znuny user.",
        "#",
        f"# The database user {db_user} must be a LOGIN role that is a member of {reader_role},",
        f"# which may read only the kivi_otrs views{' (contacts, companies, portal login)' if portal_login else ''}:",
        f"#   CREATE ROLE {db_user} LOGIN PASSWORD '...' IN ROLE {reader_role};",
        f"# Its password is read from {password_file} (first line) whenever the",
        "# configuration is loaded; make that file readable by the web server's and the Znuny",
        "# daemon's OS user only. A password of the form {...} would be taken as Znuny-encrypted.",
        "# --",
        f"package Kernel::Config::Files::{module};",
        "",
        "use strict;",
        "use warnings;",
        "no warnings 'redefine';    ## no critic",
        "use utf8;",
        "",
        "sub Load {",
        "    my ( $File, $Self ) = @_;",
        "",
        f"    my $PasswordFile = {_perl_str(password_file)};",
        "    my $Password;",
        "    if ( open my $FH, '<', $PasswordFile ) {    ## no critic",
        "        $Password = <$FH>;",
        "        close $FH;",
        "    }",
        "    else {",
        f"        die \"kivi-otrs: cannot read $PasswordFile ($!); customer backends {backends} not defined\\n\";",
        "    }",
        "    $Password = '' if !defined $Password;",
        "    $Password =~ s/[\\r\\n]+\\z//;",
        "    if ( $Password eq '' ) {",
        f"        die \"kivi-otrs: $PasswordFile is empty; customer backends {backends} not defined\\n\";",
        "    }",
        "",
        f"    $Self->{{CustomerUser{suffix}}} = {{",
        "        Name   => 'kivitendo',",
        "        Module => 'Kernel::System::CustomerUser::DB',",
        "        Params => {",
        *params,
        f"            Table               => {_perl_str(USER_VIEW)},",
        "            ForeignDB           => 1,",
        "            SearchCaseSensitive => 0,",
        "        },",
        "        ReadOnly => 1,",
        *[f"        {key} => {_perl_str(col)}," for key, col in USER_KEYS.items()],
        f"        CustomerUserListFields => {_perl_list(USER_LIST_FIELDS)},",
        f"        CustomerUserSearchFields => {_perl_list(USER_SEARCH_FIELDS)},",
        "        CustomerUserSearchPrefix => '*',",
        "        CustomerUserSearchSuffix => '*',",
        "        CustomerUserSearchListLimit => 250,",
        f"        CustomerUserPostMasterSearchFields => {_perl_list(USER_POSTMASTER_FIELDS)},",
        f"        CustomerUserNameFields => {_perl_list(USER_NAME_FIELDS)},",
        "        CustomerUserEmailUniqCheck => 0,",
        "        CustomerCompanySupport => 1,",
        f"        CacheTTL => {cache_ttl},",
        "        Map => [",
        *["    " + line for line in _map_lines(CUSTOMER_USER_MAP, with_link_target=True)],
        "        ],",
        "    };",
        "",
        f"    $Self->{{CustomerCompany{suffix}}} = {{",
        "        Name   => 'kivitendo',",
        "        Module => 'Kernel::System::CustomerCompany::DB',",
        "        Params => {",
        *params,
        f"            Table               => {_perl_str(COMPANY_VIEW)},",
        "            ForeignDB           => 1,",
        "            SearchCaseSensitive => 0,",
        "        },",
        "        ReadOnly => 1,",
        *[f"        {key} => {_perl_str(col)}," for key, col in COMPANY_KEYS.items()],
        f"        CustomerCompanyListFields => {_perl_list(COMPANY_LIST_FIELDS)},",
        f"        CustomerCompanySearchFields => {_perl_list(COMPANY_SEARCH_FIELDS)},",
        "        CustomerCompanySearchPrefix => '*',",
        "        CustomerCompanySearchSuffix => '*',",
        "        CustomerCompanySearchListLimit => 250,",
        f"        CacheTTL => {cache_ttl},",
        "        Map => [",
        *["    " + line for line in _map_lines(COMPANY_MAP, with_link_target=False)],
        "        ],",
        "    };",
        "",
        *([*auth_lines(dsn, db_user, slot), ""] if portal_login else []),
        "    return 1;",
        "}",
        "",
        "1;",
    ]
    return "\n".join(lines) + "\n"


def write_module(path: str, text: str) -> str:
    """Write the module with mode 0640 (atomically); as root, owned like its directory (Znuny's OS user and group).

    Returns a one-line description of what was written.
    """
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise ConfigError(f"directory {directory} does not exist; give --output a path in Kernel/Config/Files/ of the "
                          "Znuny home")
    fd, tmp = tempfile.mkstemp(prefix=".kivi-otrs-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o640)
        dir_stat = os.stat(directory)
        if os.geteuid() == 0:
            os.fchown(fd, dir_stat.st_uid, dir_stat.st_gid)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write {target}: {exc.strerror}") from None
    st = os.stat(target)
    return f"wrote {target} (mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}, gid {st.st_gid})"
