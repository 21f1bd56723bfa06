-- drop: DROP FUNCTION IF EXISTS kivi_otrs.customer_user_rows(integer[])
-- The OTRS customer users computed from kivitendo, for the given contacts (NULL = all).
-- The body is a string, so PostgreSQL records no dependency on kivitendo columns and
-- kivitendo's own upgrades can drop or retype them (kivi-otrs doctor reports the drift).
-- No SET clause: the planner inlines it, so a call with a few ids uses the primary key.
-- The ids are one `= ANY` condition (NULL = all ids, evaluated only then) and not
-- `ids IS NULL OR cp_id = ANY (ids)`: a cached generic plan of a caller (refresh_logins'
-- path for a few logins) then looks the ids up through the primary key, where the OR
-- made every generic plan read the whole of public.contacts.
--
-- The fields OTRS shows but never searches (title, gender, department, position, phones, fax
-- of the contact; address, phone, fax, homepage, GLN of the customer) are not computed here:
-- they live one row per contact in kivi_otrs.contact_login and one row per customer in
-- kivi_otrs.customer_number (sql/16_detail_rows.sql; migration 0008), and their columns in
-- kivi_otrs.customer_user stay NULL.
--
-- Rules (README "Customer users"):
--  * login = lower(btrim(contacts.cp_email)); malformed addresses and contacts without
--    customer are left out; contacts sharing an address become ONE login.
--  * a (contact, customer) link is eligible when the contact may report tickets (custom
--    variable otrs_may_report_tickets, else the variable's default) and the customer is
--    not obsolete and has a customer number.
--  * the primary link gives the name, company and CustomerID: eligible first, then
--    kivitendo's main contact, then lowest contact id, then lowest customer id.
--  * customer_ids lists the customer numbers of all eligible links (OTRS UserCustomerIDs).
--  * cp_valid_id is 1 when any link is eligible, else 2 (OTRS refuses logins and new tickets).
CREATE OR REPLACE FUNCTION kivi_otrs.customer_user_rows(p_contact_ids integer[])
RETURNS SETOF kivi_otrs.customer_user
LANGUAGE sql STABLE
AS $fn$
WITH flag AS (
    SELECT cfg.id, coalesce(cfg.default_value, '') IN ('1', 't', 'true') AS default_value
    FROM public.custom_variable_configs cfg
    WHERE cfg.id = (SELECT value::integer FROM kivi_otrs.install_state WHERE key = 'flag_config_id')
),
contact AS (
    SELECT ct.cp_id, kivi_otrs.login_of(ct.cp_email) AS login, btrim(ct.cp_email) AS email,
           ct.cp_givenname, ct.cp_name, ct.itime, ct.mtime,
           coalesce(cv.bool_value, flag.default_value, false) AS may_report
    FROM public.contacts ct
    LEFT JOIN flag ON true
    LEFT JOIN public.custom_variables cv
           ON cv.config_id = flag.id AND cv.trans_id = ct.cp_id AND cv.sub_module = ''
    WHERE ct.cp_id = ANY (coalesce(p_contact_ids, ARRAY(SELECT cp_id FROM public.contacts)))
      AND kivi_otrs.login_of(ct.cp_email) IS NOT NULL
),
link AS (
    SELECT ct.*, cu.id AS customer_db_id, btrim(cu.customernumber) AS customernumber, cu.name,
           cu.mtime AS customer_mtime, cc.main,
           ct.may_report AND NOT coalesce(cu.obsolete, false) AS eligible
    FROM contact ct
    JOIN kivi_otrs.contact_link cc ON cc.contact_id = ct.cp_id
    JOIN public.customer cu ON cu.id = cc.customer_id
    WHERE coalesce(btrim(cu.customernumber), '') <> ''
),
ranked AS (
    SELECT link.*,
           row_number() OVER (PARTITION BY link.login
                              ORDER BY link.eligible DESC, link.main DESC, link.cp_id, link.customer_db_id) AS rank,
           string_agg(link.customernumber, ';') FILTER (WHERE link.eligible)
               OVER (PARTITION BY link.login) AS eligible_numbers,
           bool_or(link.eligible) OVER (PARTITION BY link.login) AS any_eligible,
           array_agg(link.cp_id) OVER (PARTITION BY link.login) AS all_contacts
    FROM link
)
SELECT r.login,
       r.email,
       r.customernumber,
       coalesce((SELECT string_agg(DISTINCT n, ';' ORDER BY n) FROM unnest(string_to_array(r.eligible_numbers, ';')) n),
                r.customernumber),
       NULL, r.cp_givenname, r.cp_name, NULL, NULL, NULL, NULL, NULL, NULL,
       r.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (CASE WHEN r.any_eligible THEN 1 ELSE 2 END)::smallint,
       r.itime,
       greatest(r.mtime, r.customer_mtime, r.itime),
       lower(concat_ws(' ', r.login, r.cp_givenname, r.cp_name, r.customernumber, r.name)),
       r.cp_id,
       r.customer_db_id,
       (SELECT array_agg(DISTINCT c ORDER BY c) FROM unnest(r.all_contacts) c)
FROM ranked r
WHERE r.rank = 1
$fn$;
COMMENT ON FUNCTION kivi_otrs.customer_user_rows(integer[]) IS 'OTRS customer users computed from kivitendo contacts (NULL = all); see sql/11_customer_user_rows.sql for the rules';
