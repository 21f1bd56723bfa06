"""Pieces every ``kivi-otrs`` command module shares."""

from __future__ import annotations

from datetime import date

import click

from . import db
from .errors import KiviOtrsError

DSN_OPTION = click.option(
    "--dsn", envvar=db.DSN_ENV, help="kivitendo database, e.g. postgresql://kivitendo@localhost/firma (or $KIVI_OTRS_DSN)."
)


def parse_day(value: str | None, name: str) -> date | None:
    """An inclusive ``--from``/``--to`` day, or a one-line error."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise KiviOtrsError(f"{name} must be a date like 2026-10-31") from None
