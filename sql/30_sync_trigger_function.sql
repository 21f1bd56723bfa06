-- drop: DROP FUNCTION IF EXISTS kivi_otrs.sync_trigger() CASCADE
-- Statement-level trigger function on kivitendo tables: mirrors what a kivitendo
-- statement changed into the OTRS customer backend, in the same transaction.
-- It never fails kivitendo's statement: on any error (e.g. a kivitendo upgrade
-- dropped a column we read) it marks the backend stale, logs a WARNING and lets
-- the statement commit; kivi-otrs doctor shows the error, kivi-otrs refresh repairs.
CREATE OR REPLACE FUNCTION kivi_otrs.sync_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_ids integer[];
    v_numbers text[];
    v_flag integer;
    v_full_refresh_above constant integer := 20000;
BEGIN
    BEGIN
        v_flag := (SELECT value::integer FROM kivi_otrs.install_state WHERE key = 'flag_config_id');
        IF TG_TABLE_NAME = 'contacts' THEN
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT cp_id FROM kivi_otrs_new);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT cp_id FROM kivi_otrs_old);
            ELSE
                v_ids := ARRAY(SELECT n.cp_id FROM kivi_otrs_new n JOIN kivi_otrs_old o USING (cp_id)
                               WHERE to_jsonb(n) - 'mtime' IS DISTINCT FROM to_jsonb(o) - 'mtime'
                               UNION SELECT cp_id FROM kivi_otrs_old WHERE cp_id NOT IN (SELECT cp_id FROM kivi_otrs_new)
                               UNION SELECT cp_id FROM kivi_otrs_new WHERE cp_id NOT IN (SELECT cp_id FROM kivi_otrs_old));
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                PERFORM kivi_otrs.refresh_contacts(v_ids);
            END IF;
        ELSIF TG_TABLE_NAME = 'customer_contacts' THEN
            PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
            IF TG_OP <> 'INSERT' THEN
                DELETE FROM kivi_otrs.contact_link l USING kivi_otrs_old o
                WHERE l.contact_id = o.contact_id AND l.customer_id = o.customer_id;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                INSERT INTO kivi_otrs.contact_link (contact_id, customer_id, main)
                SELECT contact_id, customer_id, main FROM kivi_otrs_new
                ON CONFLICT (contact_id, customer_id) DO UPDATE SET main = EXCLUDED.main;
            END IF;
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT contact_id FROM kivi_otrs_new);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT contact_id FROM kivi_otrs_old);
            ELSE
                v_ids := ARRAY(SELECT contact_id FROM kivi_otrs_new UNION SELECT contact_id FROM kivi_otrs_old);
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                PERFORM kivi_otrs.refresh_contacts(v_ids);
            END IF;
        ELSIF TG_TABLE_NAME = 'customer' THEN
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_new);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_old);
                v_numbers := ARRAY(SELECT customernumber FROM kivi_otrs_old);
            ELSE
                v_ids := ARRAY(SELECT n.id FROM kivi_otrs_new n JOIN kivi_otrs_old o USING (id)
                               WHERE to_jsonb(n) - 'mtime' IS DISTINCT FROM to_jsonb(o) - 'mtime');
                v_numbers := ARRAY(SELECT customernumber FROM kivi_otrs_old WHERE id = ANY (v_ids));
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                PERFORM kivi_otrs.refresh_customers(v_ids, v_numbers);
            END IF;
        ELSIF TG_TABLE_NAME = 'custom_variables' THEN
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT trans_id FROM kivi_otrs_new WHERE config_id = v_flag);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT trans_id FROM kivi_otrs_old WHERE config_id = v_flag);
            ELSE
                v_ids := ARRAY(SELECT trans_id FROM kivi_otrs_new WHERE config_id = v_flag
                               UNION SELECT trans_id FROM kivi_otrs_old WHERE config_id = v_flag);
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                PERFORM kivi_otrs.refresh_contacts(v_ids);
            END IF;
        ELSIF TG_TABLE_NAME = 'custom_variable_configs' THEN
            -- Each statement may name only the transition tables its event has: one
            -- expression mentioning both fails for INSERT and DELETE (kivi_otrs_old /
            -- kivi_otrs_new "does not exist"), so every event gets its own query.
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_new WHERE id = v_flag);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_old WHERE id = v_flag);
            ELSE
                v_ids := ARRAY(SELECT id FROM kivi_otrs_new WHERE id = v_flag
                               UNION SELECT id FROM kivi_otrs_old WHERE id = v_flag);
            END IF;
            IF cardinality(v_ids) > 0 THEN
                PERFORM kivi_otrs.refresh_all();
            END IF;
        ELSIF TG_TABLE_NAME = 'countries' THEN
            PERFORM kivi_otrs.refresh_all();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        UPDATE kivi_otrs.sync_state
        SET stale = true, last_error = TG_TABLE_NAME || ' ' || TG_OP || ': ' || SQLERRM, last_error_at = now();
        RAISE WARNING 'kivi-otrs: the OTRS customer backend was not updated (%); run kivi-otrs doctor', SQLERRM;
    END;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.sync_trigger() IS 'Keeps the OTRS customer backend in step with kivitendo; never fails kivitendo''s statement';
