-- Reference rows every kivitendo client database has (countries, currency,
-- tax zone, service units). Loads into the kivi-otrs fixture and into a real
-- 4.1.0 schema alike.
INSERT INTO public.countries (id, iso2, description_en, description_de, sortorder) VALUES
    (1, 'DE', 'Germany', 'Deutschland', 1),
    (2, 'AT', 'Austria', 'Österreich', 2),
    (3, 'CH', 'Switzerland', 'Schweiz', 3),
    (4, 'NL', 'Netherlands', 'Niederlande', 4),
    (5, 'IT', 'Italy', 'Italien', 5);
INSERT INTO public.currencies (id, name) VALUES (1, 'EUR');
INSERT INTO public.tax_zones (id, description, sortkey) VALUES (nextval('public.id'), 'Inland', 1);
INSERT INTO public.units (name, base_unit, factor, type, sortkey, id) VALUES
    ('min', NULL, 0, 'service', 1, 1),
    ('Std', 'min', 60, 'service', 2, 2),
    ('Tag', 'Std', 8, 'service', 3, 3),
    ('psch', NULL, 0, 'service', 4, 4),
    ('Stck', NULL, 0, 'dimension', 5, 5);
-- Only in the full kivitendo schema: the default part classification and a receivables account.
DO $$
BEGIN
    IF to_regclass('public.part_classifications') IS NOT NULL THEN
        EXECUTE $q$INSERT INTO public.part_classifications (id, description, abbreviation)
                   VALUES (0, '-------', 'None') ON CONFLICT DO NOTHING$q$;
    END IF;
    IF to_regclass('public.chart') IS NOT NULL THEN
        EXECUTE $q$INSERT INTO public.chart (id, accno, description, link) VALUES (1400, '1400', 'Forderungen', 'AR')
                   ON CONFLICT DO NOTHING$q$;
    END IF;
END
$$;

-- kivitendo's single row of number ranges (sales order numbers continue from here). The real
-- 4.1 schema's row also needs the client's currency, country and receivables/payables accounts.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = 'defaults' AND column_name = 'ar_chart_id') THEN
        INSERT INTO public.chart (accno, description, category, link)
        VALUES ('1600', 'Verbindlichkeiten aus Lieferungen und Leistungen', 'L', 'AP');
        INSERT INTO public.defaults (sonumber, currency_id, address_country_id, ar_chart_id, ap_chart_id)
        SELECT 'AB-0999', 1, 1, (SELECT id FROM public.chart WHERE accno = '1400'),
               (SELECT id FROM public.chart WHERE accno = '1600');
    ELSE
        INSERT INTO public.defaults (sonumber) VALUES ('AB-0999');
    END IF;
END
$$;

-- kivitendo's upgrade log: a 4.1.0 client database has the release tag (a schema-only dump has not).
INSERT INTO public.schema_info (tag, login) VALUES ('release_4_1_0', 'admin') ON CONFLICT DO NOTHING;
