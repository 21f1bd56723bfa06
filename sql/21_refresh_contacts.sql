-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_contacts(integer[])
-- Mirror changed kivitendo contacts: their old and new logins are recomputed.
-- kivi_otrs.contact_login (login and the contact's shown-but-unsearched fields) is rewritten
-- only where something changed; a row whose login changed is replaced. Generic plans (planned
-- once per session): every statement looks up the given ids through primary keys.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_contacts(p_contact_ids integer[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
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
    DELETE FROM kivi_otrs.contact_login cl
    WHERE cl.cp_id = ANY (p_contact_ids)
      AND NOT EXISTS (SELECT 1 FROM public.contacts ct
                      WHERE ct.cp_id = cl.cp_id AND kivi_otrs.login_of(ct.cp_email) = cl.login);
    INSERT INTO kivi_otrs.contact_login AS cl SELECT * FROM kivi_otrs.contact_login_rows(p_contact_ids)
    ON CONFLICT (cp_id) DO UPDATE SET
        (cp_title, gender, department, position, cp_phone1, cp_mobile1, cp_fax, change_time) =
        (EXCLUDED.cp_title, EXCLUDED.gender, EXCLUDED.department, EXCLUDED.position, EXCLUDED.cp_phone1,
         EXCLUDED.cp_mobile1, EXCLUDED.cp_fax, EXCLUDED.change_time)
    WHERE ROW(cl.*) IS DISTINCT FROM ROW(EXCLUDED.*);
    PERFORM kivi_otrs.refresh_logins(v_logins);
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_contacts(integer[]) IS 'Recompute the OTRS customer users of these kivitendo contacts (old and new e-mail)';
