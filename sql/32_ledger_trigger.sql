-- drop: DROP FUNCTION IF EXISTS kivi_otrs.ledger_trigger() CASCADE
-- Follows kivitendo's order positions: a saved position carrying a ledger marker turns
-- the reservation into "billed"; a deleted position (or order) releases its tickets.
-- Editing a position keeps its tickets billed (the link is the position id, not the text).
-- Never fails kivitendo's statement (errors become a WARNING and a stale sync state).
CREATE OR REPLACE FUNCTION kivi_otrs.ledger_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    BEGIN
        IF TG_OP = 'DELETE' THEN
            UPDATE kivi_otrs.ledger l
            SET state = 'released', released_at = now(), release_reason = 'position deleted'
            FROM kivi_otrs_old o
            WHERE l.orderitems_id = o.id AND l.state = 'billed';
            -- Clear the OTRS dynamic field of released tickets (kivi-otrs writeback sends it).
            INSERT INTO kivi_otrs.writeback (ticket_id, ledger_id, value)
            SELECT l.ticket_id, l.id, ''
            FROM kivi_otrs.ledger l JOIN kivi_otrs_old o ON l.orderitems_id = o.id
            WHERE l.state = 'released' AND l.released_at = now()
              AND EXISTS (SELECT 1 FROM kivi_otrs.settings
                          WHERE key = 'writeback.enabled' AND lower(value) IN ('1', 'true', 'yes', 'on', 't', 'y'));
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            UPDATE kivi_otrs.ledger l
            SET state = 'billed', oe_id = n.trans_id, orderitems_id = n.id, reserved_until = NULL,
                released_at = NULL, release_reason = NULL
            FROM kivi_otrs_new n
            WHERE n.longdescription LIKE '%kivi-otrs:%'
              -- compared as uuid so the unique index on marker is used (no ledger scan per row)
              AND l.marker = substring(n.longdescription
                                       FROM 'kivi-otrs:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})')::uuid
              AND (l.state = 'reserved' OR (l.state = 'released' AND l.orderitems_id IS NOT NULL));
        END IF;
    EXCEPTION WHEN OTHERS THEN
        UPDATE kivi_otrs.sync_state
        SET stale = true, last_error = 'orderitems ' || TG_OP || ': ' || SQLERRM, last_error_at = now();
        RAISE WARNING 'kivi-otrs: the billing ledger was not updated (%); run kivi-otrs doctor', SQLERRM;
    END;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.ledger_trigger() IS 'Links saved kivitendo positions to ledger reservations and releases deleted ones';

DROP TRIGGER IF EXISTS kivi_otrs_ledger_insert ON public.orderitems;
DROP TRIGGER IF EXISTS kivi_otrs_ledger_update ON public.orderitems;
DROP TRIGGER IF EXISTS kivi_otrs_ledger_delete ON public.orderitems;
CREATE TRIGGER kivi_otrs_ledger_insert AFTER INSERT ON public.orderitems
    REFERENCING NEW TABLE AS kivi_otrs_new FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.ledger_trigger();
CREATE TRIGGER kivi_otrs_ledger_update AFTER UPDATE ON public.orderitems
    REFERENCING OLD TABLE AS kivi_otrs_old NEW TABLE AS kivi_otrs_new
    FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.ledger_trigger();
CREATE TRIGGER kivi_otrs_ledger_delete AFTER DELETE ON public.orderitems
    REFERENCING OLD TABLE AS kivi_otrs_old FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.ledger_trigger();
