-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_customers(integer[], text[])
-- Mirror changed kivitendo customers: their companies (by old and new number) and
-- the customer users of their contacts. Every lookup goes through an index: the
-- customers sharing a number through kivi_otrs.customer_number, the customer users whose
-- primary customer this was through customer_user.customer_db_id.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_customers(p_customer_ids integer[], p_old_numbers text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_numbers text[];
BEGIN
    IF p_customer_ids IS NULL OR cardinality(p_customer_ids) = 0 THEN
        RETURN;
    END IF;
    v_numbers := ARRAY(
        SELECT btrim(n) FROM unnest(p_old_numbers) n WHERE coalesce(btrim(n), '') <> ''
        UNION
        SELECT btrim(customernumber) FROM public.customer
        WHERE id = ANY (p_customer_ids) AND coalesce(btrim(customernumber), '') <> ''
        UNION
        SELECT customer_id FROM kivi_otrs.customer_company WHERE customer_db_id = ANY (p_customer_ids));
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
    DELETE FROM kivi_otrs.customer_number WHERE customer_db_id = ANY (p_customer_ids);
    INSERT INTO kivi_otrs.customer_number SELECT * FROM kivi_otrs.customer_number_rows(p_customer_ids);
    DELETE FROM kivi_otrs.customer_company WHERE customer_id = ANY (v_numbers) OR customer_db_id = ANY (p_customer_ids);
    EXECUTE 'INSERT INTO kivi_otrs.customer_company SELECT * FROM kivi_otrs.customer_company_rows($1)'
    USING v_numbers;
    -- The logins of the customer's contacts and of the users it was primary for. A customer
    -- changes no contact's own fields: kivi_otrs.contact_login is not rewritten here (from this
    -- statement's snapshot it could overwrite a concurrent save of a contact's phone).
    PERFORM kivi_otrs.refresh_logins(ARRAY(
        SELECT cl.login FROM kivi_otrs.contact_login cl
        WHERE cl.cp_id IN (SELECT contact_id FROM kivi_otrs.contact_link WHERE customer_id = ANY (p_customer_ids)
                           UNION
                           SELECT unnest(contact_ids) FROM kivi_otrs.customer_user WHERE customer_db_id = ANY (p_customer_ids))
        UNION
        SELECT login FROM kivi_otrs.customer_user WHERE customer_db_id = ANY (p_customer_ids)));
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_customers(integer[], text[]) IS 'Recompute the OTRS companies and customer users of these kivitendo customers';
