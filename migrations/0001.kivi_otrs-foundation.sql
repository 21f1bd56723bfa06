-- kivi-otrs foundation: settings, install bookkeeping, the materialised OTRS
-- customer backend tables, the "may report tickets" custom variable, the
-- pg_trgm extension (only if kivitendo has none) and the read role for OTRS.
-- Options (set by `kivi-otrs migrate` as session settings):
--   kivi_otrs.reader_role   name of the NOLOGIN read role (default kivi_otrs_reader)
--   kivi_otrs.flag_default  '1' or '0': may contacts without a value report tickets (default '0')
-- depends:

CREATE TABLE kivi_otrs.settings (
    key text PRIMARY KEY,
    value text NOT NULL,
    mtime timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kivi_otrs.settings IS 'kivi-otrs settings (kivi-otrs config show|set); unknown keys are rejected by the CLI';
COMMENT ON COLUMN kivi_otrs.settings.key IS 'Setting name, e.g. otrs.base_url';
COMMENT ON COLUMN kivi_otrs.settings.value IS 'Setting value as text; secrets are masked on output';
COMMENT ON COLUMN kivi_otrs.settings.mtime IS 'Last change';

CREATE TABLE kivi_otrs.install_state (
    key text PRIMARY KEY,
    value text NOT NULL
);
COMMENT ON TABLE kivi_otrs.install_state IS 'What this installation created or adopted, so that rollback removes exactly that';
COMMENT ON COLUMN kivi_otrs.install_state.key IS 'reader_role, reader_role_created, flag_config_id, flag_config_created, trgm_schema, trgm_created';
COMMENT ON COLUMN kivi_otrs.install_state.value IS 'Value as text';

CREATE TABLE kivi_otrs.sync_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    stale boolean NOT NULL DEFAULT false,
    last_error text,
    last_error_at timestamptz,
    last_full_refresh timestamptz
);
COMMENT ON TABLE kivi_otrs.sync_state IS 'Health of the live customer backend: set stale when a kivitendo change could not be mirrored';
COMMENT ON COLUMN kivi_otrs.sync_state.id IS 'Always true: the table has one row';
COMMENT ON COLUMN kivi_otrs.sync_state.stale IS 'true when the mirror may be behind kivitendo; kivi-otrs refresh clears it';
COMMENT ON COLUMN kivi_otrs.sync_state.last_error IS 'The last error a sync trigger caught (kivitendo''s own statement went on)';
COMMENT ON COLUMN kivi_otrs.sync_state.last_error_at IS 'When last_error happened';
COMMENT ON COLUMN kivi_otrs.sync_state.last_full_refresh IS 'When the mirror was last rebuilt from scratch';
INSERT INTO kivi_otrs.sync_state (id) VALUES (true);

CREATE TABLE kivi_otrs.contact_login (
    cp_id integer PRIMARY KEY,
    login text NOT NULL
);
CREATE INDEX contact_login_login_idx ON kivi_otrs.contact_login (login);
COMMENT ON TABLE kivi_otrs.contact_login IS 'Mirror: which login (lower-cased trimmed e-mail) each kivitendo contact has; finds the contacts sharing a login';
COMMENT ON COLUMN kivi_otrs.contact_login.cp_id IS 'public.contacts.cp_id';
COMMENT ON COLUMN kivi_otrs.contact_login.login IS 'lower(btrim(cp_email)) when that is a well-formed address';

CREATE TABLE kivi_otrs.contact_link (
    contact_id integer NOT NULL,
    customer_id integer NOT NULL,
    main boolean NOT NULL DEFAULT false,
    PRIMARY KEY (contact_id, customer_id)
);
CREATE INDEX contact_link_customer_id_idx ON kivi_otrs.contact_link (customer_id);
COMMENT ON TABLE kivi_otrs.contact_link IS 'Mirror of public.customer_contacts indexed both ways (kivitendo has no index on contact_id)';
COMMENT ON COLUMN kivi_otrs.contact_link.contact_id IS 'public.customer_contacts.contact_id';
COMMENT ON COLUMN kivi_otrs.contact_link.customer_id IS 'public.customer_contacts.customer_id';
COMMENT ON COLUMN kivi_otrs.contact_link.main IS 'public.customer_contacts.main';

CREATE TABLE kivi_otrs.customer_user (
    login text PRIMARY KEY,
    cp_email text NOT NULL,
    customernumber text NOT NULL,
    customer_ids text NOT NULL,
    cp_title text,
    cp_givenname text,
    cp_name text,
    gender text,
    department text,
    position text,
    cp_phone1 text,
    cp_mobile1 text,
    cp_fax text,
    name text,
    street text,
    zipcode text,
    city text,
    country text,
    phone text,
    fax text,
    homepage text,
    gln text,
    cp_valid_id smallint NOT NULL,
    create_time timestamp,
    change_time timestamp,
    search_text text NOT NULL,
    cp_id integer NOT NULL,
    customer_db_id integer NOT NULL,
    contact_ids integer[] NOT NULL,
    CHECK (login = lower(login)),
    CHECK (cp_valid_id IN (1, 2))
);
CREATE INDEX customer_user_lower_login_idx ON kivi_otrs.customer_user (lower(login));
CREATE INDEX customer_user_lower_email_idx ON kivi_otrs.customer_user (lower(cp_email));
CREATE INDEX customer_user_customernumber_idx ON kivi_otrs.customer_user (customernumber);
COMMENT ON TABLE kivi_otrs.customer_user IS 'Materialised OTRS customer users, one row per login; kept live by triggers on kivitendo tables; read through kivi_otrs.otrs_customer_contacts';

