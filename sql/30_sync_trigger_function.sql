-- drop: DROP FUNCTION IF EXISTS kivi_otrs.sync_trigger() CASCADE
-- Statement-level trigger function on kivitendo tables: mirrors what a kivitendo
-- statement changed into the OTRS customer backend, in the same transaction.
-- It never fails kivitendo's statement: on any error (e.g. a kivitendo upgrade
-- dropped a column we read) it marks the backend stale, logs a WARNING and lets
-- the statement commit; kivi-otrs doctor shows the error, kivi-otrs refresh repairs.
CREATE OR REPLACE FUNCTION kivi_otrs.sync_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Transition tables carry no statistics: a bulk statement's estimates reach JIT's
-- thresholds, and compiling costs more than the work.
SET jit = off
-- A statement over all contacts joins its old and new rows: in memory rather than by sorts
-- spilled to disk (one-row saves use a few kilobytes of it).
SET work_mem = '64MB'
AS $fn$
DECLARE
    v_ids integer[];
    v_numbers text[];
    v_flag integer;
    v_fast boolean;  -- any row of the statement takes a fast path
    v_named integer[];
    v_named_logins text[];
    v_full_refresh_above constant integer := 20000;
BEGIN
    BEGIN
        IF TG_TABLE_NAME IN ('custom_variables', 'custom_variable_configs') THEN
            v_flag := (SELECT value::integer FROM kivi_otrs.install_state WHERE key = 'flag_config_id');
        END IF;
        IF TG_TABLE_NAME = 'contacts' THEN
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT cp_id FROM kivi_otrs_new);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT cp_id FROM kivi_otrs_old);
            ELSE
                -- Only columns the customer users show count; mtime does not (kivitendo sets it
                -- on every save), nor do the many columns OTRS never sees (a save of cp_phone2
                -- does nothing here). Saves that keep the login and itime are written straight
                -- into the mirror without recomputing the login: the contact's own row in
                -- contact_login (title, phones, ... : a narrow row only its keys index) and, when
                -- the e-mail as typed or a name changed, the customer user row it is primary for.
                BEGIN
                    SELECT coalesce(bool_or(d.fast), false),
                           coalesce(array_agg(d.cp_id) FILTER (WHERE NOT d.fast), '{}'),
                           coalesce(array_agg(kivi_otrs.login_of(d.cp_email)) FILTER (WHERE d.fast AND d.named), '{}')
                    INTO v_fast, v_ids, v_named_logins
                    FROM (SELECT n.cp_id, n.cp_email,
                                 -- the same address as typed needs no look at its login (a regex)
                                 CASE WHEN n.cp_email IS NOT DISTINCT FROM o.cp_email THEN true
                                      ELSE kivi_otrs.login_of(n.cp_email) IS NOT DISTINCT FROM kivi_otrs.login_of(o.cp_email)
                                 END
                                 AND n.itime IS NOT DISTINCT FROM o.itime AS fast,
                                 (n.cp_email, n.cp_givenname, n.cp_name) IS DISTINCT FROM
                                 (o.cp_email, o.cp_givenname, o.cp_name) AS named
                          FROM kivi_otrs_new n JOIN kivi_otrs_old o USING (cp_id)
                          WHERE (n.cp_email, n.cp_title, n.cp_givenname, n.cp_name, n.cp_gender, n.cp_abteilung,
                                 n.cp_position, n.cp_phone1, n.cp_mobile1, n.cp_fax, n.itime)
                                IS DISTINCT FROM
                                (o.cp_email, o.cp_title, o.cp_givenname, o.cp_name, o.cp_gender, o.cp_abteilung,
                                 o.cp_position, o.cp_phone1, o.cp_mobile1, o.cp_fax, o.itime)) d;
                EXCEPTION WHEN undefined_column THEN
                    -- A kivitendo upgrade dropped a column we read: compare the columns that are
                    -- left (kivi_otrs.contact_fields, by name from jsonb), so that saves changing
                    -- none of them still pass without a warning. Slower (jsonb per row), rare.
                    WITH n AS MATERIALIZED (SELECT t.cp_id, kivi_otrs.contact_fields(to_jsonb(t)) AS f FROM kivi_otrs_new t),
                    o AS MATERIALIZED (SELECT t.cp_id, kivi_otrs.contact_fields(to_jsonb(t)) AS f FROM kivi_otrs_old t)
                    SELECT coalesce(bool_or(d.fast), false),
                           coalesce(array_agg(d.cp_id) FILTER (WHERE NOT d.fast), '{}'),
                           coalesce(array_agg(kivi_otrs.login_of(d.cp_email)) FILTER (WHERE d.fast AND d.named), '{}')
                    INTO v_fast, v_ids, v_named_logins
                    FROM (SELECT n.cp_id, n.f ->> 'cp_email' AS cp_email,
                                 kivi_otrs.login_of(n.f ->> 'cp_email') IS NOT DISTINCT FROM kivi_otrs.login_of(o.f ->> 'cp_email')
                                 AND n.f -> 'itime' IS NOT DISTINCT FROM o.f -> 'itime' AS fast,
                                 (n.f -> 'cp_email', n.f -> 'cp_givenname', n.f -> 'cp_name') IS DISTINCT FROM
                                 (o.f -> 'cp_email', o.f -> 'cp_givenname', o.f -> 'cp_name') AS named
                          FROM n JOIN o USING (cp_id)
                          WHERE n.f IS DISTINCT FROM o.f) d;
                END;
                -- Rows whose cp_id itself changed. NOT EXISTS, not NOT IN: an anti join works at
                -- any size, while NOT IN falls back to a linear search per row once the other
                -- side outgrows work_mem (hours for an UPDATE of a million contacts).
                v_ids := v_ids || ARRAY(
                    SELECT o.cp_id FROM kivi_otrs_old o WHERE NOT EXISTS (SELECT 1 FROM kivi_otrs_new n WHERE n.cp_id = o.cp_id)
                    UNION
                    SELECT n.cp_id FROM kivi_otrs_new n WHERE NOT EXISTS (SELECT 1 FROM kivi_otrs_old o WHERE o.cp_id = n.cp_id));
                IF v_fast THEN
                    -- Locks before any mirror write, in the order every writer takes them: the full
                    -- rebuild's (shared; refresh_all waits for this transaction instead of overwriting
                    -- its rows from an older snapshot), then the logins whose customer user row changes
                    -- (v_named_logins, from the classification above).
                    PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
                    IF cardinality(v_named_logins) > 0 THEN
                        PERFORM kivi_otrs.lock_logins(v_named_logins);
                    END IF;
                    -- The mapping of sql/16_detail_rows.sql (contact_login_rows); tests compare the
                    -- result with a fresh computation. Rows of the statement are matched by join, not
                    -- by `= ANY` over an id list, which would compare every row with the whole list in a
                    -- statement over all contacts; a row that is not fast is recomputed below anyway.
                    -- kivitendo's own row lock on the contact orders concurrent saves of it.
                    UPDATE kivi_otrs.contact_login d
                    SET (cp_title, gender, department, position, cp_phone1, cp_mobile1, cp_fax, change_time) =
                        (n.cp_title, btrim(n.cp_gender), n.cp_abteilung, n.cp_position, n.cp_phone1, n.cp_mobile1,
                         n.cp_fax, greatest(n.mtime, n.itime))
                    FROM kivi_otrs_new n
                    WHERE d.cp_id = n.cp_id
                      AND (d.cp_title, d.gender, d.department, d.position, d.cp_phone1, d.cp_mobile1, d.cp_fax)
                          IS DISTINCT FROM
                          (n.cp_title, btrim(n.cp_gender), n.cp_abteilung, n.cp_position, n.cp_phone1, n.cp_mobile1,
                           n.cp_fax);
                    IF cardinality(v_named_logins) > 0 THEN
                        -- The mapping of sql/11_customer_user_rows.sql for the contact's own fields;
                        -- tests compare the result with a fresh computation. The renamed rows are found by
                        -- joining the statement's old and new rows on the classification above, not by
                        -- `IN` over a list, which PostgreSQL planned as the list rescanned per row (21 s
                        -- for 25,000 renamed contacts).
                        UPDATE kivi_otrs.customer_user u
                        SET (cp_email, cp_givenname, cp_name, change_time, search_text) =
                            (btrim(n.cp_email), n.cp_givenname, n.cp_name,
                             greatest(n.mtime, (SELECT cu.mtime FROM public.customer cu WHERE cu.id = u.customer_db_id),
                                      n.itime),
                             lower(concat_ws(' ', u.login, n.cp_givenname, n.cp_name, u.customernumber, u.name)))
                        FROM kivi_otrs_new n JOIN kivi_otrs_old o USING (cp_id)
                        WHERE (n.cp_email, n.cp_givenname, n.cp_name) IS DISTINCT FROM (o.cp_email, o.cp_givenname, o.cp_name)
                          AND n.itime IS NOT DISTINCT FROM o.itime
                          AND kivi_otrs.login_of(n.cp_email) IS NOT DISTINCT FROM kivi_otrs.login_of(o.cp_email)
                          AND u.login = kivi_otrs.login_of(n.cp_email) AND u.cp_id = n.cp_id
                          AND (u.cp_email, u.cp_givenname, u.cp_name, u.search_text)
                              IS DISTINCT FROM
                              (btrim(n.cp_email), n.cp_givenname, n.cp_name,
                               lower(concat_ws(' ', u.login, n.cp_givenname, n.cp_name, u.customernumber, u.name)));
                    END IF;
                END IF;
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                PERFORM kivi_otrs.refresh_contacts(v_ids);
            END IF;
        ELSIF TG_TABLE_NAME = 'customer_contacts' THEN
            -- kivitendo's customer form saves every link of the customer again on each save, unchanged
            -- (seen on a real kivitendo 4.1.0): a statement that changes no contact, customer or main
            -- flag changes nothing OTRS shows.
            -- (A nested IF: an INSERT or DELETE statement has only one of the transition tables.)
            IF TG_OP = 'UPDATE' THEN
                IF NOT EXISTS (
                        (SELECT contact_id, customer_id, main FROM kivi_otrs_new
                         EXCEPT ALL SELECT contact_id, customer_id, main FROM kivi_otrs_old)
                        UNION ALL
                        (SELECT contact_id, customer_id, main FROM kivi_otrs_old
                         EXCEPT ALL SELECT contact_id, customer_id, main FROM kivi_otrs_new)) THEN
                    RETURN NULL;
                END IF;
            END IF;
            PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
            IF TG_OP <> 'INSERT' THEN
                DELETE FROM kivi_otrs.contact_link l USING kivi_otrs_old o
                WHERE l.contact_id = o.contact_id AND l.customer_id = o.customer_id;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                INSERT INTO kivi_otrs.contact_link (contact_id, customer_id, main)
                SELECT contact_id, customer_id, main FROM kivi_otrs_new
                ON CONFLICT (contact_id, customer_id) DO UPDATE SET main = EXCLUDED.main;
            END IF;
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT contact_id FROM kivi_otrs_new);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT contact_id FROM kivi_otrs_old);
            ELSE
                v_ids := ARRAY(SELECT contact_id FROM kivi_otrs_new UNION SELECT contact_id FROM kivi_otrs_old);
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                -- A link changes no e-mail address: the logins come from contact_login.
                PERFORM kivi_otrs.refresh_logins(ARRAY(
                    SELECT DISTINCT login FROM kivi_otrs.contact_login WHERE cp_id = ANY (v_ids)));
            END IF;
        ELSIF TG_TABLE_NAME = 'customer' THEN
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_new);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_old);
                v_numbers := ARRAY(SELECT customernumber FROM kivi_otrs_old);
            ELSE
                -- Only columns the companies and customer users show count (not mtime). Saves
                -- that keep number, obsolete flag and itime change no ranking: written straight
                -- into the customer's company and its row in customer_number (address, phone, ...:
                -- a narrow row only its keys index), and on a rename into the customer users it
                -- is primary for (their searched text holds the name).
                BEGIN
                    SELECT coalesce(bool_or(d.fast), false),
                           coalesce(array_agg(d.id) FILTER (WHERE NOT d.fast), '{}'),
                           coalesce(array_agg(d.old_number) FILTER (WHERE NOT d.fast), '{}'),
                           coalesce(array_agg(d.id) FILTER (WHERE d.fast AND d.named), '{}')
                    INTO v_fast, v_ids, v_numbers, v_named
                    FROM (SELECT n.id, o.customernumber AS old_number,
                                 (n.customernumber, n.obsolete, n.itime) IS NOT DISTINCT FROM
                                 (o.customernumber, o.obsolete, o.itime) AS fast,
                                 n.name IS DISTINCT FROM o.name AS named
                          FROM kivi_otrs_new n JOIN kivi_otrs_old o USING (id)
                          WHERE (n.customernumber, n.name, n.department_1, n.street, n.zipcode, n.city, n.country_id,
                                 n.phone, n.fax, n.homepage, n.email, n.notes, n.gln, n.obsolete, n.itime)
                                IS DISTINCT FROM
                                (o.customernumber, o.name, o.department_1, o.street, o.zipcode, o.city, o.country_id,
                                 o.phone, o.fax, o.homepage, o.email, o.notes, o.gln, o.obsolete, o.itime)) d;
                EXCEPTION WHEN undefined_column THEN
                    -- A dropped column: compare what is left (kivi_otrs.customer_fields).
                    WITH n AS MATERIALIZED (SELECT t.id, kivi_otrs.customer_fields(to_jsonb(t)) AS f FROM kivi_otrs_new t),
                    o AS MATERIALIZED (SELECT t.id, kivi_otrs.customer_fields(to_jsonb(t)) AS f FROM kivi_otrs_old t)
                    SELECT coalesce(bool_or(d.fast), false),
                           coalesce(array_agg(d.id) FILTER (WHERE NOT d.fast), '{}'),
                           coalesce(array_agg(d.old_number) FILTER (WHERE NOT d.fast), '{}'),
                           coalesce(array_agg(d.id) FILTER (WHERE d.fast AND d.named), '{}')
                    INTO v_fast, v_ids, v_numbers, v_named
                    FROM (SELECT n.id, o.f ->> 'customernumber' AS old_number,
                                 (n.f -> 'customernumber', n.f -> 'obsolete', n.f -> 'itime') IS NOT DISTINCT FROM
                                 (o.f -> 'customernumber', o.f -> 'obsolete', o.f -> 'itime') AS fast,
                                 n.f -> 'name' IS DISTINCT FROM o.f -> 'name' AS named
                          FROM n JOIN o USING (id)
                          WHERE n.f IS DISTINCT FROM o.f) d;
                END;
                IF v_fast THEN
                    -- The full rebuild's lock first (shared): refresh_all waits for this transaction
                    -- instead of overwriting these rows from an older snapshot.
                    PERFORM pg_advisory_xact_lock_shared(hashtextextended('kivi_otrs.full_refresh', 0));
                    -- The mappings of sql/12_customer_company_rows.sql and sql/16_detail_rows.sql
                    -- (customer_number_rows) for the customer's own fields; tests compare with a
                    -- fresh computation. A row of v_ids updated here is recomputed below anyway.
                    UPDATE kivi_otrs.customer_company c
                    SET (name, department, street, zipcode, city, country, phone, fax, homepage, email,
                         comments, gln, change_time, search_text) =
                        (n.name, n.department_1, n.street, n.zipcode, n.city,
                         (SELECT co.description_en FROM public.countries co WHERE co.id = n.country_id),
                         n.phone, n.fax, n.homepage, n.email, n.notes, n.gln, greatest(n.mtime, n.itime),
                         lower(concat_ws(' ', c.customer_id, n.name, n.department_1, n.city)))
                    FROM kivi_otrs_new n
                    WHERE c.customer_db_id = n.id
                      AND (c.name, c.department, c.street, c.zipcode, c.city, c.phone, c.fax, c.homepage, c.email,
                           c.comments, c.gln, c.country)
                          IS DISTINCT FROM
                          (n.name, n.department_1, n.street, n.zipcode, n.city, n.phone, n.fax, n.homepage, n.email,
                           n.notes, n.gln, (SELECT co.description_en FROM public.countries co WHERE co.id = n.country_id));
                    UPDATE kivi_otrs.customer_number a
                    SET (street, zipcode, city, country, phone, fax, homepage, gln, change_time) =
                        (n.street, n.zipcode, n.city, (SELECT co.description_en FROM public.countries co WHERE co.id = n.country_id),
                         n.phone, n.fax, n.homepage, n.gln, greatest(n.mtime, n.itime))
                    FROM kivi_otrs_new n
                    WHERE a.customer_db_id = n.id
                      AND (a.street, a.zipcode, a.city, a.phone, a.fax, a.homepage, a.gln, a.country)
                          IS DISTINCT FROM
                          (n.street, n.zipcode, n.city, n.phone, n.fax, n.homepage, n.gln,
                           (SELECT co.description_en FROM public.countries co WHERE co.id = n.country_id));
                END IF;
                IF cardinality(v_named) > 0 THEN
                    PERFORM kivi_otrs.lock_logins(ARRAY(SELECT login FROM kivi_otrs.customer_user
                                                        WHERE customer_db_id = ANY (v_named)));
                    -- The mapping of sql/11_customer_user_rows.sql for the customer's name.
                    UPDATE kivi_otrs.customer_user u
                    SET (name, change_time, search_text) =
                        (n.name,
                         greatest((SELECT ct.mtime FROM public.contacts ct WHERE ct.cp_id = u.cp_id), n.mtime,
                                  u.create_time),
                         lower(concat_ws(' ', u.login, u.cp_givenname, u.cp_name, u.customernumber, n.name)))
                    FROM kivi_otrs_new n JOIN kivi_otrs_old o USING (id)
                    WHERE n.name IS DISTINCT FROM o.name
                      AND (n.customernumber, n.obsolete, n.itime) IS NOT DISTINCT FROM (o.customernumber, o.obsolete, o.itime)
                      AND u.customer_db_id = n.id AND u.name IS DISTINCT FROM n.name;
                END IF;
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSE
                PERFORM kivi_otrs.refresh_customers(v_ids, v_numbers);
            END IF;
        ELSIF TG_TABLE_NAME = 'custom_variables' THEN
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT trans_id FROM kivi_otrs_new WHERE config_id = v_flag);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT trans_id FROM kivi_otrs_old WHERE config_id = v_flag);
            ELSE
                -- Only rows whose value changed (a row moved to another contact or variable shows on
                -- both sides): kivitendo's contact form saves every custom variable of the contact
                -- again, unchanged, on each save (seen on a real kivitendo 4.1.0).
                v_ids := ARRAY(
                    SELECT trans_id FROM ((SELECT trans_id, sub_module, bool_value FROM kivi_otrs_new WHERE config_id = v_flag
                                           EXCEPT ALL
                                           SELECT trans_id, sub_module, bool_value FROM kivi_otrs_old WHERE config_id = v_flag)
                                          UNION ALL
                                          (SELECT trans_id, sub_module, bool_value FROM kivi_otrs_old WHERE config_id = v_flag
                                           EXCEPT ALL
                                           SELECT trans_id, sub_module, bool_value FROM kivi_otrs_new WHERE config_id = v_flag)) d);
            END IF;
            IF cardinality(v_ids) > v_full_refresh_above THEN
                PERFORM kivi_otrs.refresh_all();
            ELSIF cardinality(v_ids) > 0 THEN
                PERFORM kivi_otrs.refresh_flags(v_ids, v_flag);
            END IF;
        ELSIF TG_TABLE_NAME = 'custom_variable_configs' THEN
            -- Each statement may name only the transition tables its event has: one
            -- expression mentioning both fails for INSERT and DELETE (kivi_otrs_old /
            -- kivi_otrs_new "does not exist"), so every event gets its own query.
            IF TG_OP = 'INSERT' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_new WHERE id = v_flag);
            ELSIF TG_OP = 'DELETE' THEN
                v_ids := ARRAY(SELECT id FROM kivi_otrs_old WHERE id = v_flag);
            ELSE
                v_ids := ARRAY(SELECT id FROM kivi_otrs_new WHERE id = v_flag
                               UNION SELECT id FROM kivi_otrs_old WHERE id = v_flag);
            END IF;
            IF cardinality(v_ids) > 0 THEN
                PERFORM kivi_otrs.refresh_all();
            END IF;
        ELSIF TG_TABLE_NAME = 'countries' THEN
            PERFORM kivi_otrs.refresh_all();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        UPDATE kivi_otrs.sync_state
        SET stale = true, last_error = TG_TABLE_NAME || ' ' || TG_OP || ': ' || SQLERRM, last_error_at = now();
        RAISE WARNING 'kivi-otrs: the OTRS customer backend was not updated (%); run kivi-otrs doctor', SQLERRM;
    END;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION kivi_otrs.sync_trigger() IS 'Keeps the OTRS customer backend in step with kivitendo; never fails kivitendo''s statement';
