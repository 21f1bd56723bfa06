-- A kivitendo 4.1 client database, reduced to what kivi-otrs reads and writes.
-- Written for kivi-otrs from the documented 4.1.0 schema facts (tables, types,
-- defaults, sequences, mtime triggers); not a copy of kivitendo's own SQL.
-- The test suite can also run against the full 4.1.0 schema (KIVI_OTRS_KIVITENDO_SCHEMA).

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE SEQUENCE public.id;
CREATE SEQUENCE public.orderitemsid;
CREATE SEQUENCE public.custom_variable_configs_id;
CREATE SEQUENCE public.custom_variables_id;

CREATE TYPE public.order_types AS ENUM (
    'request_quotation', 'sales_quotation', 'purchase_quotation_intake', 'purchase_order',
    'sales_order_intake', 'sales_order', 'purchase_order_confirmation');
CREATE TYPE public.items_recurring_billing_mode AS ENUM ('never', 'once', 'always');
CREATE TYPE public.part_type_enum AS ENUM ('part', 'service', 'assembly', 'assortment');

CREATE FUNCTION public.set_mtime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.mtime := 'now';
    RETURN NEW;
END;
$$;

CREATE TABLE public.schema_info (
    tag text NOT NULL PRIMARY KEY,
    login text,
    itime timestamp without time zone DEFAULT now()
);

CREATE TABLE public.countries (
    id serial PRIMARY KEY,
    iso2 text NOT NULL UNIQUE,
    description_en text NOT NULL,
    description_de text NOT NULL,
    sortorder integer,
    itime timestamp without time zone DEFAULT now() NOT NULL,
    mtime timestamp without time zone
);

