-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_contacts(integer[])
-- Mirror changed kivitendo contacts: their old and new logins are recomputed.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_contacts(p_contact_ids integer[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_logins text[];
BEGIN
    IF p_contact_ids IS NULL OR cardinality(p_contact_ids) = 0 THEN
        RETURN;
    END IF;
    v_logins := ARRAY(
        SELECT login FROM kivi_otrs.contact_login WHERE cp_id = ANY (p_contact_ids)
        UNION
        SELECT kivi_otrs.login_of(cp_email) FROM public.contacts
        WHERE cp_id = ANY (p_contact_ids) AND kivi_otrs.login_of(cp_email) IS NOT NULL);
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
    DELETE FROM kivi_otrs.contact_login WHERE cp_id = ANY (p_contact_ids);
    INSERT INTO kivi_otrs.contact_login (cp_id, login)
    SELECT cp_id, kivi_otrs.login_of(cp_email) FROM public.contacts
    WHERE cp_id = ANY (p_contact_ids) AND kivi_otrs.login_of(cp_email) IS NOT NULL;
    PERFORM kivi_otrs.refresh_logins(v_logins);
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_contacts(integer[]) IS 'Recompute the OTRS customer users of these kivitendo contacts (old and new e-mail)';
