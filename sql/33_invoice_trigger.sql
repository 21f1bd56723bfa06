-- drop: DROP FUNCTION IF EXISTS kivi_otrs.invoice_link_trigger() CASCADE
-- drop: DROP FUNCTION IF EXISTS kivi_otrs.invoice_delete_trigger() CASCADE
-- An invoice that kivitendo posts from an order (directly, or through a delivery order) links
-- its positions to the order's positions in public.record_links: the tickets of those order
-- positions become "invoiced" and stay billed whatever later happens to the order (closed,
-- edited, deleted). Never fails kivitendo's statement.
CREATE OR REPLACE FUNCTION kivi_otrs.invoice_link_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off  -- a few rows: index lookups whatever the (possibly stale) statistics say
SET enable_hashjoin = off
AS $fn$
BEGIN
    BEGIN
        WITH RECURSIVE back(item_table, item_id, invoice_item) AS (
            SELECT n.from_table::text, n.from_id, n.to_id
            FROM kivi_otrs_new n WHERE n.to_table = 'invoice'
          UNION
            SELECT r.from_table::text, r.from_id, b.invoice_item
            FROM back b JOIN public.record_links r ON r.to_table = b.item_table AND r.to_id = b.item_id
            WHERE b.item_table <> 'orderitems' AND r.from_table IN ('orderitems', 'delivery_order_items')
        )
        UPDATE kivi_otrs.ledger l
        SET state = 'invoiced', invoice_item_id = b.invoice_item, invoice_id = i.trans_id, invoiced_at = now()
        FROM back b JOIN public.invoice i ON i.id = b.invoice_item
        WHERE b.item_table = 'orderitems' AND l.orderitems_id = b.item_id AND l.state = 'billed';
    EXCEPTION WHEN OTHERS THEN
        UPDATE kivi_otrs.sync_state
        SET stale = true, last_error = 'record_links: ' || SQLERRM, last_error_at = now();
        RAISE WARNING 'kivi-otrs: the billing ledger did not see an invoice (%); run kivi-otrs doctor', SQLERRM;
    END;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.invoice_link_trigger() IS 'Marks tickets invoiced when kivitendo links invoice positions to their order positions';

-- An invoice deleted (kivitendo allows it for some invoices): its tickets are billed again by
-- their order position if it still exists, else released.
CREATE OR REPLACE FUNCTION kivi_otrs.invoice_delete_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off  -- a few rows: index lookups whatever the (possibly stale) statistics say
SET enable_hashjoin = off
AS $fn$
BEGIN
    BEGIN
        UPDATE kivi_otrs.ledger l
        SET state = CASE WHEN p.present THEN 'billed' ELSE 'released' END,
            release_reason = CASE WHEN p.present THEN NULL ELSE 'invoice deleted, order position gone' END,
            released_at = CASE WHEN p.present THEN NULL ELSE now() END,
            invoice_id = NULL, invoice_item_id = NULL, invoiced_at = NULL
        FROM (SELECT x.id, EXISTS (SELECT 1 FROM public.orderitems oi WHERE oi.id = x.orderitems_id) AS present
              FROM kivi_otrs.ledger x JOIN kivi_otrs_old o ON x.invoice_id = o.id
              WHERE x.state = 'invoiced') p
        WHERE l.id = p.id;
    EXCEPTION WHEN OTHERS THEN
        UPDATE kivi_otrs.sync_state
        SET stale = true, last_error = 'ar DELETE: ' || SQLERRM, last_error_at = now();
        RAISE WARNING 'kivi-otrs: the billing ledger did not see a deleted invoice (%); run kivi-otrs doctor', SQLERRM;
    END;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.invoice_delete_trigger() IS 'Returns the tickets of a deleted invoice to their order position (or releases them)';

DROP TRIGGER IF EXISTS kivi_otrs_invoice_link ON public.record_links;
CREATE TRIGGER kivi_otrs_invoice_link AFTER INSERT ON public.record_links
    REFERENCING NEW TABLE AS kivi_otrs_new FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.invoice_link_trigger();
DROP TRIGGER IF EXISTS kivi_otrs_invoice_delete ON public.ar;
CREATE TRIGGER kivi_otrs_invoice_delete AFTER DELETE ON public.ar
    REFERENCING OLD TABLE AS kivi_otrs_old FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.invoice_delete_trigger();