CREATE TABLE kivi_otrs.customer_company (
    customer_id text PRIMARY KEY,
    name text NOT NULL,
    department text,
    street text,
    zipcode text,
    city text,
    country text,
    phone text,
    fax text,
    homepage text,
    email text,
    comments text,
    gln text,
    valid_id smallint NOT NULL,
    create_time timestamp,
    change_time timestamp,
    search_text text NOT NULL,
    customer_db_id integer NOT NULL UNIQUE,
    CHECK (valid_id IN (1, 2))
);
CREATE INDEX customer_company_lower_customer_id_idx ON kivi_otrs.customer_company (lower(customer_id));
COMMENT ON TABLE kivi_otrs.customer_company IS 'Materialised OTRS customer companies, one row per customer number; read through kivi_otrs.otrs_customer_companies';

-- Trigram indexes for OTRS's LOWER(col) LIKE '%term%' searches, with kivitendo's
-- pg_trgm when it has one, else our own copy of the extension in our schema.
DO $$
DECLARE
    v_schema text;
BEGIN
    SELECT n.nspname INTO v_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF v_schema IS NULL THEN
        CREATE EXTENSION pg_trgm WITH SCHEMA kivi_otrs;
        v_schema := 'kivi_otrs';
        INSERT INTO kivi_otrs.install_state VALUES ('trgm_created', 'true');
    ELSE
        INSERT INTO kivi_otrs.install_state VALUES ('trgm_created', 'false');
    END IF;
    INSERT INTO kivi_otrs.install_state VALUES ('trgm_schema', v_schema);
    EXECUTE format('CREATE INDEX customer_user_search_trgm_idx ON kivi_otrs.customer_user USING gin (lower(search_text) %I.gin_trgm_ops)', v_schema);
    -- Finer statistics on the searched expression: OTRS's LIMIT 250 search needs good row estimates
    -- to choose between a trigram bitmap scan (rare terms) and an early-stopping scan (common terms).
    ALTER INDEX kivi_otrs.customer_user_search_trgm_idx ALTER COLUMN 1 SET STATISTICS 1000;
    EXECUTE format('CREATE INDEX customer_user_customernumber_trgm_idx ON kivi_otrs.customer_user USING gin (lower(customernumber) %I.gin_trgm_ops)', v_schema);
    EXECUTE format('CREATE INDEX customer_company_search_trgm_idx ON kivi_otrs.customer_company USING gin (lower(search_text) %I.gin_trgm_ops)', v_schema);
END
$$;

-- The read role OTRS connects through (by a LOGIN role that is granted this one).
DO $$
DECLARE
    v_role text := coalesce(nullif(current_setting('kivi_otrs.reader_role', true), ''), 'kivi_otrs_reader');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
        IF (SELECT rolcanlogin OR rolsuper FROM pg_roles WHERE rolname = v_role) THEN
            RAISE EXCEPTION 'role % exists and can log in or is a superuser; choose another --reader-role', v_role;
        END IF;
        INSERT INTO kivi_otrs.install_state VALUES ('reader_role_created', 'false');
    ELSE
        EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        INSERT INTO kivi_otrs.install_state VALUES ('reader_role_created', 'true');
    END IF;
    INSERT INTO kivi_otrs.install_state VALUES ('reader_role', v_role);
END
$$;

-- The "may report tickets" flag: a kivitendo custom variable (bool) on contacts,
-- edited in kivitendo's contact form. An existing one of the same name is adopted.
DO $$
DECLARE
    v_default text := CASE WHEN coalesce(current_setting('kivi_otrs.flag_default', true), '') IN ('1', 'true', 'yes')
                           THEN '1' ELSE '0' END;
    v_id integer;
BEGIN
    SELECT id INTO v_id FROM public.custom_variable_configs
    WHERE module = 'Contacts' AND name = 'otrs_may_report_tickets' AND type = 'bool'
    ORDER BY id LIMIT 1;
    IF v_id IS NULL THEN
        INSERT INTO public.custom_variable_configs
            (name, description, type, module, default_value, options, searchable, includeable,
             included_by_default, sortkey, flags, first_tab)
        VALUES ('otrs_may_report_tickets', 'Darf Tickets melden (OTRS)', 'bool', 'Contacts', v_default, NULL,
                true, true, false,
                (SELECT coalesce(max(sortkey), 0) + 1 FROM public.custom_variable_configs WHERE module = 'Contacts'),
                '', false)
        RETURNING id INTO v_id;
        INSERT INTO kivi_otrs.install_state VALUES ('flag_config_created', 'true');
    ELSE
        INSERT INTO kivi_otrs.install_state VALUES ('flag_config_created', 'false');
    END IF;
    INSERT INTO kivi_otrs.install_state VALUES ('flag_config_id', v_id::text);
END
$$;
