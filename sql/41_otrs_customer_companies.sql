-- drop: DROP VIEW IF EXISTS kivi_otrs.otrs_customer_companies
-- OTRS CustomerCompany DB backend (Table => 'kivi_otrs.otrs_customer_companies').
DROP VIEW IF EXISTS kivi_otrs.otrs_customer_companies;
CREATE VIEW kivi_otrs.otrs_customer_companies AS
SELECT customer_id, name, department, street, zipcode, city, country, phone, fax, homepage, email, comments,
       gln, valid_id, create_time, change_time, search_text
FROM kivi_otrs.customer_company;
COMMENT ON VIEW kivi_otrs.otrs_customer_companies IS 'OTRS CustomerCompany backend: one row per kivitendo customer number';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.customer_id IS 'CustomerID (CustomerCompanyKey): btrim(customer.customernumber)';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.name IS 'CustomerCompanyName: customer.name';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.department IS 'customer.department_1';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.street IS 'CustomerCompanyStreet: customer.street';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.zipcode IS 'CustomerCompanyZIP: customer.zipcode';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.city IS 'CustomerCompanyCity: customer.city';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.country IS 'CustomerCompanyCountry: countries.description_en';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.phone IS 'customer.phone';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.fax IS 'customer.fax';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.homepage IS 'CustomerCompanyURL: customer.homepage';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.email IS 'customer.email';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.comments IS 'CustomerCompanyComment: customer.notes';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.gln IS 'customer.gln';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.valid_id IS 'ValidID (CustomerCompanyValid): 1, or 2 for obsolete customers';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.create_time IS 'customer.itime';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.change_time IS 'Latest of customer.mtime and customer.itime';
COMMENT ON COLUMN kivi_otrs.otrs_customer_companies.search_text IS 'CustomerCompanySearchFields: lower-cased number, name, department and city';
