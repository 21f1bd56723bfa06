-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_all()
-- Rebuild the whole customer backend from kivitendo (kivi-otrs refresh, migrate).
-- Readers (OTRS) keep seeing the old rows until the calling transaction commits.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_all() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.full_refresh', 0));
    DELETE FROM kivi_otrs.contact_login;
    INSERT INTO kivi_otrs.contact_login SELECT * FROM kivi_otrs.contact_login_rows(NULL);
    DELETE FROM kivi_otrs.contact_link;
    INSERT INTO kivi_otrs.contact_link (contact_id, customer_id, main)
    SELECT contact_id, customer_id, bool_or(main) FROM public.customer_contacts GROUP BY contact_id, customer_id;
    DELETE FROM kivi_otrs.customer_user;
    -- Stored in hash order, so that matches of a search term are spread over the table and
    -- a LIMIT 250 scan stops early instead of meeting them in one cluster.
    INSERT INTO kivi_otrs.customer_user SELECT * FROM kivi_otrs.customer_user_rows(NULL) ORDER BY md5(login);
    DELETE FROM kivi_otrs.customer_number;
    INSERT INTO kivi_otrs.customer_number SELECT * FROM kivi_otrs.customer_number_rows(NULL);
    DELETE FROM kivi_otrs.customer_company;
    INSERT INTO kivi_otrs.customer_company SELECT * FROM kivi_otrs.customer_company_rows(NULL);
    UPDATE kivi_otrs.sync_state SET stale = false, last_error = NULL, last_error_at = NULL, last_full_refresh = now();
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_all() IS 'Rebuild the OTRS customer backend from kivitendo and clear the stale flag';
