"""Commands that talk to the helpdesk: otrs-webservice, check-otrs, tickets, otrs-double."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click
from jinja2 import Environment, StrictUndefined

from . import config as config_mod
from . import db
from .cli_common import DSN_OPTION, parse_day
from .errors import HelpdeskError
from .period import resolve_period
from .resources import resource_dir

if TYPE_CHECKING:
    from .otrs import OtrsClient


def webservice_yaml(settings: config_mod.OtrsSettings | None, field: str) -> str:
    """The web service definition an OTRS admin imports, with this installation's names in its comments."""
    text = (resource_dir("templates") / "otrs-webservice.yml").read_text(encoding="utf-8")
    # YAML, not HTML; the values are the admin's own settings and land in comments only
    env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)  # noqa: S701
    return env.from_string(text).render(
        webservice=settings.webservice if settings else "KivitendoBilling",
        endpoint=settings.endpoint if settings else "https://HOST/znuny/nph-genericinterface.pl/Webservice/KivitendoBilling",
        user=settings.user if settings and settings.user else "AGENT", field=field,
    )


def _settings(dsn: str | None) -> tuple[config_mod.OtrsSettings, dict[str, object]]:
    with db.connect(db.resolve_dsn(dsn)) as conn:
        values = config_mod.effective(conn)
    return config_mod.otrs_settings(values), values


@click.command("otrs-webservice")
@click.option("--dsn", envvar=db.DSN_ENV, help="Take names from this installation's settings (optional).")
def otrs_webservice_cmd(dsn: str | None) -> None:
    """Print the web service YAML (REST routes) to import into OTRS/Znuny/OTOBO.

    Example: kivi-otrs otrs-webservice > kivi-otrs-webservice.yml
    """
    settings = None
    field = "KivitendoOrder"
    if dsn:
        with db.connect(db.resolve_dsn(dsn)) as conn:
            values = config_mod.effective(conn)
        field = str(values["writeback.field"])
        if values["otrs.user"]:
            settings = config_mod.otrs_settings(values)
    click.echo(webservice_yaml(settings, field), nl=False)


@dataclass
class QueueSeen:
    """Tickets in billable states in one queue, as the billing agent sees them."""

    queue: str
    tickets: int
    sample_id: int
    writable: bool | None = None


def queues_seen(client: OtrsClient, limit: int, probe_rw: bool) -> list[QueueSeen]:
    """The newest ``limit`` tickets in the billable states grouped by queue (TicketGet gives Queue).

    TicketSearch silently leaves out tickets in queues the agent may not read, so this is what
    billing will see. With ``probe_rw`` one ticket per queue gets a TicketUpdate without changes.
    """
    from .otrs import clean_text

    ids = client.search({"States": list(client.settings.states), "Limit": limit})
    seen: dict[str, QueueSeen] = {}
    for start in range(0, len(ids), client.settings.batch_size):
        for raw in client.get(ids[start:start + client.settings.batch_size], extended=False, dynamic_fields=False):
            queue = clean_text(raw.get("Queue", ""), 80) or "(no queue)"
            if queue in seen:
                seen[queue].tickets += 1
            else:
                seen[queue] = QueueSeen(queue, 1, int(str(raw.get("TicketID"))))
    if probe_rw:
        for item in seen.values():
            item.writable = client.can_write(item.sample_id)
    return sorted(seen.values(), key=lambda q: (-q.tickets, q.queue))


@click.command("check-otrs")
@DSN_OPTION
@click.option("--queue-sample", type=click.IntRange(0, 5000), default=200, show_default=True,
              help="How many of the newest tickets in billable states to group by queue (0: skip).")
