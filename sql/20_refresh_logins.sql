-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_logins(text[])
-- Recompute the customer users with these logins from kivitendo, under the logins'
-- locks (kivi_otrs.lock_logins).
--
-- Cheap for kivitendo's one-row saves (issue 13):
--  * a login that has no customer user and none of whose contacts is linked to a customer
--    cannot get one: it is not recomputed (a contact inserted before its customer link,
--    as kivitendo's CSV import does, costs two index lookups here);
--  * rows that did not change (change_time alone does not count) are left alone and changed
--    ones are updated in place: a
--    contact save that keeps login, search text and validity is a HOT update (fillfactor
--    70, migration 0006) and touches none of the mirror's indexes;
--  * the statement is static SQL: up to 50 logins use a generic plan that plpgsql keeps
--    for the session (plan_cache_mode below): index lookups for a few ids, planned once
--    instead of about 1 ms of planning the inlined row function on every save. More logins
--    (bulk statements) switch to force_custom_plan, so the same statement is planned with
--    the actual ids and the planner can choose hash joins and sequential scans.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_logins(p_logins text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_logins text[];
    v_contacts integer[];
BEGIN
    IF p_logins IS NULL OR cardinality(p_logins) = 0 THEN
        RETURN;
    END IF;
    PERFORM kivi_otrs.lock_logins(p_logins);
    IF cardinality(p_logins) <= 50 THEN
        -- OFFSET 0 keeps both tests index probes per login: without it the generic plan may
        -- choose a hashed subplan that joins all of contact_login and contact_link on every save
        -- (about 100 ms per inserted contact at 100,000 contacts).
        v_logins := ARRAY(
            SELECT l FROM unnest(p_logins) l
            WHERE EXISTS (SELECT 1 FROM kivi_otrs.customer_user c WHERE c.login = l OFFSET 0)
               OR EXISTS (SELECT 1 FROM kivi_otrs.contact_login cl
                          JOIN kivi_otrs.contact_link lk ON lk.contact_id = cl.cp_id
                          WHERE cl.login = l OFFSET 0));
        IF cardinality(v_logins) = 0 THEN
            RETURN;
        END IF;
    ELSE
        v_logins := p_logins;
        -- a bulk statement: planned for its actual ids (restored when the function returns)
        SET LOCAL plan_cache_mode = force_custom_plan;
    END IF;
    v_contacts := ARRAY(SELECT cp_id FROM kivi_otrs.contact_login WHERE login = ANY (v_logins));
    WITH fresh AS (SELECT * FROM kivi_otrs.customer_user_rows(v_contacts)),
    gone AS (
        DELETE FROM kivi_otrs.customer_user c
        WHERE c.login = ANY (v_logins) AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.login = c.login))
    INSERT INTO kivi_otrs.customer_user AS c SELECT * FROM fresh
    ON CONFLICT (login) DO UPDATE SET
        (cp_email, customernumber, customer_ids, cp_givenname, cp_name, name, cp_valid_id, create_time,
         change_time, search_text, cp_id, customer_db_id, contact_ids) =
        (EXCLUDED.cp_email, EXCLUDED.customernumber, EXCLUDED.customer_ids, EXCLUDED.cp_givenname,
         EXCLUDED.cp_name, EXCLUDED.name, EXCLUDED.cp_valid_id, EXCLUDED.create_time,
         EXCLUDED.change_time, EXCLUDED.search_text, EXCLUDED.cp_id, EXCLUDED.customer_db_id,
         EXCLUDED.contact_ids)
    -- change_time alone does not count: kivitendo moves mtime on every save, and a recomputation
    -- that finds nothing else changed keeps the row (and the time of the last change OTRS saw).
    WHERE (c.cp_email, c.customernumber, c.customer_ids, c.cp_givenname, c.cp_name, c.name, c.cp_valid_id,
           c.create_time, c.search_text, c.cp_id, c.customer_db_id, c.contact_ids)
          IS DISTINCT FROM
          (EXCLUDED.cp_email, EXCLUDED.customernumber, EXCLUDED.customer_ids, EXCLUDED.cp_givenname,
           EXCLUDED.cp_name, EXCLUDED.name, EXCLUDED.cp_valid_id, EXCLUDED.create_time, EXCLUDED.search_text,
           EXCLUDED.cp_id, EXCLUDED.customer_db_id, EXCLUDED.contact_ids);
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_logins(text[]) IS 'Recompute the OTRS customer users with these logins';
