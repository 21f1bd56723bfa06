"""check-otrs: unknown state names, missing rw for write-back, a missing password, queues as the agent sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from conftest import otrs_settings_for

from kivi_otrs import config
from kivi_otrs.otrs import OtrsClient
from kivi_otrs.otrs_double import OtrsDouble


class StrictZnuny(OtrsDouble):
    """The stand-in plus two things real Znuny 7.1.7 does (Kernel/System/Ticket/TicketSearch.pm, TicketUpdate.pm).

    One unknown state name makes TicketSearch return nothing for the whole list; an agent with ``ro`` only on
    a queue gets ``TicketUpdate.AccessDenied`` before the request data is looked at.
    """

    read_only_queues: set[str]

    def ticket_search(self, data: dict[str, Any]) -> dict[str, Any]:
        states = data.get("States") or []
        if any(state not in {t.state for t in self.tickets.values()} | {"closed unsuccessful", "open", "new"}
               for state in (states if isinstance(states, list) else [states])):
            return {}
        return super().ticket_search(data)

    def ticket_update(self, data: dict[str, Any]) -> dict[str, Any]:
        ticket = self.tickets.get(int(str(data.get("TicketID") or 0)))
        if ticket is not None and ticket.queue in self.read_only_queues:
            return {"Error": {"ErrorCode": "TicketUpdate.AccessDenied",
                              "ErrorMessage": "TicketUpdate: User does not have access to the ticket!"}}
        return super().ticket_update(data)


@pytest.fixture
def znuny() -> Iterator[StrictZnuny]:
    with StrictZnuny() as double:
        double.read_only_queues = set()
        closed = datetime(2026, 10, 5, 9, tzinfo=UTC)
        double.add_ticket(11, "Drucker", "KIVI-1001", 30, closed, queue="Raw")
        double.add_ticket(12, "VPN", "KIVI-1001", 20, closed, queue="Raw")
        double.add_ticket(13, "Kasse", "KD 4711", 45, closed, queue="Billing")
        yield double


def rows_of(double: OtrsDouble, writeback: str | None = None, **overrides: Any) -> dict[str, tuple[bool, str]]:
    with OtrsClient(otrs_settings_for(double, **overrides), retries=0) as client:
        return {what.split(" ")[0]: (ok, detail) for what, ok, detail in client.check(writeback)}


def test_a_misspelled_state_that_empties_the_whole_search_fails_and_is_named(znuny: StrictZnuny) -> None:
    """One unknown name (wrong case) in billing.states: TicketSearch fails, naming that state."""
    ok, detail = rows_of(znuny, states=("closed successful", "Closed Unsuccessful"))["TicketSearch"]
    assert not ok
    assert "OTRS knows no state 'Closed Unsuccessful'" in detail and "closed successful alone finds tickets" in detail


def test_a_known_state_without_tickets_is_mentioned_but_passes(znuny: StrictZnuny) -> None:
    """All names known, one without tickets: a hint, not a failure (the list as a whole finds tickets)."""
    ok, detail = rows_of(znuny, states=("closed successful", "closed unsuccessful"))["TicketSearch"]
    assert ok and "no ticket at all in 'closed unsuccessful'" in detail


def test_missing_rw_is_detected_with_a_change_free_ticket_update(znuny: StrictZnuny) -> None:
    """Write-back on and ro only: TicketUpdate FAILs; the probe names a real ticket and carries no data to change."""
    znuny.read_only_queues = {"Raw", "Billing"}
    ok, detail = rows_of(znuny, "KivitendoOrder")["TicketUpdate"]
    assert not ok and "may read but not change ticket" in detail and "TicketUpdate.AccessDenied" in detail
    updates = [r["data"] for r in znuny.requests if r["operation"] == "TicketUpdate"]
    assert updates and all(set(u) == {"TicketID"} and int(u["TicketID"]) in znuny.tickets for u in updates)
    assert all(t.dynamic_fields == {} for t in znuny.tickets.values())
    znuny.read_only_queues = set()
    assert rows_of(znuny, "KivitendoOrder")["TicketUpdate"][0] is True


def test_without_write_back_no_ticket_update_is_sent(znuny: StrictZnuny) -> None:
    """Write-back off: nothing is sent to TicketUpdate (no MissingParameter errors in OTRS's log)."""
    ok, detail = rows_of(znuny)["TicketUpdate"]
    assert ok and "only needed for write-back" in detail
    assert znuny.calls["TicketUpdate"] == 0


@pytest.fixture
def configured(conn: psycopg.Connection[Any], znuny: StrictZnuny) -> StrictZnuny:
    with conn.transaction():
        for key, value in {"otrs.base_url": znuny.base_url, "otrs.user": znuny.user,
                           "otrs.password": znuny.password, "otrs.read_timeout": "2"}.items():
            config.set_value(conn, key, value)
    return znuny


def cli(*args: str, dsn: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kivi_otrs", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KIVI_OTRS_DSN": dsn, **(env or {})})


def test_check_otrs_lists_queues_as_the_agent_sees_them_and_fails_on_ro_with_write_back(
        conn: psycopg.Connection[Any], migrated_dsn: str, configured: StrictZnuny) -> None:
    """Tickets per queue are printed with the hidden-queue warning; with write-back a ro queue fails the check."""
    result = cli("check-otrs", dsn=migrated_dsn)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"Tickets in billable states by queue, as agent {configured.user} sees them (newest 200):" in lines
    assert any(line.split() == ["Raw", "2"] for line in lines) and any(line.split() == ["Billing", "1"] for line in lines)
    assert "TicketSearch leaves out tickets in queues the agent may not read" in result.stdout
    configured.read_only_queues = {"Billing"}
    with conn.transaction():
        config.set_value(conn, "writeback.enabled", "true")
    failed = cli("check-otrs", dsn=migrated_dsn)
    assert failed.returncode == 4
    assert any(line.split()[:3] == ["Billing", "1", "ro"] for line in failed.stdout.splitlines())
    assert f"FAIL  write-back: agent {configured.user} lacks rw on Billing" in failed.stdout
    assert all(t.dynamic_fields == {} for t in configured.tickets.values())


def test_missing_password_is_one_line_naming_otrs_password(conn: psycopg.Connection[Any], migrated_dsn: str,
                                                           configured: StrictZnuny) -> None:
    """No otrs.password and no KIVI_OTRS_OTRS_PASSWORD: one line naming both, nothing sent to OTRS."""
    with conn.transaction():
        config.set_value(conn, "otrs.password", "")
    result = cli("check-otrs", dsn=migrated_dsn)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: no OTRS agent password: set otrs.password (kivi-otrs config set otrs.password --from-env VAR) "
        "or the environment variable KIVI_OTRS_OTRS_PASSWORD"]
    assert configured.calls["SessionCreate"] == 0
