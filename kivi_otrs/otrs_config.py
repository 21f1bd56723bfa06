"""The ``Kernel/Config.pm`` blocks an OTRS admin pastes to use our views.

The column names come from :data:`CUSTOMER_USER_MAP` and :data:`COMPANY_MAP`;
a test checks every one of them against the installed views, so the printed
configuration and the views cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import conninfo

USER_VIEW = "kivi_otrs.otrs_customer_contacts"
COMPANY_VIEW = "kivi_otrs.otrs_customer_companies"


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
    return {USER_VIEW: user, COMPANY_VIEW: company}


def _perl_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _perl_list(values: list[str]) -> str:
    return "[" + ", ".join(_perl_str(v) for v in values) + "]"


def _map_lines(rows: list[MapRow], with_link_target: bool) -> list[str]:
    lines = []
    for row in rows:
        cells = [
            _perl_str(row.var), f"Translatable({_perl_str(row.label)})", _perl_str(row.column), str(row.shown),
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


def render(dsn: str, db_user: str, reader_role: str, slot: int = 1, cache_ttl: int = 300) -> str:
    """The Perl for ``Kernel/Config.pm``; the password is a placeholder, never a real one."""
    suffix = "" if slot == 0 else str(slot)
    params = [
        f"            DSN                 => {_perl_str(dbi_dsn(dsn))},",
        f"            User                => {_perl_str(db_user)},",
        "            Password            => 'SET-THE-PASSWORD-OF-' . " + _perl_str(db_user) + ",",
    ]
    lines = [
        "# --- kivi-otrs: kivitendo contacts and customers as OTRS customer backends ---",
        f"# Generated by kivi-otrs otrs-config. The database user {db_user} must be a LOGIN role",
        f"# that is a member of {reader_role}, which may read only the two kivi_otrs views:",
        f"#   CREATE ROLE {db_user} LOGIN PASSWORD '...' IN ROLE {reader_role};",
        "# Replace the Password placeholder below; kivi-otrs never prints passwords.",
        f"$Self->{{CustomerUser{suffix}}} = {{",
        "    Name   => 'kivitendo',",
        "    Module => 'Kernel::System::CustomerUser::DB',",
        "    Params => {",
        *params,
        f"            Table               => {_perl_str(USER_VIEW)},",
        "            ForeignDB           => 1,",
        "            CaseSensitive       => 0,",
        "            SearchCaseSensitive => 0,",
        "    },",
        "    ReadOnly => 1,",
        *[f"    {key} => {_perl_str(col)}," for key, col in USER_KEYS.items()],
        f"    CustomerUserListFields => {_perl_list(USER_LIST_FIELDS)},",
        f"    CustomerUserSearchFields => {_perl_list(USER_SEARCH_FIELDS)},",
        "    CustomerUserSearchPrefix => '*',",
        "    CustomerUserSearchSuffix => '*',",
        "    CustomerUserSearchListLimit => 250,",
        f"    CustomerUserPostMasterSearchFields => {_perl_list(USER_POSTMASTER_FIELDS)},",
        f"    CustomerUserNameFields => {_perl_list(USER_NAME_FIELDS)},",
        "    CustomerUserEmailUniqCheck => 0,",
        "    CustomerCompanySupport => 1,",
        f"    CacheTTL => {cache_ttl},",
        "    Map => [",
        *_map_lines(CUSTOMER_USER_MAP, with_link_target=True),
        "    ],",
        "};",
        "",
        f"$Self->{{CustomerCompany{suffix}}} = {{",
        "    Name   => 'kivitendo',",
        "    Module => 'Kernel::System::CustomerCompany::DB',",
        "    Params => {",
        *params,
        f"            Table               => {_perl_str(COMPANY_VIEW)},",
        "            ForeignDB           => 1,",
        "            CaseSensitive       => 0,",
        "    },",
        "    ReadOnly => 1,",
        *[f"    {key} => {_perl_str(col)}," for key, col in COMPANY_KEYS.items()],
        f"    CustomerCompanyListFields => {_perl_list(COMPANY_LIST_FIELDS)},",
        f"    CustomerCompanySearchFields => {_perl_list(COMPANY_SEARCH_FIELDS)},",
        "    CustomerCompanySearchPrefix => '*',",
        "    CustomerCompanySearchSuffix => '*',",
        "    CustomerCompanySearchListLimit => 250,",
        f"    CacheTTL => {cache_ttl},",
        "    Map => [",
        *_map_lines(COMPANY_MAP, with_link_target=False),
        "    ],",
        "};",
        "# --- end kivi-otrs ---",
    ]
    return "\n".join(lines) + "\n"
