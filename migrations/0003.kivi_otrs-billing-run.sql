-- kivi-otrs monthly billing run: audit trail and the OTRS write-back queue.
-- depends: 0002.kivi_otrs-billing

CREATE TABLE kivi_otrs.audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    customer_number text,
    oe_id integer,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at_idx ON kivi_otrs.audit (at);
COMMENT ON TABLE kivi_otrs.audit IS 'Who billed, released or wrote back what and when (the ledger holds the per-ticket OTRS data)';
COMMENT ON COLUMN kivi_otrs.audit.id IS 'Entry';
COMMENT ON COLUMN kivi_otrs.audit.at IS 'When';
COMMENT ON COLUMN kivi_otrs.audit.actor IS 'kivitendo login or OS user';
COMMENT ON COLUMN kivi_otrs.audit.action IS 'claim, bill, release, writeback';
COMMENT ON COLUMN kivi_otrs.audit.customer_number IS 'Customer concerned';
COMMENT ON COLUMN kivi_otrs.audit.oe_id IS 'Order concerned';
COMMENT ON COLUMN kivi_otrs.audit.details IS 'Ticket numbers, counts, period, errors';

CREATE TABLE kivi_otrs.writeback (
    id bigserial PRIMARY KEY,
    ticket_id bigint NOT NULL,
    ledger_id bigint REFERENCES kivi_otrs.ledger(id) ON DELETE CASCADE,
    value text NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz
);
CREATE INDEX writeback_pending_idx ON kivi_otrs.writeback (next_attempt) WHERE state = 'pending';
COMMENT ON TABLE kivi_otrs.writeback IS 'Dynamic-field updates to send to OTRS (billed: order/position; released: empty), retried while OTRS is down';
COMMENT ON COLUMN kivi_otrs.writeback.id IS 'Queue entry';
COMMENT ON COLUMN kivi_otrs.writeback.ticket_id IS 'OTRS TicketID';
COMMENT ON COLUMN kivi_otrs.writeback.ledger_id IS 'Ledger entry that caused it';
COMMENT ON COLUMN kivi_otrs.writeback.value IS 'Value for the dynamic field (empty clears it)';
COMMENT ON COLUMN kivi_otrs.writeback.state IS 'pending, done, failed (gave up after the retry limit)';
COMMENT ON COLUMN kivi_otrs.writeback.attempts IS 'Attempts so far';
COMMENT ON COLUMN kivi_otrs.writeback.last_error IS 'Last error (one line, no secrets)';
COMMENT ON COLUMN kivi_otrs.writeback.next_attempt IS 'Not before';
COMMENT ON COLUMN kivi_otrs.writeback.created_at IS 'Queued at';
COMMENT ON COLUMN kivi_otrs.writeback.done_at IS 'Sent at';
