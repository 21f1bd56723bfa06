"""Customer portal passwords: contacts that may report tickets log into the OTRS/Znuny customer interface.

Passwords are stored only as bcrypt hashes in kivi-otrs' own table ``kivi_otrs.portal_password``, in the
form Znuny's ``Kernel/System/CustomerAuth/DB.pm`` verifies natively (read in Znuny 7.1.7)::

    BCRYPT:<cost>:<salt>:<hash>

where ``salt`` is 16 characters used *as they are* as bcrypt's 16 salt octets (Znuny's ``SetPassword``
takes ``GenerateRandomString(Length => 16)``, letters and digits) and ``hash`` is
``Crypt::Eksblowfish::Bcrypt::en_base64(bcrypt_hash({key_nul => 1, cost, salt}, $Pw))``: the 23 hash
octets of standard bcrypt (``key_nul`` = the ``$2a$``/``$2b$`` variant: the password's UTF-8 octets plus a
NUL, at most 72 octets) in bcrypt's own base64 alphabet. The ``bcrypt`` package computes the same octets
when it is given the salt octets in that alphabet; the last 31 characters of its ``$2b$`` string are
Znuny's hash. A standard ``$2b$...`` string would not do: Znuny takes it for MD5-crypt and never matches.

Znuny reads the hashes through the view ``kivi_otrs.otrs_customer_auth`` (``SELECT pw, login ... WHERE
login = ?``), which shows no password for logins that are not valid (flag unticked, customer obsolete).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bcrypt
import psycopg

from .errors import PortalError

# Znuny's default Customer::AuthModule::DB::bcryptCost; its SetPassword uses at least 9.
BCRYPT_COST = 12
MIN_LENGTH = 10
MAX_OCTETS = 72  # bcrypt hashes at most 72 octets (with key_nul the NUL counts); longer would be cut silently
SALT_ALPHABET = string.ascii_letters + string.digits
BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
GENERATED_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/l/I
GENERATED_LENGTH = 16

LOGIN_SQL = """
SELECT u.login, u.cp_valid_id, u.customer_db_id,
       (SELECT c.obsolete FROM public.customer c WHERE c.id = u.customer_db_id) AS obsolete
FROM kivi_otrs.customer_user u WHERE u.login = %(login)s
"""
UPSERT_SQL = """
INSERT INTO kivi_otrs.portal_password AS p (login, password_hash, set_at, changed_at, changed_by)
VALUES (%(login)s, %(hash)s, now(), now(), session_user)
ON CONFLICT (login) DO UPDATE SET password_hash = EXCLUDED.password_hash, set_at = now(), changed_at = now(),
                                  changed_by = session_user
"""
HAS_HASH_SQL = "SELECT password_hash IS NOT NULL FROM kivi_otrs.portal_password WHERE login = %(login)s FOR UPDATE"
DISABLE_SQL = """
UPDATE kivi_otrs.portal_password SET password_hash = NULL, set_at = NULL, changed_at = now(), changed_by = session_user
WHERE login = %(login)s
"""
LIST_SQL = """
SELECT coalesce(p.login, u.login), u.cp_valid_id, p.password_hash IS NOT NULL, p.set_at, p.changed_at
FROM kivi_otrs.portal_password p
{join} kivi_otrs.customer_user u ON u.login = p.login
ORDER BY 1
"""


@dataclass(frozen=True)
class PortalLogin:
    """One line of ``kivi-otrs portal list``; never the hash."""

    login: str
    valid: bool | None  # None: the login is no longer in the customer backend
    has_password: bool
    set_at: datetime | None
    changed_at: datetime | None


def _bcrypt_b64(data: bytes) -> str:
    """bcrypt's base64 (alphabet ``./A-Za-z0-9``, no padding), as Crypt::Eksblowfish::Bcrypt::en_base64."""
    out, bits, count = [], 0, 0
    for byte in data:
        bits, count = (bits << 8) | byte, count + 8
        while count >= 6:
            count -= 6
            out.append(BCRYPT_B64[(bits >> count) & 63])
    if count:
        out.append(BCRYPT_B64[(bits << (6 - count)) & 63])
    return "".join(out)


def znuny_bcrypt(password: str, cost: int = BCRYPT_COST, salt: str | None = None) -> str:
    """``BCRYPT:cost:salt:hash`` exactly as Znuny's CustomerAuth::DB computes it for ``password``."""
    if salt is None:
        salt = "".join(secrets.choice(SALT_ALPHABET) for _ in range(16))
    if len(salt) != 16 or any(ch not in SALT_ALPHABET for ch in salt):
        raise ValueError("the salt must be 16 letters or digits")
    if not 10 <= cost <= 31:
        raise ValueError("bcrypt cost must be 10..31")
    octets = password.encode("utf-8")
    if len(octets) >= MAX_OCTETS:
        raise PortalError(f"the password is too long: bcrypt uses at most {MAX_OCTETS - 1} bytes (UTF-8); choose a "
                          "shorter one")
    standard = bcrypt.hashpw(octets, f"$2b${cost:02d}${_bcrypt_b64(salt.encode('ascii'))}".encode("ascii"))
    return f"BCRYPT:{cost}:{salt}:{standard.decode('ascii')[29:]}"


