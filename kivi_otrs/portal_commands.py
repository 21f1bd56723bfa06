"""``kivi-otrs portal``: customer portal passwords of kivitendo contacts (set, reset, disable, list)."""

from __future__ import annotations

import json
import sys

import click

from . import db, portal
from .cli_common import DSN_OPTION
from .errors import PortalError


@click.group("portal")
def portal_group() -> None:
    """Customer portal login: passwords of contacts that may report tickets (stored as bcrypt hashes only).

    Example: kivi-otrs portal set anna.meier@example.com
    """


def _read_stdin_password() -> str:
    line = sys.stdin.readline()
    if not line:
        raise PortalError("--password-stdin: nothing on standard input; nothing changed")
    return line[:-1] if line.endswith("\n") else line


@portal_group.command("set")
@DSN_OPTION
@click.argument("login")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def portal_set_cmd(dsn: str | None, login: str, password_stdin: bool) -> None:
    """Set a contact's portal password (asked twice, hidden; at least 10 characters, not the login).

    Example: kivi-otrs portal set anna.meier@example.com
    Example: printf '%s\\n' "$PW" | kivi-otrs portal set anna.meier@example.com --password-stdin
    """
    dsn = db.resolve_dsn(dsn)
    with db.connect(dsn) as conn:
        login = portal.check_resettable(conn, login)  # unknown or invalid logins fail before the prompt
        if password_stdin:
            password = _read_stdin_password()
        else:
            password = click.prompt(f"New portal password for {login}", hide_input=True, confirmation_prompt=True,
                                    err=True)
        portal.set_password(conn, login, password)
    click.echo(f"Portal password of {login} set.")


@portal_group.command("reset")
@DSN_OPTION
@click.argument("login")
@click.option("--show", is_flag=True, help="Print the new password even when standard output is not a terminal.")
def portal_reset_cmd(dsn: str | None, login: str, show: bool) -> None:
    """Give a contact a new random password and print it once (on a terminal, or with --show).

    Example: kivi-otrs portal reset anna.meier@example.com
    """
    if not show and not sys.stdout.isatty():
        raise PortalError("standard output is not a terminal: pass --show to print the new password there; "
                          "nothing changed")
    dsn = db.resolve_dsn(dsn)
    with db.connect(dsn) as conn:
        login = portal.check_resettable(conn, login)
        password = portal.generate_password()
        portal.set_password(conn, login, password)
    click.echo(password)
    click.echo(f"New portal password of {login} set; it is shown only this once.", err=True)


@portal_group.command("disable")
@DSN_OPTION
@click.argument("login")
def portal_disable_cmd(dsn: str | None, login: str) -> None:
    """Remove a contact's portal password: the customer interface refuses the login from now on.

    Example: kivi-otrs portal disable anna.meier@example.com
    """
    dsn = db.resolve_dsn(dsn)
    with db.connect(dsn) as conn:
        had = portal.disable(conn, login)
    login = portal.normalise_login(login)
    click.echo(f"Portal login of {login} disabled." if had else f"{login} had no portal password; nothing changed.")


@portal_group.command("list")
@DSN_OPTION
@click.option("--all", "include_all", is_flag=True, help="Every login of the customer backend, also without password.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def portal_list_cmd(dsn: str | None, include_all: bool, as_json: bool) -> None:
    """List portal logins: login, valid, has password, last set (never a hash).

    Example: kivi-otrs portal list --all
    """
    dsn = db.resolve_dsn(dsn)
    with db.connect(dsn) as conn:
        rows = portal.list_logins(conn, include_all=include_all)
    if as_json:
        click.echo(json.dumps([{"login": r.login, "valid": r.valid, "has_password": r.has_password,
                                "set_at": r.set_at.isoformat() if r.set_at else None} for r in rows], indent=2))
        return
    if not rows:
        click.echo("No portal passwords set (kivi-otrs portal set LOGIN).")
        return
    width = max(len("login"), *(len(r.login) for r in rows))
    click.echo(f"{'login':<{width}}  valid  password  last set")
    for r in rows:
        valid = "gone" if r.valid is None else ("yes" if r.valid else "no")
        last = r.set_at.strftime("%Y-%m-%d %H:%M") if r.set_at else "-"
        click.echo(f"{r.login:<{width}}  {valid:<5}  {'yes' if r.has_password else 'no':<8}  {last}")


COMMANDS = [portal_group]
