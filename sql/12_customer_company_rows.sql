-- drop: DROP FUNCTION IF EXISTS kivi_otrs.customer_company_rows(text[])
-- OTRS customer companies from kivitendo customers with these customer numbers (NULL = all).
-- CustomerID = btrim(customernumber); customers without a number are left out; when
-- several customers share a number, the non-obsolete one with the lowest id wins
-- (kivi-otrs doctor lists the duplicates). valid_id 2 for obsolete customers.
-- Customers with given numbers are found through kivi_otrs.customer_number (kept by
-- refresh_customers), as kivitendo has no index on btrim(customernumber).
CREATE OR REPLACE FUNCTION kivi_otrs.customer_company_rows(p_numbers text[])
RETURNS SETOF kivi_otrs.customer_company
LANGUAGE sql STABLE
AS $fn$
WITH numbered AS (
    SELECT cu.*, btrim(cu.customernumber) AS number,
           row_number() OVER (PARTITION BY btrim(cu.customernumber)
                              ORDER BY coalesce(cu.obsolete, false), cu.id) AS rank
    FROM public.customer cu
    WHERE coalesce(btrim(cu.customernumber), '') <> ''
      AND (p_numbers IS NULL
           OR (cu.id = ANY (ARRAY(SELECT customer_db_id FROM kivi_otrs.customer_number WHERE number = ANY (p_numbers)))
               AND btrim(cu.customernumber) = ANY (p_numbers)))
)
SELECT n.number, n.name, n.department_1, n.street, n.zipcode, n.city, co.description_en, n.phone, n.fax,
       n.homepage, n.email, n.notes, n.gln,
       (CASE WHEN coalesce(n.obsolete, false) THEN 2 ELSE 1 END)::smallint,
       n.itime, greatest(n.mtime, n.itime),
       lower(concat_ws(' ', n.number, n.name, n.department_1, n.city)),
       n.id
FROM numbered n
LEFT JOIN public.countries co ON co.id = n.country_id
WHERE n.rank = 1
$fn$;
COMMENT ON FUNCTION kivi_otrs.customer_company_rows(text[]) IS 'OTRS customer companies computed from kivitendo customers (NULL = all)';
