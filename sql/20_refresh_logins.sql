-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_logins(text[])
-- Recompute the customer users with these logins from kivitendo. Logins are locked
-- in a fixed order, so concurrent kivitendo transactions touching the same address
-- wait for each other instead of writing a stale row; more than 500 logins (a bulk
-- statement) take the one exclusive lock of refresh_all instead.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_logins(p_logins text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_login text;
BEGIN
    IF p_logins IS NULL OR cardinality(p_logins) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_logins) > 500 THEN
        -- A bulk statement: one exclusive lock instead of filling the lock table.
        PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.full_refresh', 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
        FOR v_login IN SELECT DISTINCT l FROM unnest(p_logins) l WHERE l IS NOT NULL ORDER BY l LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.login:' || v_login, 0));
        END LOOP;
    END IF;
    -- Rows that did not change are left alone and changed ones are updated in place: a
    -- contact save that keeps login, search text and validity is a HOT update (fillfactor
    -- 70, migration 0006) and touches none of the mirror's indexes. EXECUTE plans with the
    -- actual ids, so the inlined row function uses the primary keys.
    EXECUTE $q$
        WITH fresh AS (SELECT * FROM kivi_otrs.customer_user_rows($1)),
        gone AS (
            DELETE FROM kivi_otrs.customer_user c
            WHERE c.login = ANY ($2) AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.login = c.login))
        INSERT INTO kivi_otrs.customer_user AS c SELECT * FROM fresh
        ON CONFLICT (login) DO UPDATE SET
            (cp_email, customernumber, customer_ids, cp_title, cp_givenname, cp_name, gender,
             department, position, cp_phone1, cp_mobile1, cp_fax, name, street, zipcode, city,
             country, phone, fax, homepage, gln, cp_valid_id, create_time, change_time, search_text,
             cp_id, customer_db_id, contact_ids) =
            (EXCLUDED.cp_email, EXCLUDED.customernumber, EXCLUDED.customer_ids, EXCLUDED.cp_title,
             EXCLUDED.cp_givenname, EXCLUDED.cp_name, EXCLUDED.gender, EXCLUDED.department,
             EXCLUDED.position, EXCLUDED.cp_phone1, EXCLUDED.cp_mobile1, EXCLUDED.cp_fax,
             EXCLUDED.name, EXCLUDED.street, EXCLUDED.zipcode, EXCLUDED.city, EXCLUDED.country,
             EXCLUDED.phone, EXCLUDED.fax, EXCLUDED.homepage, EXCLUDED.gln, EXCLUDED.cp_valid_id,
             EXCLUDED.create_time, EXCLUDED.change_time, EXCLUDED.search_text, EXCLUDED.cp_id,
             EXCLUDED.customer_db_id, EXCLUDED.contact_ids)
        WHERE ROW(c.*) IS DISTINCT FROM ROW(EXCLUDED.*)
    $q$
    USING ARRAY(SELECT cp_id FROM kivi_otrs.contact_login WHERE login = ANY (p_logins)), p_logins;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_logins(text[]) IS 'Recompute the OTRS customer users with these logins';
