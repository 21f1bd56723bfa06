-- kivi-otrs customer portal login in any upper/lower case.
-- Znuny's CustomerAuth::DB compares the typed login exactly (`WHERE login = ?`), while logins are the
-- lower-cased e-mail: "Anna.Meyer@Example.org" found nothing. The auth view's login column carries
-- a case-insensitive ICU collation (accents and ß stay distinct: only case is ignored), with a
-- matching index so a portal login stays an index lookup.
-- depends: 0005.kivi_otrs-portal-login 0006.kivi_otrs-search-and-write-speed

CREATE COLLATION kivi_otrs.login_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
COMMENT ON COLLATION kivi_otrs.login_ci IS 'Case-insensitive comparison of portal logins (Znuny compares the typed login exactly)';
CREATE INDEX customer_user_login_ci_idx ON kivi_otrs.customer_user ((login COLLATE kivi_otrs.login_ci));
