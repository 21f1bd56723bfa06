-- drop: DROP FUNCTION IF EXISTS kivi_otrs.ledger_trigger() CASCADE
-- drop: DROP FUNCTION IF EXISTS kivi_otrs.once_trigger() CASCADE
-- The ledger follows kivitendo's documents and decides at save time (the database, not the
-- browser, holds the invariant "a ticket's minutes are in saved billing documents at most once"):
-- * a sales order position is tied to its ticket by the marker comment the button/bill put in
--   its long description (only the exact comment form counts: OTRS text is HTML-escaped and
--   cannot forge it), or, when an editor dropped the marker before the first save, by the
--   reserved ticket's number in its text (exactly one reservation of that customer and article);
-- * once saved, the tie is the position id; the text's digest recognises copies;
-- * saving a COPY (save as new, quotation -> order, a late save after the reservation expired
--   and a colleague billed the ticket) of a ticket that is already billed elsewhere is refused
--   with a message naming ticket and order (inside kivitendo's error box): a second billing document
--   never gets saved;
-- * a saved ticket position gets recurring_billing_mode 'once' (periodic invoices bill it once,
--   whatever the order screen posted);
-- * deleting a position or order releases only tickets that no invoice bills.
-- Errors other than the refusal never fail kivitendo's statement (WARNING + stale sync state).
CREATE OR REPLACE FUNCTION kivi_otrs.ledger_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = on
SET enable_hashjoin = on
SET enable_mergejoin = on
AS $fn$
DECLARE
    conflict record;
    m_item int[];
    m_ledger bigint[];
    m_how text[];
    m_trans int[];
    m_digest text[];
    m_pos int[];
    m_count bigint;
BEGIN
    BEGIN
        IF TG_OP = 'DELETE' THEN
            SET LOCAL enable_seqscan = off;  -- index lookups whatever the (possibly stale) statistics say
            SET LOCAL enable_hashjoin = off;
            SET LOCAL enable_mergejoin = off;
            UPDATE kivi_otrs.ledger l
            SET state = 'released', released_at = now(), release_reason = 'position deleted'
            FROM kivi_otrs_old o
            WHERE l.orderitems_id = o.id AND l.state = 'billed';
            -- Clear the OTRS dynamic field of released tickets (kivi-otrs writeback sends it).
            INSERT INTO kivi_otrs.writeback (ticket_id, ledger_id, value)
            SELECT l.ticket_id, l.id, ''
            FROM kivi_otrs.ledger l JOIN kivi_otrs_old o ON l.orderitems_id = o.id
            WHERE l.state = 'released' AND l.released_at = now() AND kivi_otrs.writeback_enabled();
            RETURN NULL;
        END IF;

        -- Which ledger entry each saved sales order position is (or would become), best reason first:
        -- already tied (position id), its marker, a copy of a billing position's text, the one
        -- reservation of that customer and article whose ticket number the text names.
        -- Plans are made per statement (EXECUTE) for its size: a kivitendo save or a chunk of the monthly
        -- run (up to 2000 rows) gets index lookups into the ledger whatever the statistics say (a long
        -- monthly run grows the ledger and oe faster than autovacuum analyses them); a bulk statement
        -- (kivitendo mass updates) gets the planner's own choice.
        IF (SELECT count(*) FROM kivi_otrs_new) <= 2000 THEN
            SET LOCAL enable_seqscan = off;
            SET LOCAL enable_hashjoin = off;
            SET LOCAL enable_mergejoin = off;
        END IF;
        EXECUTE $q$
        WITH saved AS (
            SELECT n.id, n.trans_id, n.position, n.parts_id, btrim(cu.customernumber) AS customer_number,
                   coalesce(n.description, '') || ' ' || coalesce(n.longdescription, '') AS text,
                   substring(n.longdescription
                             FROM '.*<!-- kivi-otrs:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) -->')::uuid
                       AS marker,
                   kivi_otrs.position_digest(n.description, n.longdescription) AS digest
            -- LATERAL: from each saved row to its order and customer by primary key, whatever the
            -- planner believes about the size of the transition table and of oe.
            FROM kivi_otrs_new n
            CROSS JOIN LATERAL (SELECT oe.customer_id FROM public.oe oe
                                WHERE oe.id = n.trans_id AND oe.record_type::text = 'sales_order' OFFSET 0) oe
            LEFT JOIN LATERAL (SELECT cu.customernumber FROM public.customer cu
                               WHERE cu.id = oe.customer_id OFFSET 0) cu ON true
        ), direct AS (
            -- Every ledger lookup is LATERAL from the saved row with an OFFSET 0 fence: one index probe
            -- per row and key (position id, marker, digest, customer+article), never a join the planner
            -- sizes from statistics that a monthly run outgrows within minutes.
            SELECT s.id AS item_id, l.id AS ledger_id, 'position' AS how, 1 AS rank, s.trans_id, s.digest, s.position
            FROM saved s CROSS JOIN LATERAL (SELECT l.id, l.state FROM kivi_otrs.ledger l
                                             WHERE l.orderitems_id = s.id OFFSET 0) l
            WHERE l.state IN ('billed', 'invoiced')
            UNION ALL
            SELECT s.id, l.id, 'marker', 2, s.trans_id, s.digest, s.position
            FROM saved s CROSS JOIN LATERAL (SELECT l.id FROM kivi_otrs.ledger l WHERE l.marker = s.marker OFFSET 0) l
            UNION ALL
            SELECT s.id, l.id, 'copy', 3, s.trans_id, s.digest, s.position
            FROM saved s CROSS JOIN LATERAL (SELECT l.id, l.orderitems_id, l.parts_id FROM kivi_otrs.ledger l
                                             WHERE l.position_digest = s.digest AND l.state IN ('billed', 'invoiced')
                                             OFFSET 0) l
            WHERE l.orderitems_id <> s.id AND l.parts_id = s.parts_id
        ), by_number AS (
            SELECT s.id AS item_id, min(l.id) AS ledger_id, count(*) AS n, s.trans_id, s.digest, s.position
            FROM saved s CROSS JOIN LATERAL (SELECT l.id, l.ticket_number FROM kivi_otrs.ledger l
                                             WHERE l.state = 'reserved' AND l.customer_number = s.customer_number
                                               AND l.parts_id = s.parts_id AND l.orderitems_id IS NULL OFFSET 0) l
            WHERE s.marker IS NULL AND NOT EXISTS (SELECT 1 FROM direct d WHERE d.item_id = s.id)
              AND s.text ~ ('(^|[^0-9])' || regexp_replace(l.ticket_number, '([^0-9A-Za-z])', '\\\1', 'g') || '([^0-9]|$)')
            GROUP BY s.id, s.trans_id, s.digest, s.position
        ), best AS (
            SELECT DISTINCT ON (item_id) item_id, ledger_id, how, trans_id, digest, position
            FROM (SELECT item_id, ledger_id, how, rank, trans_id, digest, position FROM direct
                  UNION ALL
                  SELECT b.item_id, b.ledger_id, 'ticket number', 4, b.trans_id, b.digest, b.position FROM by_number b
                  WHERE b.n = 1 AND NOT EXISTS (SELECT 1 FROM direct d WHERE d.ledger_id = b.ledger_id)) c
            ORDER BY item_id, rank, ledger_id
        )
        SELECT array_agg(item_id), array_agg(ledger_id), array_agg(how), array_agg(trans_id), array_agg(digest),
               array_agg(position), count(*)
        FROM best        $q$ INTO m_item, m_ledger, m_how, m_trans, m_digest, m_pos, m_count;
        IF m_count = 0 THEN
            RETURN NULL;
        END IF;

        -- Serialise with claims and other saves of the same tickets: a lock per ticket, or for a bulk
        -- statement (kivitendo mass updates) one lock on the ledger instead of filling the lock table.
        IF m_count > 1000 THEN
            LOCK TABLE kivi_otrs.ledger IN SHARE ROW EXCLUSIVE MODE;
        ELSE
            PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.ticket:' || t.ticket_id, 0))
            FROM (SELECT DISTINCT l.ticket_id FROM kivi_otrs.ledger l WHERE l.id = ANY(m_ledger) ORDER BY 1) t;
        END IF;

        -- Refuse a saved position whose ticket is already billed by another position or invoice
        -- (a copy), or whose minutes the other live entries of the ticket already cover (billed
        -- meanwhile by a colleague, or reserved for another order).
        EXECUTE $q$
        SELECT s.ordnumber AS here, l.ticket_number,
               CASE WHEN a.kind = 'copy' THEN l.state ELSE other.state END AS there_state,
               coalesce(CASE WHEN a.kind = 'copy' THEN (SELECT oe.ordnumber FROM public.oe oe WHERE oe.id = l.oe_id)
                             ELSE other.ordnumber END, '') AS there,
               other.claimed_by, other.reserved_until
        FROM unnest($1, $2, $3, $4) AS m(item_id, ledger_id, how, trans_id)
        CROSS JOIN LATERAL (SELECT oe.ordnumber FROM public.oe oe WHERE oe.id = m.trans_id OFFSET 0) s
        CROSS JOIN LATERAL (SELECT * FROM kivi_otrs.ledger l WHERE l.id = m.ledger_id OFFSET 0) l
        CROSS JOIN LATERAL (SELECT CASE WHEN m.how = 'copy' OR (m.how <> 'position' AND l.state IN ('billed', 'invoiced')
                                                               AND l.orderitems_id IS DISTINCT FROM m.item_id)
                                        THEN 'copy' ELSE 'bind' END AS kind) a
        LEFT JOIN LATERAL (
            SELECT o.state, o.claimed_by, o.reserved_until,
                   (SELECT oe.ordnumber FROM public.oe oe WHERE oe.id = o.oe_id) AS ordnumber,
                   sum(o.minutes) OVER () AS minutes
            -- OFFSET 0: the ticket's few entries by its index, then filtered; without the fence a
            -- planner with stale statistics ANDs in the partial state indexes and reads them whole.
            FROM (SELECT * FROM kivi_otrs.ledger WHERE ticket_id = l.ticket_id OFFSET 0) o
            WHERE o.id <> l.id AND o.state <> 'released'
              AND (o.state IN ('billed', 'invoiced') OR (o.state = 'reserved' AND o.reserved_until > now()))
              AND o.orderitems_id IS DISTINCT FROM m.item_id
            ORDER BY o.state = 'reserved', o.id DESC
            LIMIT 1) other ON true
        WHERE a.kind = 'copy'
           OR (m.how IN ('marker', 'ticket number') AND l.state IN ('reserved', 'released')
               AND other.minutes + l.minutes > (SELECT max(t.ticket_minutes) FROM kivi_otrs.ledger t
                                                WHERE t.ticket_id = l.ticket_id))
        LIMIT 1
        $q$ INTO conflict USING m_item, m_ledger, m_how, m_trans;
        IF conflict.ticket_number IS NOT NULL THEN
            IF conflict.there = conflict.here AND conflict.there_state <> 'reserved' THEN
                RAISE EXCEPTION USING ERRCODE = 'KO001', MESSAGE = format(
                    'kivi-otrs: Ticket %s steht schon in Auftrag %s (doppelte Position); bitte eine davon entfernen',
                    conflict.ticket_number, conflict.here);
            END IF;
            IF conflict.there_state = 'reserved' THEN
                RAISE EXCEPTION USING ERRCODE = 'KO001', MESSAGE = format(
                    'kivi-otrs: Ticket %s ist bis %s für einen anderen Auftrag reserviert (%s); Position entfernen, dann speichern',
                    conflict.ticket_number, to_char(conflict.reserved_until, 'DD.MM.YYYY HH24:MI'), conflict.claimed_by);
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'KO001', MESSAGE = format(
                'kivi-otrs: Ticket %s ist bereits abgerechnet%s; die Position in Auftrag %s kann nicht gespeichert werden, bitte entfernen',
                conflict.ticket_number,
                CASE WHEN conflict.there_state = 'invoiced' THEN ' (Rechnung zu Auftrag ' || conflict.there || ')'
                     WHEN conflict.there <> '' THEN ' in Auftrag ' || conflict.there ELSE '' END,
                conflict.here);
        END IF;

        -- Tie the saved positions to their tickets.
        EXECUTE $q$
        UPDATE kivi_otrs.ledger l
        SET state = CASE WHEN l.state = 'invoiced' THEN 'invoiced' ELSE 'billed' END,
            oe_id = m.trans_id, orderitems_id = m.item_id, reserved_until = NULL,
            released_at = NULL, release_reason = NULL, position_digest = m.digest,
            bound_by = CASE WHEN m.how = 'position' THEN l.bound_by ELSE m.how END
        FROM unnest($1, $2, $3, $4, $5) AS m(item_id, ledger_id, how, trans_id, digest)
        WHERE l.id = m.ledger_id AND m.how <> 'copy'
        $q$ USING m_item, m_ledger, m_how, m_trans, m_digest;
        -- Write-back: the OTRS dynamic field gets "<order number>/<position>" (kivi-otrs writeback sends it).
        IF kivi_otrs.writeback_enabled() THEN
            INSERT INTO kivi_otrs.writeback (ticket_id, ledger_id, value)
            SELECT l.ticket_id, l.id, oe.ordnumber || '/' || m.position
            FROM unnest(m_item, m_ledger, m_how, m_trans, m_pos) AS m(item_id, ledger_id, how, trans_id, position)
            CROSS JOIN LATERAL (SELECT oe.ordnumber FROM public.oe oe WHERE oe.id = m.trans_id OFFSET 0) oe
            CROSS JOIN LATERAL (SELECT l.id, l.ticket_id FROM kivi_otrs.ledger l WHERE l.id = m.ledger_id OFFSET 0) l
            WHERE m.how IN ('marker', 'ticket number');
        END IF;
        -- A periodic invoice took the position: the ticket is invoiced (only the job's UPDATE sets the field).
        IF EXISTS (SELECT 1 FROM kivi_otrs_new n WHERE n.recurring_billing_invoice_id IS NOT NULL) THEN
            UPDATE kivi_otrs.ledger l
            SET state = 'invoiced', invoice_id = n.recurring_billing_invoice_id, invoiced_at = now()
            FROM kivi_otrs_new n
            WHERE l.orderitems_id = n.id AND l.state = 'billed' AND n.recurring_billing_invoice_id IS NOT NULL;
        END IF;
        -- Ticket minutes are one-off: periodic invoices must bill them once. Positions with the marker
        -- or already tied get it from kivi_otrs.once_trigger() before they are written; a position tied
        -- by its ticket number only now is updated here.
        IF 'ticket number' = ANY(m_how) THEN
            UPDATE public.orderitems oi SET recurring_billing_mode = 'once'
            FROM unnest(m_item, m_how) AS m(item_id, how)
            WHERE oi.id = m.item_id AND m.how = 'ticket number' AND oi.recurring_billing_mode::text = 'always';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'KO001' THEN
            RAISE;
        WHEN OTHERS THEN
            UPDATE kivi_otrs.sync_state
            SET stale = true, last_error = 'orderitems ' || TG_OP || ': ' || SQLERRM, last_error_at = now();
            RAISE WARNING 'kivi-otrs: the billing ledger was not updated (%); run kivi-otrs doctor', SQLERRM;
    END;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.ledger_trigger() IS 'Ties saved kivitendo sales order positions to their tickets, refuses second billing documents, releases deleted ones';

-- Before a position is written: a ticket position (marker, or already tied to a ticket) is billed
-- once by periodic invoices, whatever the order screen posted (kivitendo 4.1 keeps the field only
-- in the lazily loaded second row of a position and saves 'always' otherwise).
CREATE OR REPLACE FUNCTION kivi_otrs.once_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NEW.recurring_billing_mode::text = 'always'
       AND (NEW.longdescription LIKE '%<!-- kivi-otrs:%'
            OR (TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM kivi_otrs.ledger l
                                             WHERE l.orderitems_id = NEW.id AND l.state IN ('billed', 'invoiced')))) THEN
        NEW.recurring_billing_mode := 'once';
    END IF;
    RETURN NEW;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'kivi-otrs: recurring billing mode of a ticket position not checked (%); run kivi-otrs doctor', SQLERRM;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.once_trigger() IS 'Ticket positions are billed once by kivitendo''s periodic invoices';

DROP TRIGGER IF EXISTS kivi_otrs_ledger_once ON public.orderitems;
CREATE TRIGGER kivi_otrs_ledger_once BEFORE INSERT OR UPDATE ON public.orderitems
    FOR EACH ROW EXECUTE FUNCTION kivi_otrs.once_trigger();
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
