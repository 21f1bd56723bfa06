-- drop: (dropped with kivi_otrs.sync_trigger() CASCADE)
-- Statement-level triggers on the kivitendo tables the customer backend reads.
-- They depend on the tables only, never on columns: kivitendo's upgrades may drop,
-- rename or retype any column while they are installed.
DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['contacts', 'customer', 'customer_contacts', 'custom_variables',
                                   'custom_variable_configs', 'countries'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS kivi_otrs_sync_insert ON public.%I', v_table);
        EXECUTE format('DROP TRIGGER IF EXISTS kivi_otrs_sync_update ON public.%I', v_table);
        EXECUTE format('DROP TRIGGER IF EXISTS kivi_otrs_sync_delete ON public.%I', v_table);
        EXECUTE format('CREATE TRIGGER kivi_otrs_sync_insert AFTER INSERT ON public.%I '
                       'REFERENCING NEW TABLE AS kivi_otrs_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.sync_trigger()', v_table);
        EXECUTE format('CREATE TRIGGER kivi_otrs_sync_update AFTER UPDATE ON public.%I '
                       'REFERENCING OLD TABLE AS kivi_otrs_old NEW TABLE AS kivi_otrs_new '
                       'FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.sync_trigger()', v_table);
        EXECUTE format('CREATE TRIGGER kivi_otrs_sync_delete AFTER DELETE ON public.%I '
                       'REFERENCING OLD TABLE AS kivi_otrs_old '
                       'FOR EACH STATEMENT EXECUTE FUNCTION kivi_otrs.sync_trigger()', v_table);
    END LOOP;
END
$$;
