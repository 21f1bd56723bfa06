-- drop: DROP VIEW IF EXISTS kivi_otrs.otrs_customer_contacts
-- OTRS CustomerUser DB backend (Table => 'kivi_otrs.otrs_customer_contacts').
-- Reads only kivi-otrs' own table, so it never holds a dependency on kivitendo columns.
DROP VIEW IF EXISTS kivi_otrs.otrs_customer_contacts;
CREATE VIEW kivi_otrs.otrs_customer_contacts AS
SELECT login, cp_email, customernumber, customer_ids, cp_title, cp_givenname, cp_name, gender, department,
       position, cp_phone1, cp_mobile1, cp_fax, name, street, zipcode, city, country, phone, fax, homepage,
       gln, cp_valid_id, create_time, change_time, search_text
FROM kivi_otrs.customer_user;
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
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.change_time IS 'Latest of contacts.mtime, customer.mtime, contacts.itime';
COMMENT ON COLUMN kivi_otrs.otrs_customer_contacts.search_text IS 'CustomerUserSearchFields: lower-cased login, names, customer number and company (one trigram index)';
