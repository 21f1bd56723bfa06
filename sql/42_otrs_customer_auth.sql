-- drop: DROP VIEW IF EXISTS kivi_otrs.otrs_customer_auth
-- OTRS customer portal login (Customer::AuthModule::DB, Table => 'kivi_otrs.otrs_customer_auth').
-- Znuny's CustomerAuth::DB runs SELECT pw, login FROM kivi_otrs.otrs_customer_auth WHERE login = ?.
-- pw is NULL unless the login may report tickets for a non-obsolete customer (cp_valid_id = 1) and
-- has a password, so unticking the flag or marking the customer obsolete locks the portal at once.
DROP VIEW IF EXISTS kivi_otrs.otrs_customer_auth;
CREATE VIEW kivi_otrs.otrs_customer_auth AS
SELECT u.login COLLATE kivi_otrs.login_ci AS login,  -- Znuny's "WHERE login = ?" ignores case
       CASE WHEN u.cp_valid_id = 1 THEN p.password_hash END AS pw
FROM kivi_otrs.customer_user u
LEFT JOIN kivi_otrs.portal_password p ON p.login = u.login;
COMMENT ON VIEW kivi_otrs.otrs_customer_auth IS 'OTRS Customer::AuthModule::DB table: one row per login of kivi_otrs.otrs_customer_contacts with its portal password hash; kivi-otrs otrs-config prints the matching block';
COMMENT ON COLUMN kivi_otrs.otrs_customer_auth.login IS 'CustomerKey: the login (lower-cased e-mail), as in kivi_otrs.otrs_customer_contacts; compared case-insensitively';
COMMENT ON COLUMN kivi_otrs.otrs_customer_auth.pw IS 'CustomerPassword: BCRYPT:cost:salt:hash, NULL (no login) when the login is not valid or has no password';
