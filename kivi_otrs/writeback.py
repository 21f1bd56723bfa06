"""Write-back to OTRS: the billed order/position into a ticket dynamic field.

Entries are queued in ``kivi_otrs.writeback`` in the transaction that bills (or, via the
ledger trigger, releases) a ticket, and sent afterwards; while OTRS is down they stay
pending and are retried with growing pauses (``kivi-otrs writeback`` or the next
``bill``), and give up after :data:`MAX_ATTEMPTS`.
"""

from __future__ import annotations

from typing import Any

import psycopg

from . import config, db
from .errors import HelpdeskError, HelpdeskUnavailable
from .otrs import OtrsClient

MAX_ATTEMPTS = 12
BATCH = 200

PENDING_SQL = """
SELECT id, ticket_id, value FROM kivi_otrs.writeback
WHERE state = 'pending' AND next_attempt <= now()
ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
DONE_SQL = "UPDATE kivi_otrs.writeback SET state = 'done', done_at = now(), attempts = attempts + 1 WHERE id = %(id)s"
RETRY_SQL = """
UPDATE kivi_otrs.writeback
SET attempts = attempts + 1, last_error = %(error)s,
    state = CASE WHEN attempts + 1 >= %(max)s THEN 'failed' ELSE 'pending' END,
    next_attempt = now() + make_interval(mins => least(power(2, attempts)::int, 720))
WHERE id = %(id)s
"""


def process(conn: psycopg.Connection[Any], settings: config.OtrsSettings, field: str) -> dict[str, int]:
    """Send pending updates; returns counts of done / retry / failed."""
    counts = {"done": 0, "retry": 0, "failed": 0}
    with OtrsClient(settings) as client, conn.transaction():
        rows = conn.execute(PENDING_SQL, {"limit": BATCH}).fetchall()
        for entry_id, ticket_id, value in rows:
            try:
                client.update_ticket(int(ticket_id), {field: value})
            except HelpdeskUnavailable as exc:
                conn.execute(RETRY_SQL, {"id": entry_id, "error": db.redact(str(exc))[:500], "max": MAX_ATTEMPTS})
                counts["retry"] += 1
                break  # OTRS is down: keep the rest for later
            except HelpdeskError as exc:
                conn.execute(RETRY_SQL, {"id": entry_id, "error": db.redact(str(exc))[:500], "max": MAX_ATTEMPTS})
                counts["failed" if "InvalidParameter" in (exc.error_code or "") else "retry"] += 1
            else:
                conn.execute(DONE_SQL, {"id": entry_id})
                counts["done"] += 1
    return counts
