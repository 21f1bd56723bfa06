-- Undo 0001: remove what this installation created, keep what it adopted.
DO $$
DECLARE
    v_role text := (SELECT value FROM kivi_otrs.install_state WHERE key = 'reader_role');
BEGIN
    IF (SELECT value FROM kivi_otrs.install_state WHERE key = 'flag_config_created') = 'true' THEN
        DELETE FROM public.custom_variables
        WHERE config_id = (SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id');
        DELETE FROM public.custom_variable_configs
        WHERE id = (SELECT value::int FROM kivi_otrs.install_state WHERE key = 'flag_config_id');
    END IF;
    IF v_role IS NOT NULL THEN
        EXECUTE format('REVOKE ALL ON SCHEMA kivi_otrs FROM %I', v_role);
        IF (SELECT value FROM kivi_otrs.install_state WHERE key = 'reader_role_created') = 'true' THEN
            BEGIN
                EXECUTE format('DROP ROLE %I', v_role);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE WARNING 'role % is still used in another database and was kept; drop it there first', v_role;
            END;
        END IF;
    END IF;
END
$$;

DROP TABLE kivi_otrs.customer_company;
DROP TABLE kivi_otrs.customer_user;
DROP TABLE kivi_otrs.contact_login;
DROP TABLE kivi_otrs.contact_link;
DROP TABLE kivi_otrs.sync_state;

DO $$
BEGIN
    IF (SELECT value FROM kivi_otrs.install_state WHERE key = 'trgm_created') = 'true' THEN
        DROP EXTENSION pg_trgm;
    END IF;
END
$$;

DROP TABLE kivi_otrs.install_state;
DROP TABLE kivi_otrs.settings;
