-- Undo 0006.
ALTER TABLE kivi_otrs.customer_user RESET (fillfactor);
DROP INDEX kivi_otrs.customer_company_valid_search_trgm_idx;
DROP INDEX kivi_otrs.customer_user_valid_search_trgm_idx;
DROP INDEX kivi_otrs.customer_user_customer_db_id_idx;
DROP TABLE kivi_otrs.customer_number;
