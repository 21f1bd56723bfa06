-- drop: DROP FUNCTION IF EXISTS kivi_otrs.lock_logins(text[])
-- Lock customer users by login for the rest of the transaction, in a fixed order, so that
-- concurrent kivitendo transactions touching the same address wait for each other instead
-- of writing a stale row. Every writer of kivi_otrs.customer_user takes these locks
-- before it reads kivitendo. More than 500 logins (a bulk statement) take the one
-- exclusive lock of refresh_all instead of filling the lock table.
CREATE OR REPLACE FUNCTION kivi_otrs.lock_logins(p_logins text[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_login text;
BEGIN
    IF cardinality(p_logins) > 500 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.full_refresh', 0));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
        FOR v_login IN SELECT DISTINCT l FROM unnest(p_logins) l WHERE l IS NOT NULL ORDER BY l LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.login:' || v_login, 0));
        END LOOP;
    END IF;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.lock_logins(text[]) IS 'Lock OTRS customer users by login until the end of the transaction (all of them above 500)';
