-- Demo kivitendo data: customers, contacts and an hourly-rate article, with
-- the awkward cases real databases have (umlauts, shared e-mails, a contact at
-- two customers, an obsolete customer, a broken e-mail, a contact without
-- customer, a customer number with a space). The customer numbers KIVI-1001
-- and KIVI-1002 match the tickets of the OTRS test double's demo data.
INSERT INTO public.customer (id, name, customernumber, department_1, street, zipcode, city, phone, fax, homepage,
                             email, notes, gln, greeting, obsolete, taxzone_id, currency_id, country_id, hourly_rate)
SELECT v.id, v.name, v.nr, v.dep, v.street, v.zip, v.city, v.phone, NULL, v.homepage, v.email, NULL, v.gln, v.greeting,
       v.obsolete, (SELECT min(id) FROM public.tax_zones), 1, v.country, 95.00
FROM (VALUES
    (9001, 'Müller & Söhne GmbH', 'KIVI-1001', 'IT', 'Hauptstraße 1', '10115', 'Berlin', '+49 30 1234', 'https://mueller.example', 'info@mueller.example', '4012345000009', 'Firma', false, 1),
    (9002, 'Bäckerei Schulz KG', 'KIVI-1002', NULL, 'Brötchenweg 7', '80331', 'München', '+49 89 555', NULL, 'kontakt@schulz.example', NULL, 'Firma', false, 1),
    (9003, 'Media Saturn Holding GmbH', '1000387', 'Zentrale', 'Wankelstraße 5', '85046', 'Ingolstadt', NULL, NULL, NULL, NULL, 'Firma', false, 1),
    (9004, 'Alte Firma AG', 'KIVI-0999', NULL, 'Ende 1', '1010', 'Wien', NULL, NULL, NULL, NULL, 'Firma', true, 2),
    (9005, 'Kunde mit Leerzeichen', 'KD 4711', NULL, NULL, NULL, 'Zürich', NULL, NULL, NULL, NULL, NULL, false, 3)
) AS v(id, name, nr, dep, street, zip, city, phone, homepage, email, gln, greeting, obsolete, country);

INSERT INTO public.contacts (cp_id, cp_title, cp_givenname, cp_name, cp_email, cp_phone1, cp_mobile1, cp_abteilung,
                             cp_position, cp_gender)
VALUES
    (9101, NULL, 'Anna', 'Meyer', 'anna.meyer@example.org', '+49 30 1234-1', NULL, 'IT', 'Leitung', 'f'),
    (9102, 'Dr.', 'Bernd', 'Schulz', 'Bernd.Schulz@example.org', '+49 89 555-2', '+49 170 1', NULL, 'Inhaber', 'm'),
    (9103, NULL, 'Jürgen', 'Größer', 'juergen.groesser@example.org', NULL, NULL, 'Einkauf', NULL, 'm'),
    (9104, NULL, 'Zoë', 'Åström', ' Zoe.Astrom@Example.org ', NULL, NULL, NULL, NULL, 'f'),
    (9105, NULL, 'Hans', 'Kaputt', 'hans.kaputt(at)example.org', NULL, NULL, NULL, NULL, 'm'),
    (9106, NULL, 'Olga', 'Ohnefirma', 'olga@example.org', NULL, NULL, NULL, NULL, 'f'),
    (9107, NULL, 'Anna', 'Meyer (privat)', 'ANNA.MEYER@example.org', NULL, NULL, NULL, NULL, 'f'),
    (9108, NULL, 'Otto', 'Obsolet', 'otto@alte-firma.example', NULL, NULL, NULL, NULL, 'm'),
    (9109, NULL, 'Lea', 'Leer', 'lea@kd4711.example', NULL, NULL, NULL, NULL, 'f');

INSERT INTO public.customer_contacts (customer_id, contact_id, main) VALUES
    (9001, 9101, true),
    (9002, 9102, true),
    (9001, 9103, false),
    (9003, 9103, true),
    (9003, 9104, false),
    (9001, 9105, false),
    (9002, 9107, false),
    (9004, 9108, true),
    (9005, 9109, true);

INSERT INTO public.parts (partnumber, description, sellprice, unit, part_type)
VALUES ('SYS-STD', 'Systemtechnik Stundensatz', 95.00, 'Std', 'service'),
       ('SUP-MIN', 'Support pro Minute', 1.50, 'min', 'service');

INSERT INTO public.oe (ordnumber, transdate, customer_id, taxzone_id, currency_id, record_type, transaction_description)
VALUES ('A-2026-001', DATE '2026-10-01', 9001, (SELECT min(id) FROM public.tax_zones), 1, 'sales_order', 'Wartungsvertrag');
INSERT INTO public.orderitems (trans_id, parts_id, description, qty, sellprice, unit, position, recurring_billing_mode)
SELECT oe.id, parts.id, 'Wartungspauschale', 1, 250, 'Std', 1, 'always'
FROM public.oe, public.parts WHERE oe.ordnumber = 'A-2026-001' AND parts.partnumber = 'SYS-STD';
INSERT INTO public.periodic_invoices_configs (oe_id, periodicity, order_value_periodicity, ar_chart_id, start_date)
SELECT id, 'm', 'p', 1400, DATE '2026-10-01' FROM public.oe WHERE ordnumber = 'A-2026-001';
