-- drop: DROP FUNCTION IF EXISTS kivi_otrs.contact_fields(jsonb), kivi_otrs.customer_fields(jsonb)
-- The kivitendo columns the OTRS backend shows, of one contacts / customer row given as
-- jsonb (to_jsonb(row)): when a kivitendo upgrade dropped one of them, the sync trigger compares these
-- (joined by the row's id) before and after a statement instead of the columns themselves, and
-- ignores saves that change none of them (mtime never counts: kivitendo sets it on every
-- save). Column names are strings inside a jsonb: a column dropped by a kivitendo upgrade
-- is NULL on both sides and fails nothing here. Keep in step with sql/11 and sql/12.
CREATE OR REPLACE FUNCTION kivi_otrs.contact_fields(p_row jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT jsonb_build_object('cp_email', p_row -> 'cp_email', 'cp_title', p_row -> 'cp_title',
                              'cp_givenname', p_row -> 'cp_givenname', 'cp_name', p_row -> 'cp_name',
                              'cp_gender', p_row -> 'cp_gender', 'cp_abteilung', p_row -> 'cp_abteilung',
                              'cp_position', p_row -> 'cp_position', 'cp_phone1', p_row -> 'cp_phone1',
                              'cp_mobile1', p_row -> 'cp_mobile1', 'cp_fax', p_row -> 'cp_fax', 'itime', p_row -> 'itime')
$fn$;
COMMENT ON FUNCTION kivi_otrs.contact_fields(jsonb) IS 'The contacts columns OTRS customer users show (change detection of the sync trigger)';

CREATE OR REPLACE FUNCTION kivi_otrs.customer_fields(p_row jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT jsonb_build_object('customernumber', p_row -> 'customernumber', 'name', p_row -> 'name',
                              'department_1', p_row -> 'department_1', 'street', p_row -> 'street',
                              'zipcode', p_row -> 'zipcode', 'city', p_row -> 'city', 'country_id', p_row -> 'country_id',
                              'phone', p_row -> 'phone', 'fax', p_row -> 'fax', 'homepage', p_row -> 'homepage',
                              'email', p_row -> 'email', 'notes', p_row -> 'notes', 'gln', p_row -> 'gln',
                              'obsolete', p_row -> 'obsolete', 'itime', p_row -> 'itime')
$fn$;
COMMENT ON FUNCTION kivi_otrs.customer_fields(jsonb) IS 'The customer columns OTRS companies and customer users show (change detection of the sync trigger)';
