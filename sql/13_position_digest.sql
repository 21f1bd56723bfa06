-- drop: DROP FUNCTION IF EXISTS kivi_otrs.position_digest(text, text)
-- The identity of a position's text: description and long description without the kivi-otrs
-- marker. kivitendo's copies (save as new, quotation -> order) carry the text verbatim, so a
-- copy whose marker an editor dropped still has the digest of the position it was copied from.
CREATE OR REPLACE FUNCTION kivi_otrs.position_digest(description text, longdescription text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT md5(coalesce(description, '') || chr(31)
               || regexp_replace(coalesce(longdescription, ''), '<!-- kivi-otrs:[0-9a-f-]{36} -->', '', 'g'))
$fn$;
COMMENT ON FUNCTION kivi_otrs.position_digest(text, text) IS 'md5 of a position''s texts without the kivi-otrs marker (recognises copies)';
