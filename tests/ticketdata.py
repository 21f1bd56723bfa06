"""Ticket values as the OTRS client hands them to the billing code (plain data, no mocking)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal


@dataclass
class TicketData:
    ticket_id: int
    number: str
    title: str
    minutes: Decimal
    customer_id: str = "KIVI-1001"
    state: str = "closed successful"
    queue: str = "Raw"
    service: str = ""
    type: str = "Unclassified"
    customer_user: str = "anna.meyer@example.org"
    closed: datetime | None = datetime(2026, 10, 15, 9, 30, tzinfo=UTC)

    @property
    def time_units(self) -> Decimal:
        return self.minutes
