-- drop: (grants go with the objects)
-- The OTRS read role may read the three views (contacts, companies, portal login) and nothing
-- else; our SECURITY DEFINER functions are not callable by PUBLIC.
DO $$
DECLARE
    v_role text := (SELECT value FROM kivi_otrs.install_state WHERE key = 'reader_role');
BEGIN
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA kivi_otrs FROM PUBLIC;
    EXECUTE format('GRANT USAGE ON SCHEMA kivi_otrs TO %I', v_role);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA kivi_otrs FROM %I', v_role);
    EXECUTE format('GRANT SELECT ON kivi_otrs.otrs_customer_contacts, kivi_otrs.otrs_customer_companies, kivi_otrs.otrs_customer_auth TO %I', v_role);
END
$$;
