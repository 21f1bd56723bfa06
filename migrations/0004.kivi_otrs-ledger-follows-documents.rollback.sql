-- Undo 0004: invoiced entries become billed again (the older ledger knew no invoices).
DROP INDEX kivi_otrs.ledger_reserved_customer_idx;
DROP INDEX kivi_otrs.ledger_invoice_idx;
DROP INDEX kivi_otrs.ledger_ticket_idx;
DROP INDEX kivi_otrs.ledger_digest_idx;
ALTER TABLE kivi_otrs.ledger DROP CONSTRAINT ledger_invoiced_check;
UPDATE kivi_otrs.ledger SET state = 'billed' WHERE state = 'invoiced' AND orderitems_id IS NOT NULL;
UPDATE kivi_otrs.ledger SET state = 'released', release_reason = 'rollback of 0004' WHERE state = 'invoiced';
ALTER TABLE kivi_otrs.ledger
    DROP COLUMN bound_by,
    DROP COLUMN position_digest,
    DROP COLUMN invoiced_at,
    DROP COLUMN invoice_item_id,
    DROP COLUMN invoice_id;
ALTER TABLE kivi_otrs.ledger DROP CONSTRAINT ledger_state_check;
ALTER TABLE kivi_otrs.ledger ADD CONSTRAINT ledger_state_check CHECK (state IN ('reserved', 'billed', 'released'));
