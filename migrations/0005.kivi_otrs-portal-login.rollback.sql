-- Undo 0005: the customer portal passwords go (the view kivi_otrs.otrs_customer_auth is dropped before, with sql/).
DROP TABLE kivi_otrs.portal_password;
