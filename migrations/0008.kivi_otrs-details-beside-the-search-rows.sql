-- kivi-otrs: what OTRS shows but never searches lives beside the search rows (issue 13).
-- A kivitendo save of a contact's phone or a customer's address rewrote the customer user
-- rows (nine indexes, three of them trigram GIN, and for a customer every user of it,
-- spread over the table). Those fields now live one row per kivitendo contact (in
-- kivi_otrs.contact_login) and one row per customer (in kivi_otrs.customer_number), rows
-- that only their keys index; the view kivi_otrs.otrs_customer_contacts joins them
-- by key (a search that selects none of them does not read them: PostgreSQL drops the
-- join). kivi_otrs.customer_user keeps what OTRS searches and lists.
-- The columns moved out of kivi_otrs.customer_user stay in it, always NULL: an older
-- kivi-otrs installed over this database (which fills them with SELECT *) still finds the
-- table as it built it.
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
ALTER TABLE kivi_otrs.customer_number SET (fillfactor = 70);

DO $$
DECLARE
    v_column text;
    v_comment record;
BEGIN
    FOR v_comment IN SELECT * FROM (VALUES
        ('contact_login', 'cp_title', 'contacts.cp_title (shown as UserTitle)'),
        ('contact_login', 'gender', 'btrim(contacts.cp_gender)'),
        ('contact_login', 'department', 'contacts.cp_abteilung'),
        ('contact_login', 'position', 'contacts.cp_position'),
        ('contact_login', 'cp_phone1', 'contacts.cp_phone1'),
        ('contact_login', 'cp_mobile1', 'contacts.cp_mobile1'),
        ('contact_login', 'cp_fax', 'contacts.cp_fax'),
        ('contact_login', 'change_time', 'Latest of contacts.mtime and itime at the last save that changed one of these fields'),
        ('customer_number', 'street', 'customer.street (shown to OTRS as UserStreet of the customer''s users)'),
        ('customer_number', 'zipcode', 'customer.zipcode'),
        ('customer_number', 'city', 'customer.city'),
        ('customer_number', 'country', 'countries.description_en of customer.country_id'),
        ('customer_number', 'phone', 'customer.phone'),
        ('customer_number', 'fax', 'customer.fax'),
        ('customer_number', 'homepage', 'customer.homepage'),
        ('customer_number', 'gln', 'customer.gln'),
        ('customer_number', 'change_time', 'Latest of customer.mtime and itime at the last save that changed one of these fields')
    ) AS c (tab, col, text) LOOP
        EXECUTE format('COMMENT ON COLUMN kivi_otrs.%I.%I IS %L', v_comment.tab, v_comment.col, v_comment.text);
    END LOOP;
    FOREACH v_column IN ARRAY ARRAY['cp_title', 'gender', 'department', 'position', 'cp_phone1', 'cp_mobile1',
                                    'cp_fax', 'street', 'zipcode', 'city', 'country', 'phone', 'fax', 'homepage', 'gln'] LOOP
        EXECUTE format('COMMENT ON COLUMN kivi_otrs.customer_user.%I IS %L', v_column,
                       'Unused since migration 0008 (always NULL; the value lives in contact_login / customer_number)');
    END LOOP;
END
$$;
-- The filled mirror is rebuilt by migrate right after this (kivi_otrs.refresh_all).