def check_otrs_cmd(dsn: str | None, queue_sample: int) -> None:
    """Check connection, agent login, billable states, queues the agent sees and every operation kivi-otrs needs.

    Example: kivi-otrs check-otrs --dsn postgresql://kivitendo@localhost/firma
    """
    from .otrs import OtrsClient

    settings, values = _settings(dsn)
    field = str(values["writeback.field"]) if values["writeback.enabled"] else None
    started = time.monotonic()
    with OtrsClient(settings, retries=0) as client:
        rows = client.check(field)
        queues: list[QueueSeen] = []
        if rows[0][1] and queue_sample:
            queues = queues_seen(client, queue_sample, probe_rw=field is not None)
        requests_made = client.requests_made
    for what, ok, detail in rows:
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {what}: {db.redact(detail)}")
    read_only = [q for q in queues if q.writable is False]
    if queues:
        click.echo(f"Tickets in billable states by queue, as agent {settings.user} sees them "
                   f"(newest {queue_sample}):")
        for q in queues:
            rw = "" if q.writable is None else "  rw" if q.writable else "  ro only: write-back fails here"
            click.echo(f"      {q.queue:<40} {q.tickets:>5}{rw}")
    elif rows[0][1] and queue_sample:
        click.echo(f"No ticket in a billable state is visible to agent {settings.user}.")
    if rows[0][1]:
        click.echo("      TicketSearch leaves out tickets in queues the agent may not read, without any error: if a "
                   "queue with billable tickets is missing here, give the agent ro on it (rw with write-back).")
    if read_only:
        click.echo(f"FAIL  write-back: agent {settings.user} lacks rw on {', '.join(q.queue for q in read_only)}")
    click.echo(f"{requests_made} requests in {time.monotonic() - started:.2f} s")
    if not all(ok for _, ok, _ in rows) or read_only:
        raise HelpdeskError("the OTRS web service is not ready for kivi-otrs (see FAIL above)")


@click.command("tickets")
@DSN_OPTION
@click.option("--customer", "customer_number", help="kivitendo customer number (= OTRS CustomerID); all if omitted.")
@click.option("--period", help="previous-month (default), current-month or last-N-days.")
@click.option("--from", "date_from", help="First day (YYYY-MM-DD), with --to instead of --period.")
@click.option("--to", "date_to", help="Last day (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tickets_cmd(dsn: str | None, customer_number: str | None, period: str | None, date_from: str | None,
                date_to: str | None, as_json: bool) -> None:
    """The billable closed tickets of a customer in a period, with accounted time (reads OTRS only).

    Example: kivi-otrs tickets --customer 1000387 --period previous-month
    """
    from .otrs import OtrsClient

    settings, values = _settings(dsn)
    span = resolve_period(period or str(values["billing.period"]), settings.timezone,
                          date_from=parse_day(date_from, "--from"), date_to=parse_day(date_to, "--to"))
    with OtrsClient(settings) as client:
        result = client.closed_tickets(customer_number, span)
        requests_made = client.requests_made
    if as_json:
        click.echo(json.dumps({"period": {"start": span.start.isoformat(), "end": span.end.isoformat()},
                               "tickets": [t.as_dict() for t in result.tickets], "skipped": result.skipped,
                               "requests": requests_made}, ensure_ascii=False, indent=2))
        return
    click.echo(f"Period {span.label} ({settings.timezone}), states: {', '.join(settings.states)}")
    if not result.tickets:
        click.echo("No billable tickets.")
    else:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(settings.timezone)
        click.echo(f"{'Number':<18} {'Customer':<12} {'Closed':<16} {'Minutes':>8}  {'State':<20} Title")
        for t in result.tickets:
            closed = f"{t.closed.astimezone(zone):%Y-%m-%d %H:%M}" if t.closed else ""
            click.echo(f"{t.number:<18} {t.customer_id[:12]:<12} {closed:<16} {t.minutes:>8}  {t.state[:20]:<20} "
                       f"{t.title[:60]}")
        total = sum(t.minutes for t in result.tickets)
        click.echo(f"{len(result.tickets)} tickets, {total} minutes")
    for item in result.skipped:
        click.echo(f"skipped {item.get('ticket_number') or item.get('ticket_id')}: {item['reason']}")


@click.command("otrs-double")
@click.option("--port", type=int, default=8088, show_default=True, help="Loopback port.")
@click.option("--demo/--empty", default=True, show_default=True, help="Load the demo tickets.")
@click.option("--latency", type=float, default=0.0, help="Seconds to wait before each answer.")
def otrs_double_cmd(port: int, demo: bool, latency: float) -> None:
    """Run the local OTRS stand-in (for trying kivi-otrs without a helpdesk).

    Example: kivi-otrs otrs-double --port 8088; kivi-otrs config set otrs.base_url http://127.0.0.1:8088/znuny/
    """
    from .otrs_double import OtrsDouble

    double = OtrsDouble()
    double.latency = latency
    if demo:
        double.seed_demo()
    double.start(port)
    click.echo(f"OTRS stand-in at {double.base_url} (web service {double.webservice}, agent {double.user}, "
               "password demo-password); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        double.stop()


COMMANDS = [otrs_webservice_cmd, check_otrs_cmd, tickets_cmd, otrs_double_cmd]
