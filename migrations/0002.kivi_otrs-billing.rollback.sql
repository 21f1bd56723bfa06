-- Undo 0002 (the ledger goes with it: rollback is an uninstall).
DROP TABLE kivi_otrs.template;
DROP TABLE kivi_otrs.article_rule;
DROP TABLE kivi_otrs.ledger;
