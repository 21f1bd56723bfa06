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
    DELETE FROM kivi_otrs.customer_user WHERE login = ANY (p_logins);
    -- EXECUTE plans with the actual ids, so the inlined row function uses the primary keys.
    EXECUTE 'INSERT INTO kivi_otrs.customer_user SELECT * FROM kivi_otrs.customer_user_rows($1)'
    USING ARRAY(SELECT cp_id FROM kivi_otrs.contact_login WHERE login = ANY (p_logins));
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_logins(text[]) IS 'Recompute the OTRS customer users with these logins';
