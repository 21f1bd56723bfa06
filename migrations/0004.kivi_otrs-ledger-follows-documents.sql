-- kivi-otrs ledger follows kivitendo's billing documents: a ticket on a posted invoice
-- stays billed whatever happens to its order; copies of ticket positions are recognised
-- by the position's text digest as well as by the marker.
-- depends: 0003.kivi_otrs-billing-run

ALTER TABLE kivi_otrs.ledger DROP CONSTRAINT ledger_state_check;
ALTER TABLE kivi_otrs.ledger ADD CONSTRAINT ledger_state_check
    CHECK (state IN ('reserved', 'billed', 'invoiced', 'released'));
ALTER TABLE kivi_otrs.ledger
    ADD COLUMN invoice_id integer,
    ADD COLUMN invoice_item_id integer,
    ADD COLUMN invoiced_at timestamptz,
    ADD COLUMN position_digest text,
    ADD COLUMN bound_by text,
    ADD CONSTRAINT ledger_invoiced_check CHECK (state <> 'invoiced' OR invoice_id IS NOT NULL);
COMMENT ON COLUMN kivi_otrs.ledger.state IS
    'reserved (offered to an unsaved order), billed (on a saved sales order position), invoiced (on an invoice: stays billed whatever happens to the order), released (position or order deleted before invoicing, or reservation given up)';
COMMENT ON COLUMN kivi_otrs.ledger.invoice_id IS 'public.ar.id of the invoice that bills the ticket (record link or periodic invoice)';
COMMENT ON COLUMN kivi_otrs.ledger.invoice_item_id IS 'public.invoice.id of the invoice position, when kivitendo linked the items';
COMMENT ON COLUMN kivi_otrs.ledger.invoiced_at IS 'When the ticket reached an invoice';
COMMENT ON COLUMN kivi_otrs.ledger.position_digest IS 'md5 of the saved position''s description and long description without the marker: recognises copies whose marker was lost';
COMMENT ON COLUMN kivi_otrs.ledger.bound_by IS 'How the saved position was tied to the ticket: marker or ticket number (marker lost before the first save)';

CREATE INDEX ledger_digest_idx ON kivi_otrs.ledger (position_digest) WHERE state IN ('billed', 'invoiced');
CREATE INDEX ledger_ticket_idx ON kivi_otrs.ledger (ticket_id);
CREATE INDEX ledger_invoice_idx ON kivi_otrs.ledger (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX ledger_reserved_customer_idx ON kivi_otrs.ledger (customer_number, parts_id) WHERE state = 'reserved';

-- Existing billed positions get their digest (the same expression as kivi_otrs.position_digest()).
UPDATE kivi_otrs.ledger l
SET position_digest = md5(coalesce(oi.description, '') || chr(31)
                          || regexp_replace(coalesce(oi.longdescription, ''),
                                            '<!-- kivi-otrs:[0-9a-f-]{36} -->', '', 'g')),
    bound_by = 'marker'
FROM public.orderitems oi
WHERE oi.id = l.orderitems_id AND l.state = 'billed';
