-- drop: DROP FUNCTION IF EXISTS kivi_otrs.contact_login_rows(integer[]), kivi_otrs.customer_number_rows(integer[])
-- What OTRS shows of a contact or a customer but never searches, one row per kivitendo
-- contact that has a login (kivi_otrs.contact_login) and per customer that has a number
-- (kivi_otrs.customer_number); the view kivi_otrs.otrs_customer_contacts joins them to the
-- customer user by its primary contact and its primary customer (migration 0008). A save
-- that changes only these fields rewrites one narrow row here instead of customer user rows.
-- The sync trigger's fast paths (sql/30_sync_trigger_function.sql) write the same mapping
-- from the statement's rows; tests compare both with these functions. NULL = all.
CREATE OR REPLACE FUNCTION kivi_otrs.contact_login_rows(p_contact_ids integer[])
RETURNS SETOF kivi_otrs.contact_login
LANGUAGE sql STABLE
AS $fn$
SELECT ct.cp_id, kivi_otrs.login_of(ct.cp_email), ct.cp_title, btrim(ct.cp_gender), ct.cp_abteilung,
       ct.cp_position, ct.cp_phone1, ct.cp_mobile1, ct.cp_fax, greatest(ct.mtime, ct.itime)
FROM public.contacts ct
WHERE ct.cp_id = ANY (coalesce(p_contact_ids, ARRAY(SELECT cp_id FROM public.contacts)))
  AND kivi_otrs.login_of(ct.cp_email) IS NOT NULL
$fn$;
COMMENT ON FUNCTION kivi_otrs.contact_login_rows(integer[]) IS 'Login and shown-but-unsearched fields of kivitendo contacts (NULL = all); see sql/16_detail_rows.sql';

CREATE OR REPLACE FUNCTION kivi_otrs.customer_number_rows(p_customer_ids integer[])
RETURNS SETOF kivi_otrs.customer_number
LANGUAGE sql STABLE
AS $fn$
SELECT cu.id, btrim(cu.customernumber), cu.street, cu.zipcode, cu.city, co.description_en, cu.phone, cu.fax,
       cu.homepage, cu.gln, greatest(cu.mtime, cu.itime)
FROM public.customer cu
LEFT JOIN public.countries co ON co.id = cu.country_id
WHERE cu.id = ANY (coalesce(p_customer_ids, ARRAY(SELECT id FROM public.customer)))
  AND coalesce(btrim(cu.customernumber), '') <> ''
$fn$;
COMMENT ON FUNCTION kivi_otrs.customer_number_rows(integer[]) IS 'Trimmed number and shown-but-unsearched fields of kivitendo customers (NULL = all); see sql/16_detail_rows.sql';
