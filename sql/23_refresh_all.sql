-- drop: DROP FUNCTION IF EXISTS kivi_otrs.refresh_all()
-- Rebuild the whole customer backend from kivitendo (kivi-otrs refresh, migrate, and the
-- triggers for statements over more than 20,000 rows).
-- Readers (OTRS) keep seeing the old rows until the calling transaction commits.
-- Every mirror table is compared with a fresh computation and only what differs is written:
-- rows that are gone are deleted, changed ones updated in place, new ones inserted. change_time
-- does not count (kivitendo moves mtime on every save, also of columns OTRS never sees; the
-- mirror keeps the time of the last save that changed something shown, as doctor compares). A
-- rebuild that finds the mirror in step (a migrate that changes no mapping, a refresh after
-- a false alarm) writes nothing; deleting and re-inserting everything left every table and
-- index twice its size (the old rows stay on their pages until VACUUM, in front of the new
-- ones that a searching sequential scan reaches last) and churned the trigram indexes.
CREATE OR REPLACE FUNCTION kivi_otrs.refresh_all() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('kivi_otrs.full_refresh', 0));
    WITH fresh AS (SELECT * FROM kivi_otrs.contact_login_rows(NULL)),
    gone AS (DELETE FROM kivi_otrs.contact_login c WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.cp_id = c.cp_id))
    INSERT INTO kivi_otrs.contact_login AS c SELECT * FROM fresh
    ON CONFLICT (cp_id) DO UPDATE SET
        (login, cp_title, gender, department, position, cp_phone1, cp_mobile1, cp_fax, change_time) =
        (EXCLUDED.login, EXCLUDED.cp_title, EXCLUDED.gender, EXCLUDED.department, EXCLUDED.position,
         EXCLUDED.cp_phone1, EXCLUDED.cp_mobile1, EXCLUDED.cp_fax, EXCLUDED.change_time)
    WHERE to_jsonb(c) - 'change_time' IS DISTINCT FROM to_jsonb(EXCLUDED) - 'change_time';

    WITH fresh AS (SELECT contact_id, customer_id, bool_or(main) AS main FROM public.customer_contacts
                   GROUP BY contact_id, customer_id),
    gone AS (DELETE FROM kivi_otrs.contact_link l WHERE NOT EXISTS (
                 SELECT 1 FROM fresh f WHERE f.contact_id = l.contact_id AND f.customer_id = l.customer_id))
    INSERT INTO kivi_otrs.contact_link AS l (contact_id, customer_id, main) SELECT * FROM fresh
    ON CONFLICT (contact_id, customer_id) DO UPDATE SET main = EXCLUDED.main WHERE l.main IS DISTINCT FROM EXCLUDED.main;

    -- New rows go in hash order, so that matches of a search term are spread over the table and
    -- a LIMIT 250 scan stops early instead of meeting them in one cluster.
    WITH fresh AS (SELECT * FROM kivi_otrs.customer_user_rows(NULL)),
    gone AS (DELETE FROM kivi_otrs.customer_user c WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.login = c.login))
    INSERT INTO kivi_otrs.customer_user AS c SELECT * FROM fresh ORDER BY md5(login)
    ON CONFLICT (login) DO UPDATE SET
        (cp_email, customernumber, customer_ids, cp_title, cp_givenname, cp_name, gender, department, position,
         cp_phone1, cp_mobile1, cp_fax, name, street, zipcode, city, country, phone, fax, homepage, gln,
         cp_valid_id, create_time, change_time, search_text, cp_id, customer_db_id, contact_ids) =
        (EXCLUDED.cp_email, EXCLUDED.customernumber, EXCLUDED.customer_ids, EXCLUDED.cp_title,
         EXCLUDED.cp_givenname, EXCLUDED.cp_name, EXCLUDED.gender, EXCLUDED.department, EXCLUDED.position,
         EXCLUDED.cp_phone1, EXCLUDED.cp_mobile1, EXCLUDED.cp_fax, EXCLUDED.name, EXCLUDED.street,
         EXCLUDED.zipcode, EXCLUDED.city, EXCLUDED.country, EXCLUDED.phone, EXCLUDED.fax, EXCLUDED.homepage,
         EXCLUDED.gln, EXCLUDED.cp_valid_id, EXCLUDED.create_time, EXCLUDED.change_time, EXCLUDED.search_text,
         EXCLUDED.cp_id, EXCLUDED.customer_db_id, EXCLUDED.contact_ids)
    WHERE to_jsonb(c) - 'change_time' IS DISTINCT FROM to_jsonb(EXCLUDED) - 'change_time';

    WITH fresh AS (SELECT * FROM kivi_otrs.customer_number_rows(NULL)),
    gone AS (DELETE FROM kivi_otrs.customer_number n
             WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.customer_db_id = n.customer_db_id))
    INSERT INTO kivi_otrs.customer_number AS n SELECT * FROM fresh
    ON CONFLICT (customer_db_id) DO UPDATE SET
        (number, street, zipcode, city, country, phone, fax, homepage, gln, change_time) =
        (EXCLUDED.number, EXCLUDED.street, EXCLUDED.zipcode, EXCLUDED.city, EXCLUDED.country, EXCLUDED.phone,
         EXCLUDED.fax, EXCLUDED.homepage, EXCLUDED.gln, EXCLUDED.change_time)
    WHERE to_jsonb(n) - 'change_time' IS DISTINCT FROM to_jsonb(EXCLUDED) - 'change_time';

    -- Keyed by number and unique by customer: a number that moved to another customer, or a
    -- customer that got another number, is deleted first (its own statement: a data-modifying
    -- WITH runs after the main statement, whose insert would meet the old row's keys).
    DELETE FROM kivi_otrs.customer_company c
    WHERE NOT EXISTS (SELECT 1 FROM kivi_otrs.customer_company_rows(NULL) f
                      WHERE f.customer_id = c.customer_id AND f.customer_db_id = c.customer_db_id);
    INSERT INTO kivi_otrs.customer_company AS c SELECT * FROM kivi_otrs.customer_company_rows(NULL)
    ON CONFLICT (customer_id) DO UPDATE SET
        (name, department, street, zipcode, city, country, phone, fax, homepage, email, comments, gln, valid_id,
         create_time, change_time, search_text, customer_db_id) =
        (EXCLUDED.name, EXCLUDED.department, EXCLUDED.street, EXCLUDED.zipcode, EXCLUDED.city, EXCLUDED.country,
         EXCLUDED.phone, EXCLUDED.fax, EXCLUDED.homepage, EXCLUDED.email, EXCLUDED.comments, EXCLUDED.gln,
         EXCLUDED.valid_id, EXCLUDED.create_time, EXCLUDED.change_time, EXCLUDED.search_text, EXCLUDED.customer_db_id)
    WHERE to_jsonb(c) - 'change_time' IS DISTINCT FROM to_jsonb(EXCLUDED) - 'change_time';
    UPDATE kivi_otrs.sync_state SET stale = false, last_error = NULL, last_error_at = NULL, last_full_refresh = now();
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.refresh_all() IS 'Rebuild the OTRS customer backend from kivitendo, writing only what differs';
