-- kivi-otrs: what OTRS shows but never searches lives beside the search rows (issue 13).
-- A kivitendo save of a contact's phone or a customer's address rewrote the customer user
-- rows (nine indexes, three of them trigram GIN, and for a customer every user of it,
-- spread over the table). Those fields now live one row per kivitendo contact (in
-- kivi_otrs.contact_login) and one row per customer (in kivi_otrs.customer_number), rows
-- that only a primary key indexes; the view kivi_otrs.otrs_customer_contacts joins them
-- by key (a search that selects none of them does not read them: PostgreSQL drops the
-- join). kivi_otrs.customer_user keeps what OTRS searches and lists.
-- The columns moved out of kivi_otrs.customer_user stay in it, always NULL: a rollback to
-- 0007 then finds the table exactly as that version built it.
-- depends: 0007.kivi_otrs-portal-login-any-case

ALTER TABLE kivi_otrs.contact_login
    ADD COLUMN cp_title text,
    ADD COLUMN gender text,
    ADD COLUMN department text,
    ADD COLUMN position text,
    ADD COLUMN cp_phone1 text,
    ADD COLUMN cp_mobile1 text,
    ADD COLUMN cp_fax text,
    ADD COLUMN change_time timestamp;
COMMENT ON COLUMN kivi_otrs.contact_login.cp_title IS 'contacts.cp_title (shown as UserTitle)';
COMMENT ON COLUMN kivi_otrs.contact_login.gender IS 'btrim(contacts.cp_gender)';
COMMENT ON COLUMN kivi_otrs.contact_login.department IS 'contacts.cp_abteilung';
COMMENT ON COLUMN kivi_otrs.contact_login.position IS 'contacts.cp_position';
COMMENT ON COLUMN kivi_otrs.contact_login.cp_phone1 IS 'contacts.cp_phone1';
COMMENT ON COLUMN kivi_otrs.contact_login.cp_mobile1 IS 'contacts.cp_mobile1';
COMMENT ON COLUMN kivi_otrs.contact_login.cp_fax IS 'contacts.cp_fax';
COMMENT ON COLUMN kivi_otrs.contact_login.change_time IS 'Latest of contacts.mtime and itime at the last save that changed one of these fields';
-- Room for in-place (HOT) updates: a save of one of these fields touches no index.
ALTER TABLE kivi_otrs.contact_login SET (fillfactor = 70);

ALTER TABLE kivi_otrs.customer_number
    ADD COLUMN street text,
    ADD COLUMN zipcode text,
    ADD COLUMN city text,
    ADD COLUMN country text,
    ADD COLUMN phone text,
    ADD COLUMN fax text,
    ADD COLUMN homepage text,
    ADD COLUMN gln text,
    ADD COLUMN change_time timestamp;
COMMENT ON COLUMN kivi_otrs.customer_number.street IS 'customer.street (shown to OTRS as UserStreet of the customer''s users)';
COMMENT ON COLUMN kivi_otrs.customer_number.zipcode IS 'customer.zipcode';
COMMENT ON COLUMN kivi_otrs.customer_number.city IS 'customer.city';
COMMENT ON COLUMN kivi_otrs.customer_number.country IS 'countries.description_en of customer.country_id';
COMMENT ON COLUMN kivi_otrs.customer_number.phone IS 'customer.phone';
COMMENT ON COLUMN kivi_otrs.customer_number.fax IS 'customer.fax';
COMMENT ON COLUMN kivi_otrs.customer_number.homepage IS 'customer.homepage';
COMMENT ON COLUMN kivi_otrs.customer_number.gln IS 'customer.gln';
COMMENT ON COLUMN kivi_otrs.customer_number.change_time IS 'Latest of customer.mtime and itime at the last save that changed one of these fields';
ALTER TABLE kivi_otrs.customer_number SET (fillfactor = 70);

DO $$
DECLARE
    v_column text;
BEGIN
    FOREACH v_column IN ARRAY ARRAY['cp_title', 'gender', 'department', 'position', 'cp_phone1', 'cp_mobile1',
                                    'cp_fax', 'street', 'zipcode', 'city', 'country', 'phone', 'fax', 'homepage', 'gln'] LOOP
        EXECUTE format('COMMENT ON COLUMN kivi_otrs.customer_user.%I IS %L', v_column,
                       'Unused since migration 0008 (always NULL; the value lives in contact_login / customer_number)');
    END LOOP;
END
$$;
-- The filled mirror is rebuilt by migrate right after this (kivi_otrs.refresh_all).
