-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_flags(integer[], integer)
-- Mirror a change of the "may report tickets" flag (custom variable p_flag) of these contacts.
-- The flag changes no e-mail address: the logins come from contact_login, locked first.
-- The common case is written straight into the row: a login of this one contact, which has
-- one customer. Its row keeps its primary link, customer number and customer_ids (the
-- number whether eligible or not); only cp_valid_id follows the flag (the mapping of
-- sql/11_customer_user_rows.sql: eligible = may report tickets and the customer is not
-- obsolete; tests compare with a fresh computation). Every other login is recomputed by
-- refresh_logins. Planned once per session like refresh_logins (planning the join below
-- on every tick cost more than running it); bulk statements are planned for their ids.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_flags(p_contact_ids integer[], p_flag integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_logins text[];
    v_simple text[];
BEGIN
    IF cardinality(p_contact_ids) > 50 THEN
        SET LOCAL plan_cache_mode = force_custom_plan;
    END IF;
    v_logins := ARRAY(SELECT DISTINCT login FROM kivi_otrs.contact_login WHERE cp_id = ANY (p_contact_ids));
    PERFORM kivi_otrs.lock_logins(v_logins);
    WITH simple AS (
        SELECT u.login,
               (CASE WHEN coalesce((SELECT bool_or(coalesce(cv.bool_value, cfg.default_value, false))
                                    FROM public.custom_variables cv
                                    WHERE cv.config_id = p_flag AND cv.trans_id = cl.cp_id AND cv.sub_module = ''),
                                   cfg.default_value, false)
                          AND NOT coalesce(cu.obsolete, false)
                     THEN 1 ELSE 2 END)::smallint AS valid
        FROM kivi_otrs.contact_login cl
        JOIN kivi_otrs.customer_user u ON u.login = cl.login AND u.contact_ids = ARRAY[cl.cp_id]
        JOIN kivi_otrs.contact_link lk ON lk.contact_id = cl.cp_id AND lk.customer_id = u.customer_db_id
        JOIN public.customer cu ON cu.id = lk.customer_id
        LEFT JOIN (SELECT coalesce(c.default_value, '') IN ('1', 't', 'true') AS default_value
                   FROM public.custom_variable_configs c WHERE c.id = p_flag) cfg ON true
        WHERE cl.cp_id = ANY (p_contact_ids)
          AND NOT EXISTS (SELECT 1 FROM kivi_otrs.contact_link other
                          WHERE other.contact_id = cl.cp_id AND other.customer_id <> lk.customer_id)
    ),
    changed AS (
        UPDATE kivi_otrs.customer_user u SET cp_valid_id = s.valid
        FROM simple s
        WHERE u.login = s.login AND u.cp_valid_id <> s.valid)
    SELECT coalesce(array_agg(login), '{}') INTO v_simple FROM simple;
    PERFORM kivi_otrs.refresh_logins(ARRAY(SELECT unnest(v_logins) EXCEPT SELECT unnest(v_simple)));
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_flags(integer[], integer) IS 'Mirror a change of the may-report-tickets flag of these contacts';