CREATE TABLE public.currencies (
    id integer NOT NULL PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE public.tax_zones (
    id integer DEFAULT nextval(('id'::text)::regclass) NOT NULL PRIMARY KEY,
    description text,
    sortkey integer NOT NULL,
    obsolete boolean DEFAULT false
);

CREATE TABLE public.customer (
    id integer DEFAULT nextval(('id'::text)::regclass) NOT NULL PRIMARY KEY,
    name text NOT NULL,
    department_1 text,
    department_2 text,
    street text,
    zipcode text,
    city text,
    contact text,
    phone text,
    fax text,
    homepage text,
    email text,
    notes text,
    discount real,
    customernumber text,
    language text,
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    obsolete boolean DEFAULT false,
    payment_id integer,
    taxzone_id integer NOT NULL REFERENCES public.tax_zones(id),
    greeting text,
    ustid text,
    hourly_rate numeric(8,2),
    currency_id integer NOT NULL REFERENCES public.currencies(id),
    gln text,
    pricegroup_id integer,
    order_lock boolean DEFAULT false,
    natural_person boolean DEFAULT false,
    country_id integer NOT NULL REFERENCES public.countries(id)
);

CREATE TABLE public.contacts (
    cp_id integer DEFAULT nextval(('id'::text)::regclass) NOT NULL PRIMARY KEY,
    cp_title text,
    cp_givenname text,
    cp_name text,
    cp_email text,
    cp_phone1 text,
    cp_phone2 text,
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    cp_fax text,
    cp_mobile1 text,
    cp_mobile2 text,
    cp_privatphone text,
    cp_privatemail text,
    cp_abteilung text,
    cp_gender character(1),
    cp_street text,
    cp_zipcode text,
    cp_city text,
    cp_birthday date,
    cp_position text,
    cp_country_id integer REFERENCES public.countries(id),
    cp_number text
);

CREATE TABLE public.customer_contacts (
    id serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customer(id) ON DELETE CASCADE,
    contact_id integer NOT NULL REFERENCES public.contacts(cp_id) ON DELETE CASCADE,
    main boolean DEFAULT false NOT NULL,
    UNIQUE (customer_id, contact_id)
);
CREATE INDEX customer_contacts_customer_id_idx ON public.customer_contacts (customer_id);
CREATE UNIQUE INDEX customer_contacts_customer_id_idx1 ON public.customer_contacts (customer_id) WHERE main;

CREATE TABLE public.custom_variable_configs (
    id integer DEFAULT nextval('public.custom_variable_configs_id'::regclass) NOT NULL PRIMARY KEY,
    name text NOT NULL,
    description text NOT NULL,
    type text NOT NULL,
    module text NOT NULL,
    default_value text,
    options text,
    searchable boolean NOT NULL,
    includeable boolean NOT NULL,
    included_by_default boolean NOT NULL,
    sortkey integer NOT NULL,
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    flags text,
    first_tab boolean DEFAULT false NOT NULL,
    sync_linked_cv boolean DEFAULT false,
    CONSTRAINT custom_variable_configs_name_description_type_module_not_empty
        CHECK (type <> '' AND module <> '' AND name <> '' AND description <> '')
);

CREATE TABLE public.custom_variables (
    id integer DEFAULT nextval('public.custom_variables_id'::regclass) NOT NULL PRIMARY KEY,
    config_id integer NOT NULL REFERENCES public.custom_variable_configs(id),
    trans_id integer NOT NULL,
    bool_value boolean,
    timestamp_value timestamp without time zone,
    text_value text,
    number_value numeric(25,5),
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    sub_module text DEFAULT ''::text NOT NULL
);
CREATE INDEX custom_variables_config_id_idx ON public.custom_variables (config_id, trans_id, sub_module);

CREATE TABLE public.units (
    name character varying(20) NOT NULL PRIMARY KEY,
    base_unit character varying(20) REFERENCES public.units(name),
    factor numeric(20,5),
    type character varying(20),
    sortkey integer NOT NULL,
    id serial NOT NULL UNIQUE
);

CREATE TABLE public.parts (
    id integer DEFAULT nextval(('id'::text)::regclass) NOT NULL PRIMARY KEY,
    partnumber text NOT NULL UNIQUE,
    description text,
    sellprice numeric(15,5),
    lastcost numeric(15,5),
    notes text,
    obsolete boolean DEFAULT false NOT NULL,
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    unit character varying(20) NOT NULL REFERENCES public.units(name),
    part_type public.part_type_enum NOT NULL
);

CREATE TABLE public.oe (
    id integer DEFAULT nextval(('id'::text)::regclass) NOT NULL PRIMARY KEY,
    ordnumber text NOT NULL,
    transdate date DEFAULT ('now'::text)::date,
    vendor_id integer,
    customer_id integer REFERENCES public.customer(id),
    amount numeric(15,5),
    netamount numeric(15,5),
    reqdate date,
    taxincluded boolean,
    notes text,
    employee_id integer,
    closed boolean DEFAULT false,
    intnotes text,
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    cp_id integer,
    taxzone_id integer NOT NULL REFERENCES public.tax_zones(id),
    transaction_description text,
    currency_id integer NOT NULL REFERENCES public.currencies(id),
    record_type public.order_types NOT NULL
);

CREATE TABLE public.orderitems (
    trans_id integer REFERENCES public.oe(id) ON DELETE CASCADE,
    parts_id integer REFERENCES public.parts(id),
    description text,
    qty numeric(25,5),
    sellprice numeric(15,5),
    discount real,
    project_id integer,
    reqdate date,
    id integer DEFAULT nextval(('orderitemsid'::text)::regclass) NOT NULL PRIMARY KEY,
    itime timestamp without time zone DEFAULT now(),
    mtime timestamp without time zone,
    unit character varying(20) REFERENCES public.units(name),
    base_qty real,
    subtotal boolean DEFAULT false,
    longdescription text,
    price_factor numeric(15,5) DEFAULT 1,
    "position" integer NOT NULL,
    active_price_source text DEFAULT ''::text NOT NULL,
    active_discount_source text DEFAULT ''::text NOT NULL,
    optional boolean DEFAULT false,
    recurring_billing_mode public.items_recurring_billing_mode DEFAULT 'always' NOT NULL,
    recurring_billing_invoice_id integer,
    invoicing_period_start date,
    invoicing_period_end date
);
CREATE INDEX orderitems_trans_id_key ON public.orderitems (trans_id);
CREATE INDEX oe_ordnumber_key ON public.oe (lower(ordnumber));

-- Sales invoices, only the columns periodic invoicing needs here.
CREATE TABLE public.ar (
    id integer DEFAULT nextval('public.id'::regclass) NOT NULL PRIMARY KEY,
    invnumber text NOT NULL,
    transdate date DEFAULT ('now'::text)::date,
    customer_id integer REFERENCES public.customer(id),
    amount numeric(15,5) DEFAULT 0 NOT NULL,
    netamount numeric(15,5) DEFAULT 0 NOT NULL,
    paid numeric(15,5) DEFAULT 0 NOT NULL,
    taxzone_id integer NOT NULL REFERENCES public.tax_zones(id),
    currency_id integer NOT NULL REFERENCES public.currencies(id)
);
ALTER TABLE public.orderitems ADD CONSTRAINT orderitems_recurring_billing_invoice_id_fkey
    FOREIGN KEY (recurring_billing_invoice_id) REFERENCES public.ar(id) ON DELETE SET NULL;

-- Invoice positions and kivitendo's links between documents and between their positions
-- (order position -> invoice position when an invoice is posted from an order).
CREATE SEQUENCE public.invoiceid;
CREATE TABLE public.invoice (
    id integer DEFAULT nextval('public.invoiceid'::regclass) NOT NULL PRIMARY KEY,
    trans_id integer REFERENCES public.ar(id) ON DELETE CASCADE,
    parts_id integer REFERENCES public.parts(id),
    description text,
    longdescription text,
    qty numeric(25,5),
    sellprice numeric(15,5),
    unit character varying(20),
    position integer NOT NULL
);
CREATE TYPE public.delivery_order_types AS ENUM ('sales_delivery_order', 'purchase_delivery_order',
    'supplier_delivery_order', 'rma_delivery_order');
CREATE TABLE public.delivery_orders (
    id integer DEFAULT nextval('public.id'::regclass) NOT NULL PRIMARY KEY,
    donumber text NOT NULL,
    customer_id integer REFERENCES public.customer(id),
    taxzone_id integer NOT NULL,
    currency_id integer NOT NULL,
    record_type public.delivery_order_types NOT NULL
);
CREATE TABLE public.delivery_order_items (
    id integer DEFAULT nextval('public.id'::regclass) NOT NULL PRIMARY KEY,
    delivery_order_id integer NOT NULL REFERENCES public.delivery_orders(id) ON DELETE CASCADE,
    parts_id integer NOT NULL,
    description text,
    longdescription text,
    qty numeric(25,5),
    unit character varying(20),
    position integer NOT NULL
);
CREATE SEQUENCE public.record_links_id_seq;
CREATE TABLE public.record_links (
    from_table character varying(50) NOT NULL,
    from_id integer NOT NULL,
    to_table character varying(50) NOT NULL,
    to_id integer NOT NULL,
    itime timestamp without time zone DEFAULT now(),
    id integer DEFAULT nextval('public.record_links_id_seq'::regclass) NOT NULL PRIMARY KEY
);

CREATE TABLE public.periodic_invoices_configs (
    id integer DEFAULT nextval('public.id'::regclass) NOT NULL PRIMARY KEY,
    oe_id integer NOT NULL REFERENCES public.oe(id) ON DELETE CASCADE,
    periodicity character varying(1) NOT NULL CHECK (periodicity IN ('o', 'm', 'q', 'b', 'y')),
    print boolean DEFAULT false,
    active boolean DEFAULT true,
    terminated boolean DEFAULT false,
    start_date date,
    end_date date,
    ar_chart_id integer NOT NULL,
    first_billing_date date,
    order_value_periodicity character varying(1) NOT NULL
);

CREATE TABLE public.periodic_invoices (
    id integer DEFAULT nextval('public.id'::regclass) NOT NULL PRIMARY KEY,
    config_id integer NOT NULL REFERENCES public.periodic_invoices_configs(id) ON DELETE CASCADE,
    ar_id integer NOT NULL,
    period_start_date date NOT NULL,
    itime timestamp without time zone DEFAULT now()
);

CREATE TRIGGER mtime_countries BEFORE UPDATE ON public.countries FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_customer BEFORE UPDATE ON public.customer FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_contacts BEFORE UPDATE ON public.contacts FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_custom_variable_configs BEFORE UPDATE ON public.custom_variable_configs FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_custom_variables BEFORE UPDATE ON public.custom_variables FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_parts BEFORE UPDATE ON public.parts FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_oe BEFORE UPDATE ON public.oe FOR EACH ROW EXECUTE FUNCTION public.set_mtime();
CREATE TRIGGER mtime_orderitems BEFORE UPDATE ON public.orderitems FOR EACH ROW EXECUTE FUNCTION public.set_mtime();

-- The client's number ranges (kivitendo keeps one row); only the sales order number here.
CREATE TABLE public.defaults (
    id integer DEFAULT nextval('public.id'::regclass) NOT NULL PRIMARY KEY,
    sonumber text,
    deliverydate_on boolean DEFAULT true,
    delivery_date_interval integer DEFAULT 0
);

INSERT INTO public.schema_info (tag, login) VALUES ('release_4_1_0', 'admin');
