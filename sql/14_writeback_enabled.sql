-- drop: DROP FUNCTION IF EXISTS kivi_otrs.writeback_enabled()
-- Whether the setting writeback.enabled is on (the triggers queue OTRS field updates only then).
CREATE OR REPLACE FUNCTION kivi_otrs.writeback_enabled() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT EXISTS (SELECT 1 FROM kivi_otrs.settings
                   WHERE key = 'writeback.enabled' AND lower(value) IN ('1', 'true', 'yes', 'on', 't', 'y'))
$fn$;
COMMENT ON FUNCTION kivi_otrs.writeback_enabled() IS 'writeback.enabled as the triggers read it';
