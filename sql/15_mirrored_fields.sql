-- drop: DROP FUNCTION IF EXISTS kivi_otrs.contact_fields(jsonb), kivi_otrs.customer_fields(jsonb)
-- The kivitendo columns the OTRS backend shows, of one contacts / customer row given as
-- jsonb (to_jsonb(row)): the sync trigger compares them before and after a statement and
-- ignores saves that change none of them (mtime never counts: kivitendo sets it on every
-- save). Column names are strings inside a jsonb: a column dropped by a kivitendo upgrade
-- is NULL on both sides and fails nothing here. Keep in step with sql/11 and sql/12.
CREATE OR REPLACE FUNCTION kivi_otrs.contact_fields(p_row jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT jsonb_build_array(p_row -> 'cp_id', p_row -> 'cp_email', p_row -> 'cp_title', p_row -> 'cp_givenname',
                             p_row -> 'cp_name', p_row -> 'cp_gender', p_row -> 'cp_abteilung', p_row -> 'cp_position',
                             p_row -> 'cp_phone1', p_row -> 'cp_mobile1', p_row -> 'cp_fax', p_row -> 'itime')
$fn$;
COMMENT ON FUNCTION kivi_otrs.contact_fields(jsonb) IS 'The contacts columns OTRS customer users show (change detection of the sync trigger)';

CREATE OR REPLACE FUNCTION kivi_otrs.customer_fields(p_row jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT jsonb_build_array(p_row -> 'id', p_row -> 'customernumber', p_row -> 'name', p_row -> 'department_1',
                             p_row -> 'street', p_row -> 'zipcode', p_row -> 'city', p_row -> 'country_id',
                             p_row -> 'phone', p_row -> 'fax', p_row -> 'homepage', p_row -> 'email', p_row -> 'notes',
                             p_row -> 'gln', p_row -> 'obsolete', p_row -> 'itime')
$fn$;
COMMENT ON FUNCTION kivi_otrs.customer_fields(jsonb) IS 'The customer columns OTRS companies and customer users show (change detection of the sync trigger)';