def verify(password: str, stored: str) -> bool:
    """Check ``password`` against a stored ``BCRYPT:cost:salt:hash`` (what Znuny does at login)."""
    parts = stored.split(":")
    if len(parts) != 4 or parts[0] != "BCRYPT" or not parts[1].isdigit():
        return False
    try:
        candidate = znuny_bcrypt(password, int(parts[1]), parts[2])
    except (ValueError, PortalError):
        return False
    return secrets.compare_digest(candidate, stored)


def check_strength(login: str, password: str) -> None:
    """Refuse weak passwords with one line: shorter than 10 characters, the login or its local part, too long."""
    if len(password) < MIN_LENGTH:
        raise PortalError(f"weak password for {login}: use at least {MIN_LENGTH} characters; nothing changed")
    folded = password.casefold()
    if folded in {login.casefold(), login.split("@", 1)[0].casefold()}:
        raise PortalError(f"weak password for {login}: it must not be the login; nothing changed")
    if len(set(password)) < 4:
        raise PortalError(f"weak password for {login}: use at least 4 different characters; nothing changed")
    if any(ch in password for ch in "\r\n\0") or any(not ch.isprintable() and ch != " " for ch in password):
        raise PortalError(f"the password for {login} contains control characters (a customer cannot type them); "
                          "nothing changed")
    if len(password.encode("utf-8")) >= MAX_OCTETS:
        raise PortalError(f"the password for {login} is too long: bcrypt uses at most {MAX_OCTETS - 1} bytes (UTF-8); "
                          "nothing changed")


def normalise_login(login: str) -> str:
    """Logins are lower-cased, trimmed e-mails (as in kivi_otrs.otrs_customer_contacts)."""
    value = login.strip().lower()
    if not value:
        raise PortalError("no login given: pass the contact's e-mail as shown by kivi-otrs portal list --all")
    return value


def generate_password() -> str:
    """A random password of 16 unambiguous letters and digits (about 93 bits)."""
    while True:
        candidate = "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(GENERATED_LENGTH))
        if any(c.isdigit() for c in candidate) and any(c.isupper() for c in candidate):
            return candidate


def _privilege_error(conn: psycopg.Connection[Any], action: str) -> PortalError:
    row = conn.execute("SELECT current_user").fetchone()
    role = row[0] if row else "this role"
    return PortalError(f"the database role {role} may not {action} portal passwords; run kivi-otrs portal as the role "
                       "that ran kivi-otrs migrate (the owner of schema kivi_otrs); nothing changed")


def _require_valid_login(conn: psycopg.Connection[Any], login: str) -> None:
    row = conn.execute(LOGIN_SQL, {"login": login}).fetchone()
    if row is None:
        raise PortalError(f"unknown login {login}: no contact with this e-mail in the OTRS customer backend "
                          "(kivi-otrs portal list --all shows the logins); nothing changed")
    if row[1] != 1:
        if row[3]:
            raise PortalError(f"{login} belongs to an obsolete customer and cannot log into the customer portal; "
                              "nothing changed")
        raise PortalError(f"{login} may not report tickets: tick 'Darf Tickets melden (OTRS)' on the contact in "
                          "kivitendo first; nothing changed")


def set_password(conn: psycopg.Connection[Any], login: str, password: str) -> None:
    """Store a new password for a valid login (one transaction); refused for weak passwords and invalid logins."""
    login = normalise_login(login)
    try:
        with conn.transaction():
            _require_valid_login(conn, login)
            check_strength(login, password)
            conn.execute(UPSERT_SQL, {"login": login, "hash": znuny_bcrypt(password)})
    except psycopg.errors.InsufficientPrivilege:
        raise _privilege_error(conn, "set") from None


def check_resettable(conn: psycopg.Connection[Any], login: str) -> str:
    """The normalised login if ``reset`` may give it a new password (before one is generated)."""
    login = normalise_login(login)
    try:
        with conn.transaction():
            _require_valid_login(conn, login)
    except psycopg.errors.InsufficientPrivilege:
        raise _privilege_error(conn, "reset") from None
    return login


def disable(conn: psycopg.Connection[Any], login: str) -> bool:
    """Remove a login's password (the portal refuses it from now on); False when it had none."""
    login = normalise_login(login)
    try:
        with conn.transaction():
            row = conn.execute(HAS_HASH_SQL, {"login": login}).fetchone()
            if row is None:
                known = conn.execute(LOGIN_SQL, {"login": login}).fetchone()
                if known is None:
                    raise PortalError(f"unknown login {login}: neither in the OTRS customer backend nor with a portal "
                                      "password; nothing changed")
                return False
            conn.execute(DISABLE_SQL, {"login": login})
            return bool(row[0])
    except psycopg.errors.InsufficientPrivilege:
        raise _privilege_error(conn, "disable") from None


def list_logins(conn: psycopg.Connection[Any], include_all: bool = False) -> list[PortalLogin]:
    """Logins with a portal password row (``include_all``: every login of the backend); never the hashes."""
    query = LIST_SQL.format(join="FULL JOIN" if include_all else "LEFT JOIN")
    try:
        with conn.transaction():
            rows = conn.execute(query).fetchall()  # the join keyword is one of two constants
    except psycopg.errors.InsufficientPrivilege:
        raise _privilege_error(conn, "list") from None
    return [PortalLogin(login=row[0], valid=None if row[1] is None else row[1] == 1, has_password=bool(row[2]),
                        set_at=row[3], changed_at=row[4]) for row in rows]
