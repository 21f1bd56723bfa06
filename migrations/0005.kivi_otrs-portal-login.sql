-- kivi-otrs customer portal login: contacts that may report tickets log into the
-- OTRS/Znuny customer interface with their own password (kivi-otrs portal set|reset|disable|list).
-- Only bcrypt hashes in Znuny's own "BCRYPT:cost:salt:hash" form (Kernel/System/CustomerAuth/DB.pm
-- verifies it natively) are stored, here, never in kivitendo's tables. Znuny reads them through
-- the view kivi_otrs.otrs_customer_auth (sql/42_otrs_customer_auth.sql), which shows no password
-- for logins that are not valid.
-- depends: 0004.kivi_otrs-ledger-follows-documents

CREATE TABLE kivi_otrs.portal_password (
    login text PRIMARY KEY,
    password_hash text,
    set_at timestamptz,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT session_user,
    CONSTRAINT portal_password_login_check CHECK (login = lower(btrim(login)) AND login <> ''),
    -- Strong hashes only: Znuny's bcrypt form, cost 10..31, 16-character salt, 31-character bcrypt base64 hash.
    CONSTRAINT portal_password_hash_check CHECK (
        password_hash ~ '^BCRYPT:(1[0-9]|2[0-9]|3[01]):[A-Za-z0-9]{16}:[./A-Za-z0-9]{31}$'),
    CONSTRAINT portal_password_set_check CHECK ((password_hash IS NULL) = (set_at IS NULL))
);
COMMENT ON TABLE kivi_otrs.portal_password IS 'Customer portal passwords of OTRS customer users (logins of kivi_otrs.otrs_customer_contacts) as bcrypt hashes; kivi-otrs portal set|reset|disable|list; Znuny reads them through kivi_otrs.otrs_customer_auth';
COMMENT ON COLUMN kivi_otrs.portal_password.login IS 'UserLogin: the login (lower-cased e-mail) of kivi_otrs.otrs_customer_contacts';
COMMENT ON COLUMN kivi_otrs.portal_password.password_hash IS 'BCRYPT:cost:salt:hash as Znuny''s CustomerAuth::DB verifies it (Crypt::Eksblowfish bcrypt_hash, key_nul, 16-character salt); NULL = disabled';
COMMENT ON COLUMN kivi_otrs.portal_password.set_at IS 'When the current password was set (NULL while disabled)';
COMMENT ON COLUMN kivi_otrs.portal_password.changed_at IS 'Last set, reset or disable';
COMMENT ON COLUMN kivi_otrs.portal_password.changed_by IS 'Database role that made the last change';
