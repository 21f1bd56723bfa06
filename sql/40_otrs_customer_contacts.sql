-- drop: DROP VIEW IF EXISTS kivi_otrs.otrs_customer_contacts
-- OTRS CustomerUser DB backend (Table => 'kivi_otrs.otrs_customer_contacts').
-- Reads only kivi-otrs' own tables, so it never holds a dependency on kivitendo columns.
-- What OTRS searches and lists comes from kivi_otrs.customer_user; what it only shows comes
-- from the primary contact's row in kivi_otrs.contact_login and the primary customer's row in
-- kivi_otrs.customer_number (migration 0008). Both joins are LEFT JOINs on a primary key, so
-- PostgreSQL leaves them out of every query that selects none of their columns (Znuny's
-- agent search lists login, names and e-mail only).
DROP VIEW IF EXISTS kivi_otrs.otrs_customer_contacts;
CREATE VIEW kivi_otrs.otrs_customer_contacts AS
SELECT u.login, u.cp_email, u.customernumber, u.customer_ids, d.cp_title, u.cp_givenname, u.cp_name, d.gender,
       d.department, d.position, d.cp_phone1, d.cp_mobile1, d.cp_fax, u.name, a.street, a.zipcode, a.city,
       a.country, a.phone, a.fax, a.homepage, a.gln, u.cp_valid_id, u.create_time,
       greatest(u.change_time, d.change_time, a.change_time) AS change_time, u.search_text
FROM kivi_otrs.customer_user u
LEFT JOIN kivi_otrs.contact_login d ON d.cp_id = u.cp_id
LEFT JOIN kivi_otrs.customer_number a ON a.customer_db_id = u.customer_db_id;
COMMENT ON VIEW kivi_otrs.otrs_customer_contacts IS 'OTRS CustomerUser backend: one row per login (e-mail) of kivitendo contacts; kivi-otrs otrs-config prints the matching Kernel/Config.pm block';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.login IS 'UserLogin (CustomerKey): the contact''s e-mail, lower-cased and trimmed; unique';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_email IS 'UserEmail: the e-mail as entered in kivitendo (trimmed)';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.customernumber IS 'UserCustomerID (CustomerID): customer number of the primary customer';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.customer_ids IS 'UserCustomerIDs: customer numbers of all customers the login may report for, separated by ;';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_title IS 'UserTitle: contacts.cp_title';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_givenname IS 'UserFirstname: contacts.cp_givenname';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_name IS 'UserLastname: contacts.cp_name';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.gender IS 'Gender: contacts.cp_gender (m/f)';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.department IS 'Department: contacts.cp_abteilung';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.position IS 'Position: contacts.cp_position';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_phone1 IS 'UserPhone: contacts.cp_phone1';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_mobile1 IS 'UserMobile: contacts.cp_mobile1';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_fax IS 'UserFax: contacts.cp_fax';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.name IS 'Company: customer.name of the primary customer';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.street IS 'UserStreet: customer.street';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.zipcode IS 'UserZip: customer.zipcode';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.city IS 'UserCity: customer.city';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.country IS 'UserCountry: countries.description_en of customer.country_id';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.phone IS 'Company phone: customer.phone';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.fax IS 'Company fax: customer.fax';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.homepage IS 'Company homepage: customer.homepage';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.gln IS 'GLN: customer.gln';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.cp_valid_id IS 'ValidID (CustomerValid): 1 = may report tickets for a non-obsolete customer, 2 = invalid';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.create_time IS 'contacts.itime';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.change_time IS 'Latest save of the contact or customer that changed something OTRS shows (contacts.mtime, customer.mtime, contacts.itime)';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.search_text IS 'CustomerUserSearchFields: lower-cased login, names, customer number and company (one trigram index)';
