DROP TABLE kivi_otrs.writeback;
DROP TABLE kivi_otrs.audit;
