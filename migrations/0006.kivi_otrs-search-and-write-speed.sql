-- kivi-otrs search and write speed at kivitendo scale (1M contacts):
-- * Znuny's autocomplete only lists valid customer users (`cp_valid_id IN (1)`, which
--   PostgreSQL reads as `= 1`): trigram indexes over the valid rows only, so a search at
--   10 % valid contacts no longer collects the invalid 90 % in its bitmap;
-- * a kivitendo customer save finds its contacts' customer users and the customers sharing
--   its number through indexes instead of scanning the mirror and public.customer;
-- * room on every page of the mirror for HOT updates: a contact save that does not change
--   the login, the search text or the validity rewrites its row without touching any index.
-- depends: 0004.kivi_otrs-ledger-follows-documents

CREATE TABLE kivi_otrs.customer_number (
    customer_db_id integer PRIMARY KEY,
    number text NOT NULL
);
CREATE INDEX customer_number_number_idx ON kivi_otrs.customer_number (number);
COMMENT ON TABLE kivi_otrs.customer_number IS 'Mirror: the trimmed customer number of every kivitendo customer that has one; finds the customers sharing a number (kivitendo has no index on btrim(customernumber))';
COMMENT ON COLUMN kivi_otrs.customer_number.customer_db_id IS 'public.customer.id';
COMMENT ON COLUMN kivi_otrs.customer_number.number IS 'btrim(public.customer.customernumber), never empty';

CREATE INDEX customer_user_customer_db_id_idx ON kivi_otrs.customer_user (customer_db_id);

DO $$
DECLARE
    v_schema text := (SELECT value FROM kivi_otrs.install_state WHERE key = 'trgm_schema');
BEGIN
    EXECUTE format('CREATE INDEX customer_user_valid_search_trgm_idx ON kivi_otrs.customer_user '
                   'USING gin (lower(search_text) %I.gin_trgm_ops) WHERE cp_valid_id = 1', v_schema);
    EXECUTE format('CREATE INDEX customer_company_valid_search_trgm_idx ON kivi_otrs.customer_company '
                   'USING gin (lower(search_text) %I.gin_trgm_ops) WHERE valid_id = 1', v_schema);
END
$$;

ALTER TABLE kivi_otrs.customer_user SET (fillfactor = 70);
