"""The ``kivi-otrs`` command line: one group, commands named by what the admin does."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import click
import psycopg

from . import config as config_mod
from . import db, doctor, migrate, otrs_config
from .cli_common import DSN_OPTION, parse_day
from .errors import KiviOtrsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kivi-otrs")
@click.option("--secrets-file", type=click.Path(dir_okay=False), envvar=config_mod.SECRETS_FILE_ENV,
              help="File of 'otrs.password = ...' / 'api.token = ...' lines, mode 0600 "
                   "(or $KIVI_OTRS_SECRETS_FILE; systemd credentials and environment variables also work).")
def cli(secrets_file: str | None) -> None:
    """kivitendo <-> OTRS/Znuny/OTOBO: customer backend views and billing of closed tickets.

    Example: kivi-otrs migrate --dsn postgresql://kivitendo@localhost/firma
    """
    config_mod.use_secrets_file(secrets_file)


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


@contextmanager
def _notes_to_stderr(logger_name: str) -> Iterator[None]:
    """Show what a step repaired on its own (a stale lock, a re-created flag) as lines on stderr."""
    logger = logging.getLogger(logger_name)
    handler = _EchoHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@cli.command("migrate")
@DSN_OPTION
@click.option("--reader-role", default="kivi_otrs_reader", show_default=True,
              help="NOLOGIN role OTRS reads the views through (first install only).")
@click.option("--flag-default/--no-flag-default", default=False, show_default=True,
              help="May contacts report tickets before anyone set the flag in kivitendo (first install only).")
def migrate_cmd(dsn: str | None, reader_role: str, flag_default: bool) -> None:
    """Install or upgrade kivi-otrs in a kivitendo database (re-running is a no-op).

    Example: kivi-otrs migrate --dsn postgresql://kivitendo@localhost/firma --flag-default
    """
    dsn = db.resolve_dsn(dsn)
    with _notes_to_stderr("kivi_otrs.migrate"):
        applied = migrate.migrate(dsn, migrate.InstallOptions(reader_role=reader_role, flag_default=flag_default))
    if applied:
        click.echo(f"Applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("Database is up to date; views, triggers and grants re-applied.")


@cli.command("rollback")
@DSN_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def rollback_cmd(dsn: str | None, yes: bool) -> None:
    """Remove everything kivi-otrs installed (settings, ledger and the flag's values included).

    Example: kivi-otrs rollback --dsn postgresql://kivitendo@localhost/firma --yes
    """
    dsn = db.resolve_dsn(dsn)
    if not yes:
        click.confirm(f"Remove kivi-otrs and all its data from {db.describe(dsn)}?", abort=True)
    removed = migrate.rollback(dsn)
    click.echo(f"Removed kivi-otrs ({len(removed)} migration(s) rolled back)." if removed else "kivi-otrs was not installed.")


@cli.command("status")
@DSN_OPTION
def status_cmd(dsn: str | None) -> None:
    """Show applied and pending migrations.

    Example: kivi-otrs status --dsn postgresql://kivitendo@localhost/firma
    """
    dsn = db.resolve_dsn(dsn)
    applied = set(migrate.applied_ids(dsn))
    for mid in migrate.available_ids():
        click.echo(f"{'applied' if mid in applied else 'PENDING'}  {mid}")


@cli.command("refresh")
@DSN_OPTION
def refresh_cmd(dsn: str | None) -> None:
    """Rebuild the OTRS customer backend from kivitendo and clear the stale flag.

    Example: kivi-otrs refresh --dsn postgresql://kivitendo@localhost/firma
    """
    migrate.refresh(db.resolve_dsn(dsn))
    click.echo("Customer backend rebuilt from kivitendo.")


@cli.command("reindex")
@DSN_OPTION
@click.option("--wait", default=migrate.REINDEX_WAIT, show_default=True,
              help="How long to wait for older transactions before giving up (PostgreSQL interval).")
def reindex_cmd(dsn: str | None, wait: str) -> None:
    """Rebuild the customer backend's search (trigram) indexes without blocking kivitendo or OTRS.

    Searches slow down as the indexes take many changes (a mass change of the flag, a large
    import); run this after such changes, or weekly from cron. migrate and refresh run it.

    Example: kivi-otrs reindex --dsn postgresql://kivitendo@localhost/firma
    """
    rebuilt = migrate.reindex(db.resolve_dsn(dsn), wait)
    click.echo(f"Rebuilt {len(rebuilt)} search index(es): {', '.join(rebuilt)}." if rebuilt else "No search indexes found.")


@cli.group("views")
def views_group() -> None:
    """Remove or reinstall the views, functions and sync triggers (data and settings stay).

    Example: kivi-otrs views drop --dsn ...; (upgrade kivitendo); kivi-otrs views install --dsn ...
    """


@views_group.command("drop")
@DSN_OPTION
def views_drop_cmd(dsn: str | None) -> None:
    """Drop views, functions and triggers, e.g. before a kivitendo upgrade.

    Example: kivi-otrs views drop --dsn postgresql://kivitendo@localhost/firma
    """
    migrate.drop_views(db.resolve_dsn(dsn))
    click.echo("Views, functions and sync triggers dropped; OTRS cannot read customers until views install.")


@views_group.command("install")
@DSN_OPTION
def views_install_cmd(dsn: str | None) -> None:
    """Recreate views, functions and triggers and rebuild the backend.

    Example: kivi-otrs views install --dsn postgresql://kivitendo@localhost/firma
    """
    migrate.install_views(db.resolve_dsn(dsn))
    click.echo("Views, functions and sync triggers installed; customer backend rebuilt.")


@cli.command("otrs-config")
@DSN_OPTION
@click.option("--db-user", default="otrs_kivi", show_default=True,
              help="LOGIN role OTRS connects as (member of the read role).")
@click.option("--password-file", default=otrs_config.DEFAULT_PASSWORD_FILE, show_default=True,
              help="Absolute path of the file (first line) Znuny reads the role's password from at load time.")
@click.option("--slot", type=click.IntRange(0, 9), default=1, show_default=True,
              help="Backend number: CustomerUser1/CustomerCompany1 (0 = replace the default backend).")
@click.option("--cache-ttl", type=click.IntRange(0), default=300, show_default=True, help="OTRS CacheTTL in seconds.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write the module here (mode 0640) instead of stdout, e.g. /opt/znuny/Kernel/Config/Files/ZZZKiviOtrs.pm.")
@click.option("--portal-login/--no-portal-login", default=True, show_default=True,
              help="Add Customer::AuthModule<slot>: contacts log into the customer interface with kivi-otrs portal passwords.")
def otrs_config_cmd(dsn: str | None, db_user: str, password_file: str, slot: int, cache_ttl: int,
                    output: str | None, portal_login: bool) -> None:
    """Generate Kernel/Config/Files/ZZZKiviOtrs.pm, the customer backends Znuny loads as it is.

    The module holds no password: Znuny reads it from --password-file whenever it loads its configuration.

    Example: kivi-otrs otrs-config --db-user otrs_kivi -o /opt/znuny/Kernel/Config/Files/ZZZKiviOtrs.pm
    """
    dsn = db.resolve_dsn(dsn)
    with db.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass('kivi_otrs.install_state')").fetchone()
        if not row or not row[0]:
            raise KiviOtrsError("kivi-otrs is not installed in this database; run kivi-otrs migrate first")
        role_row = conn.execute("SELECT value FROM kivi_otrs.install_state WHERE key = 'reader_role'").fetchone()
    role = role_row[0] if role_row else "kivi_otrs_reader"
    text = otrs_config.render(dsn, db_user=db_user, reader_role=role, slot=slot, cache_ttl=cache_ttl,
                              password_file=password_file, portal_login=portal_login)
    if output is None:
        click.echo(text, nl=False)
        return
    click.echo(otrs_config.write_module(output, text))
    click.echo(f"Put the password of {db_user} into {password_file} (readable by Znuny's OS user and the web server "
               "only), restart the web server and run bin/znuny.Console.pl Maint::Cache::Delete.")


@cli.command("doctor")
@DSN_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor_cmd(dsn: str | None, as_json: bool) -> None:
    """Check installation, schema drift and kivitendo data; exit 1 when something must be fixed.

    Example: kivi-otrs doctor --dsn postgresql://kivitendo@localhost/firma
    """
    findings = doctor.diagnose(db.resolve_dsn(dsn))
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=2))
    elif not findings:
        click.echo("All checks passed.")
    else:
        for f in findings:
            count = f" ({f.count})" if f.count else ""
            click.echo(f"[{f.severity}] {f.check}: {f.message}{count}")
            for example in f.examples:
                click.echo(f"    - {example}")
            click.echo(f"    fix: {f.fix}")
    if any(f.severity == "error" for f in findings):
        sys.exit(1)


@cli.group("config")
def config_group() -> None:
    """Show or change settings stored in the kivitendo database.

    Example: kivi-otrs config set otrs.base_url https://helpdesk.example.com/znuny/
    """


@config_group.command("show")
@DSN_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_show_cmd(dsn: str | None, as_json: bool) -> None:
    """List every setting with its value and where it comes from (secrets masked).

    Example: kivi-otrs config show --dsn postgresql://kivitendo@localhost/firma
    """
    with db.connect(db.resolve_dsn(dsn)) as conn:
        rows = config_mod.show(conn)
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, ensure_ascii=False, indent=2))
        return
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        click.echo(f"{key:<{width}}  {value}  ({source})")


@config_group.command("set", context_settings={"ignore_unknown_options": True})
@DSN_OPTION
@click.argument("key")
@click.argument("value", required=False)
@click.option("--from-env", "from_env", metavar="VAR", help="Read the value from this environment variable.")
@click.option("--store-in-database", is_flag=True,
              help="Allow storing a secret (otrs.password, api.token) in plain text in kivi_otrs.settings.")
def config_set_cmd(dsn: str | None, key: str, value: str | None, from_env: str | None, store_in_database: bool) -> None:
    """Store one setting after checking it against its allowed range (negative numbers: KEY -- -15).

    Secrets (otrs.password, api.token) belong in KIVI_OTRS_OTRS_PASSWORD / KIVI_OTRS_API_TOKEN,
    a systemd credential or a secrets file (--secrets-file, mode 0600); config set refuses
    them unless --store-in-database is given.

    Example: kivi-otrs config set billing.states '["closed successful"]'
    """
    setting = config_mod.SETTINGS.get(key)
    if setting is None:
        config_mod.parse_value(key, "")  # the one-line "unknown setting" error
    if from_env and value is not None:
        raise KiviOtrsError(f"give the value of {key} either as argument or with --from-env, not both")
    if setting is not None and setting.secret and not store_in_database:
        config_mod.refuse_secret_in_database(key)
    if from_env:
        value = os.environ.get(from_env)
        if value is None:
            raise KiviOtrsError(f"environment variable {from_env} is not set")
    if value is None:
        value = click.prompt(f"Value for {key}", hide_input=bool(setting and setting.secret))
    config_mod.parse_value(key, value)
    with db.connect(db.resolve_dsn(dsn)) as conn, conn.transaction():
        config_mod.set_value(conn, key, value)
        values = config_mod.effective(conn) if key == "billing.states" else {}
    click.echo(f"{key} saved.")
    if key == "billing.states":
        _tell_unknown_states(values)
    if setting is not None and setting.secret:
        click.echo(f"warning: {key} is stored in plain text in kivi_otrs.settings and in every pg_dump of this "
                   f"database; prefer {setting.env}, a systemd credential or a secrets file, then "
                   f"kivi-otrs config unset {key}", err=True)


def _tell_unknown_states(values: dict[str, Any]) -> None:
    """Each state searched alone in OTRS: a name no ticket has is likely misspelled (one unknown name empties
    Znuny's whole TicketSearch silently)."""
    from .otrs import OtrsClient

    try:
        with OtrsClient(config_mod.otrs_settings(values)) as client:
            hits = client.state_hits()
    except KiviOtrsError as exc:
        click.echo(f"note: the state names were not checked against OTRS ({db.redact(str(exc))}); "
                   "run kivi-otrs check-otrs", err=True)
        return
    for state, hit in hits.items():
        if not hit:
            click.echo(f"warning: no ticket in OTRS has the state {state!r}; if it is misspelled or wrongly cased "
                       "(OTRS compares exactly), Znuny's search finds nothing at all and nothing is billed",
                       err=True)


@config_group.command("unset")
@DSN_OPTION
@click.argument("key")
def config_unset_cmd(dsn: str | None, key: str) -> None:
    """Remove a stored setting: its default (or the environment/secrets file) applies again.

    Example: kivi-otrs config unset otrs.password
    """
    with db.connect(db.resolve_dsn(dsn)) as conn, conn.transaction():
        removed = config_mod.unset_value(conn, key)
    click.echo(f"{key} removed from the database." if removed else f"{key} was not stored in the database.")


@cli.command("break-lock")
@DSN_OPTION
def break_lock_cmd(dsn: str | None) -> None:
    """Remove a migration lock left behind by a killed kivi-otrs process.

    Example: kivi-otrs break-lock --dsn postgresql://kivitendo@localhost/firma
    """
    removed = migrate.break_lock(db.resolve_dsn(dsn))
    click.echo(f"Removed the migration lock of process {', '.join(map(str, removed))}." if removed
               else "No migration lock was set.")


@cli.command("positions")
@DSN_OPTION
@click.option("--order-id", type=int, help="kivitendo sales order (oe.id): prefill article, periodic invoices.")
@click.option("--customer", "customer_number", help="kivitendo customer number (= OTRS CustomerID).")
@click.option("--period", help="previous-month (default), current-month or last-N-days.")
@click.option("--from", "date_from", help="First day (YYYY-MM-DD), with --to instead of --period.")
@click.option("--to", "date_to", help="Last day (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Positions and preview as JSON (Order/add_multi_items shape).")
@click.option("--dry-run", is_flag=True, help="Preview only: reserve nothing in the ledger.")
def positions_cmd(dsn: str | None, order_id: int | None, customer_number: str | None, period: str | None,
                  date_from: str | None, date_to: str | None, as_json: bool, dry_run: bool) -> None:
    """Order positions for a customer's closed tickets; reserves them unless --dry-run.

    Example: kivi-otrs positions --customer 1000387 --period previous-month --dry-run
    """
    from .service import Request, make_positions

    if order_id is None and not customer_number:
        raise KiviOtrsError("name the order (--order-id N) or the customer (--customer NUMBER)")
    request = Request(order_id=order_id, customer_number=customer_number, period=period,
                      date_from=parse_day(date_from, "--from"), date_to=parse_day(date_to, "--to"),
                      dry_run=dry_run, source="cli")
    plan, span = make_positions(db.resolve_dsn(dsn), request)
    if as_json:
        click.echo(json.dumps(plan.as_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(f"Period {span.start:%Y-%m-%d} .. {span.end:%Y-%m-%d} (exclusive); "
               f"{'preview, nothing reserved' if dry_run else 'reserved in the ledger'}")
    for item, position in zip(plan.new, plan.positions, strict=True):
        click.echo(f"  new      {item['ticket_number']:<18} {position['qty_as_number']:>9} {position['unit']:<5} "
                   f"{position['description']} | {item['title']}")
    for item in plan.billed:
        click.echo(f"  billed   {item['ticket_number']:<18} {item['where']}")
    for item in plan.skipped:
        click.echo(f"  skipped  {item['ticket_number']:<18} {item['reason']}")
    click.echo(plan.message())


@cli.command("release")
@DSN_OPTION
@click.option("--order-id", type=int, help="Release the unsaved reservations of this order.")
@click.option("--customer", "customer_number", help="Release the unsaved reservations of this customer.")
def release_cmd(dsn: str | None, order_id: int | None, customer_number: str | None) -> None:
    """Give up tickets offered to an order that was never saved, so they are offered again.

    Example: kivi-otrs release --customer 1000387
    """
    from . import positions

    with db.connect(db.resolve_dsn(dsn)) as conn:
        released = positions.release(conn, order_id, customer_number, "released with kivi-otrs release")
    click.echo(f"Released {len(released)} ticket(s): {', '.join(released)}" if released else "Nothing reserved.")


@cli.command("serve")
@click.option("--dsn", help="The kivitendo database to serve (or $KIVI_OTRS_DSN when no --client is given).")
@click.option("--client", "client_specs", multiple=True, metavar="NAME=DSN",
              help="A kivitendo client to serve, named after its database; repeat for several clients.")
@click.option("--clients-file", type=click.Path(dir_okay=False, exists=True),
              help="File of 'NAME = DSN' lines (mode 0600 when the DSNs hold passwords).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address or name: 127.0.0.1, ::1, localhost.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="TCP port.")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests served at once (each holds one database connection).")
@click.option("--connection-limit", type=click.IntRange(1, 10000), default=256, show_default=True,
              help="Open connections at most; further ones wait in the listen backlog.")
@click.option("--backlog", type=click.IntRange(1, 65535), default=1024, show_default=True,
              help="Listen backlog: connections the kernel queues before the endpoint accepts them.")
@click.option("--channel-timeout", type=click.IntRange(1, 3600), default=15, show_default=True,
              help="Seconds an idle or half-sent request may hold a connection.")
def serve_cmd(dsn: str | None, client_specs: tuple[str, ...], clients_file: str | None, host: str, port: int,
              threads: int, connection_limit: int, backlog: int, channel_timeout: int) -> None:
    """Run the local endpoint kivitendo's order-screen button calls (loopback only, token required).

    One kivitendo client: --dsn (or $KIVI_OTRS_DSN). Several: --client NAME=DSN per
    client or --clients-file; requests then name their client in the field "client".

    Example: KIVI_OTRS_API_TOKEN=... kivi-otrs serve --dsn postgresql://kivitendo@localhost/firma
    """
    import logging
    from pathlib import Path

    from .endpoint import EndpointServer, Tuning, load_client, parse_client_spec, read_clients_file

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queued clicks are normal; the access log has times
    named = [parse_client_spec(spec) for spec in client_specs]
    if clients_file:
        path = Path(clients_file)
        named += read_clients_file(path)
        if path.stat().st_mode & 0o077 and "password" in path.read_text(encoding="utf-8", errors="replace"):
            click.echo(f"Warning: {path} holds passwords and is readable by others; chmod 0600 it", err=True)
    clients = [load_client(client_dsn, name) for name, client_dsn in named]
    if dsn or not named:
        clients.append(load_client(db.resolve_dsn(dsn)))
    server = EndpointServer(clients, host, port, tuning=Tuning(threads=threads, backlog=backlog,
                                                               connection_limit=connection_limit,
                                                               channel_timeout=channel_timeout,
                                                               cleanup_interval=min(5, channel_timeout)))
    names = ", ".join(client.name for client in clients)
    click.echo(f"kivi-otrs endpoint on {' '.join(server.urls)} for {names} (POST /positions, GET /health); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.group("template")
def template_group() -> None:
    """Show or override the Jinja templates of position texts.

    Example: kivi-otrs template set longdescription my-text.j2 --language de
    """


@template_group.command("show")
@DSN_OPTION
@click.argument("name", type=click.Choice(["description", "longdescription"]))
@click.option("--language", type=click.Choice(config_mod.template_languages()), default="de", show_default=True)
def template_show_cmd(dsn: str | None, name: str, language: str) -> None:
    """Print the template in use (the override, else the shipped one).

    Example: kivi-otrs template show longdescription --language de
    """
    from .resources import resource_dir

    with db.connect(db.resolve_dsn(dsn)) as conn:
        row = conn.execute("SELECT body FROM kivi_otrs.template WHERE name = %s AND language = %s",
                           (name, language)).fetchone()
    if row:
        click.echo(row[0])
        return
    path = resource_dir("templates") / "positions" / language / f"{name}.j2"
    if not path.exists():
        raise KiviOtrsError(f"no {name} template for language {language!r}")
    click.echo(path.read_text(encoding="utf-8"))


@template_group.command("set")
@DSN_OPTION
@click.argument("name", type=click.Choice(["description", "longdescription"]))
@click.argument("file", type=click.File("rb"))
@click.option("--language", type=click.Choice(config_mod.template_languages()), default="de", show_default=True)
def template_set_cmd(dsn: str | None, name: str, file: Any, language: str) -> None:
    """Store an override after checking it compiles, stays within size and time limits and renders sample data.

    Example: kivi-otrs template set description beschreibung.j2 --language de
    """
    from .render import decode_template, validate_template

    body = decode_template(file.read(), file.name)
    validate_template(name, language, body)
    with db.connect(db.resolve_dsn(dsn)) as conn, conn.transaction():
        conn.execute("INSERT INTO kivi_otrs.template (name, language, body) VALUES (%s, %s, %s) "
                     "ON CONFLICT (name, language) DO UPDATE SET body = EXCLUDED.body, mtime = now()",
                     (name, language, body))
    click.echo(f"Template {name}/{language} saved.")


@cli.command("article")
@DSN_OPTION
@click.option("--customer", "customer_number", help="Customer number the rule is for.")
@click.option("--queue", help="OTRS queue the rule is for.")
@click.option("--service", help="OTRS service the rule is for.")
@click.option("--part", "partnumber", help="Part number of the article to bill.")
@click.option("--not-billable", is_flag=True, help="Tickets matching the rule are skipped.")
@click.option("--delete", is_flag=True, help="Remove the rule.")
def article_cmd(dsn: str | None, customer_number: str | None, queue: str | None, service: str | None,
                partnumber: str | None, not_billable: bool, delete: bool) -> None:
    """Set which article bills a customer's or a queue's tickets (or that a queue is not billed).

    Example: kivi-otrs article --queue Intern --not-billable
    """
    if not (customer_number or queue or service):
        raise KiviOtrsError("a rule needs --customer, --queue and/or --service")
    key = {"c": customer_number, "q": queue, "s": service}
    with db.connect(db.resolve_dsn(dsn)) as conn, conn.transaction():
        conn.execute("DELETE FROM kivi_otrs.article_rule WHERE customer_number IS NOT DISTINCT FROM %(c)s "
                     "AND queue IS NOT DISTINCT FROM %(q)s AND service IS NOT DISTINCT FROM %(s)s", key)
        if delete:
            click.echo("Rule removed.")
            return
        if not not_billable:
            if not partnumber:
                raise KiviOtrsError("name the article with --part NUMBER (or use --not-billable)")
            if not conn.execute("SELECT 1 FROM public.parts WHERE partnumber = %s", (partnumber,)).fetchone():
                raise KiviOtrsError(f"part {partnumber!r} does not exist in kivitendo")
        conn.execute("INSERT INTO kivi_otrs.article_rule (customer_number, queue, service, partnumber, billable) "
                     "VALUES (%(c)s, %(q)s, %(s)s, %(p)s, %(b)s)", {**key, "p": partnumber, "b": not not_billable})
    click.echo("Rule saved.")


def _helpdesk_lists(conn: psycopg.Connection[Any], month: date, offline: bool) -> list[Any]:
    """reconcile's lists from OTRS (the month's closed tickets); a helpdesk failure is reported, not fatal."""
    from . import reports
    from .errors import HelpdeskError
    from .otrs import fetch_closed
    from .period import resolve_period

    if offline:
        return []
    values = config_mod.effective(conn)
    last = (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    span = resolve_period(None, values["site.timezone"], date_from=month, date_to=last)
    try:
        tickets = fetch_closed(config_mod.otrs_settings(values), None, span)
    except (HelpdeskError, KiviOtrsError) as exc:
        click.echo(f"note: lists from OTRS left out: {db.redact(str(exc))}", err=True)
        return []
    return reports.helpdesk_lists(conn, tickets.tickets, f"{month:%Y-%m}", tickets.skipped)


@cli.command("report")
@DSN_OPTION
@click.argument("kind", type=click.Choice(["billed", "reconcile"]))
@click.option("--month", help="Month of the billing period, YYYY-MM (billed; default: previous month).")
@click.option("--customer", "customer_number", help="Only this customer number (billed).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "html"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="File to write (default stdout).")
@click.option("--offline", is_flag=True, help="reconcile: skip the lists that need OTRS.")
def report_cmd(dsn: str | None, kind: str, month: str | None, customer_number: str | None, fmt: str, output: Any,
               offline: bool) -> None:
    """Billed tickets per customer and month, or the reconciliation lists.

    Example: kivi-otrs report billed --month 2026-10 --customer 1000387 --format html -o 1000387-2026-10.html
    """
    from . import reports

    if month:
        try:
            day = date.fromisoformat(month + "-01")
        except ValueError:
            raise KiviOtrsError("--month must look like 2026-10") from None
    else:
        first = date.today().replace(day=1)
        day = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    with db.connect(db.resolve_dsn(dsn)) as conn:
        if kind == "billed":
            found = [reports.billed(conn, day, customer_number, config_mod.effective(conn)["site.timezone"])]
        else:
            found = reports.reconciliation(conn, _helpdesk_lists(conn, day, offline))
    for rep in found:
        output.write(rep.table() if fmt == "table" else rep.csv() if fmt == "csv" else rep.html())


BILL_WRITEBACK_PENDING = 10  # billed, but OTRS still has to be told (cron: alert, then kivi-otrs writeback)


@cli.command("bill")
@DSN_OPTION
@click.option("--period", help="previous-month (default), current-month or last-N-days.")
@click.option("--from", "date_from", help="First day (YYYY-MM-DD), with --to instead of --period.")
@click.option("--to", "date_to", help="Last day (YYYY-MM-DD).")
@click.option("--customer", "customers", multiple=True, help="Only these customer numbers (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be billed; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def bill_cmd(dsn: str | None, period: str | None, date_from: str | None, date_to: str | None,
             customers: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Monthly billing run for all customers (cron or kivitendo background job); re-running adds nothing.

    Example: kivi-otrs bill --period previous-month --dry-run
    """
    from . import billing_run

    show_progress = sys.stdout.isatty() and not as_json
    seen: list[str] = []

    def progress(number: str, index: int, total: int) -> None:
        seen.append(number)
        if show_progress:
            done = int(30 * index / total)
            click.echo(f"\r  [{'#' * done}{'.' * (30 - done)}] {index}/{total} {number[:20]:<20}", nl=False)

    summary = billing_run.run(db.resolve_dsn(dsn), period, parse_day(date_from, "--from"), parse_day(date_to, "--to"),
                              list(customers) or None, dry_run, progress=progress)
    if show_progress and seen:
        click.echo()
    click.echo(summary.as_json() if as_json else summary.text(), nl=False)
    if summary.aborted or summary.failed:
        sys.exit(1)
    if summary.writeback_pending:
        sys.exit(BILL_WRITEBACK_PENDING)


@cli.command("writeback")
@DSN_OPTION
def writeback_cmd(dsn: str | None) -> None:
    """Send pending dynamic-field updates to OTRS (retries what failed while OTRS was down).

    Example: kivi-otrs writeback --dsn postgresql://kivitendo@localhost/firma
    """
    from . import writeback

    with db.connect(db.resolve_dsn(dsn)) as conn:
        values = config_mod.effective(conn)
        counts = writeback.process(conn, config_mod.otrs_settings(values), values["writeback.field"])
    click.echo(", ".join(f"{v} {k}" for k, v in counts.items()))


def _register_helpdesk_commands() -> None:
    from .otrs_commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_helpdesk_commands()


def _register_portal_commands() -> None:
    from .portal_commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_portal_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: KiviOtrsError becomes one line ``Error: ...`` and a non-zero exit."""
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="kivi-otrs")
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KiviOtrsError as exc:
        click.echo(f"Error: {db.redact(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except psycopg.errors.UndefinedTable as exc:
        if "kivi_otrs." in str(exc):
            click.echo(f"Error: {config_mod.NOT_INSTALLED}", err=True)
            sys.exit(3)
        click.echo(f"Error: database error: {db.redact(str(exc).strip().splitlines()[0])}", err=True)
        sys.exit(3)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"Error: database error: {db.redact(first)}", err=True)
        sys.exit(3)
    except Exception as exc:
        if os.environ.get("KIVI_OTRS_DEBUG"):
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {db.redact(str(exc))[:300]} "
                   "(set KIVI_OTRS_DEBUG=1 for details)", err=True)
        sys.exit(70)


