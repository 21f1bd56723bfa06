-- Undo 0007 (the auth view that uses the collation is dropped with the repeatable objects first).
DROP INDEX kivi_otrs.customer_user_login_ci_idx;
DROP COLLATION kivi_otrs.login_ci;
