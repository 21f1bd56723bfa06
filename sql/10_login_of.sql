-- drop: DROP FUNCTION IF EXISTS kivi_otrs.login_of(text)
-- The OTRS login of a kivitendo e-mail address: lower-cased and trimmed, or
-- NULL when the address is not well-formed (kivi-otrs doctor lists those).
CREATE OR REPLACE FUNCTION kivi_otrs.login_of(p_email text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN btrim(p_email) ~ '^[^@[:space:]<>(),;:"\[\]\\]+@[^@[:space:]<>(),;:"\[\]\\]+\.[^@[:space:]<>(),;:"\[\]\\.]+$'
        THEN lower(btrim(p_email))
    END
$fn$;
COMMENT ON FUNCTION kivi_otrs.login_of(text) IS 'OTRS login for a kivitendo e-mail: lower(btrim(email)) when well-formed, else NULL';
