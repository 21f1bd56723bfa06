-- Undo 0008 (the view joining the moved fields is dropped with the repeatable objects first;
-- kivi_otrs.customer_user kept its columns, 0007's refresh fills them again).
ALTER TABLE kivi_otrs.contact_login RESET (fillfactor);
ALTER TABLE kivi_otrs.contact_login
    DROP COLUMN cp_title, DROP COLUMN gender, DROP COLUMN department, DROP COLUMN position,
    DROP COLUMN cp_phone1, DROP COLUMN cp_mobile1, DROP COLUMN cp_fax, DROP COLUMN change_time;
ALTER TABLE kivi_otrs.customer_number RESET (fillfactor);
ALTER TABLE kivi_otrs.customer_number
    DROP COLUMN street, DROP COLUMN zipcode, DROP COLUMN city, DROP COLUMN country, DROP COLUMN phone,
    DROP COLUMN fax, DROP COLUMN homepage, DROP COLUMN gln, DROP COLUMN change_time;
