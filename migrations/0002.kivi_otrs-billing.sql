-- kivi-otrs billing: the ledger of billed tickets, article rules and admin-editable templates.
-- depends: 0001.kivi_otrs-foundation

CREATE TABLE kivi_otrs.ledger (
    id bigserial PRIMARY KEY,
    ticket_id bigint NOT NULL,
    ticket_number text NOT NULL,
    customer_number text NOT NULL,
    minutes numeric(12, 2) NOT NULL CHECK (minutes > 0),
    ticket_minutes numeric(12, 2) NOT NULL,
    billed_minutes numeric(12, 2) NOT NULL,
    qty numeric(25, 5) NOT NULL,
    unit text NOT NULL,
    parts_id integer NOT NULL,
    state text NOT NULL CHECK (state IN ('reserved', 'billed', 'released')),
    oe_id integer,
    orderitems_id integer,
    marker uuid NOT NULL UNIQUE,
    period_start date NOT NULL,
    period_end date NOT NULL,
    ticket_closed timestamptz,
    reserved_until timestamptz,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text NOT NULL,
    source text NOT NULL CHECK (source IN ('button', 'cli', 'bill')),
    otrs_data jsonb NOT NULL,
    released_at timestamptz,
    release_reason text,
    CHECK (state <> 'billed' OR orderitems_id IS NOT NULL),
    CHECK (state <> 'reserved' OR reserved_until IS NOT NULL)
);
CREATE INDEX ledger_active_ticket_idx ON kivi_otrs.ledger (ticket_id) WHERE state <> 'released';
CREATE INDEX ledger_orderitems_idx ON kivi_otrs.ledger (orderitems_id) WHERE orderitems_id IS NOT NULL;
CREATE INDEX ledger_oe_idx ON kivi_otrs.ledger (oe_id) WHERE oe_id IS NOT NULL;
CREATE INDEX ledger_customer_period_idx ON kivi_otrs.ledger (customer_number, period_start);
COMMENT ON TABLE kivi_otrs.ledger IS 'Which OTRS ticket (and how many minutes) is billed on which kivitendo order position; a ticket is never billed twice';
COMMENT ON COLUMN kivi_otrs.ledger.id IS 'Ledger entry';
COMMENT ON COLUMN kivi_otrs.ledger.ticket_id IS 'OTRS TicketID';
COMMENT ON COLUMN kivi_otrs.ledger.ticket_number IS 'OTRS TicketNumber';
COMMENT ON COLUMN kivi_otrs.ledger.customer_number IS 'OTRS CustomerID = kivitendo customer number';
COMMENT ON COLUMN kivi_otrs.ledger.minutes IS 'Accounted minutes this entry bills (for a reopened ticket: only the new ones)';
COMMENT ON COLUMN kivi_otrs.ledger.ticket_minutes IS 'The ticket''s total accounted minutes when claimed';
COMMENT ON COLUMN kivi_otrs.ledger.billed_minutes IS 'Minutes after rounding and minimum, as put on the position';
COMMENT ON COLUMN kivi_otrs.ledger.qty IS 'Quantity of the position in the article''s unit';
COMMENT ON COLUMN kivi_otrs.ledger.unit IS 'kivitendo unit of the position';
COMMENT ON COLUMN kivi_otrs.ledger.parts_id IS 'kivitendo article of the position';
COMMENT ON COLUMN kivi_otrs.ledger.state IS 'reserved (offered to an unsaved order), billed (on a saved position), released (position or order deleted)';
COMMENT ON COLUMN kivi_otrs.ledger.oe_id IS 'public.oe.id of the order, once known';
COMMENT ON COLUMN kivi_otrs.ledger.orderitems_id IS 'public.orderitems.id of the position, once saved';
COMMENT ON COLUMN kivi_otrs.ledger.marker IS 'Marker carried in the position''s longdescription until kivitendo saves it';
COMMENT ON COLUMN kivi_otrs.ledger.period_start IS 'First day of the billed period';
COMMENT ON COLUMN kivi_otrs.ledger.period_end IS 'Last day of the billed period';
COMMENT ON COLUMN kivi_otrs.ledger.ticket_closed IS 'Last close time of the ticket (OTRS Closed)';
COMMENT ON COLUMN kivi_otrs.ledger.reserved_until IS 'A reservation not saved by then is offered again';
COMMENT ON COLUMN kivi_otrs.ledger.claimed_at IS 'When the ticket was claimed';
COMMENT ON COLUMN kivi_otrs.ledger.claimed_by IS 'kivitendo login or OS user who claimed it';
COMMENT ON COLUMN kivi_otrs.ledger.source IS 'button, cli or bill';
COMMENT ON COLUMN kivi_otrs.ledger.otrs_data IS 'Audit: the ticket data OTRS sent when it was claimed';
COMMENT ON COLUMN kivi_otrs.ledger.released_at IS 'When the claim was released';
COMMENT ON COLUMN kivi_otrs.ledger.release_reason IS 'Why it was released';

CREATE TABLE kivi_otrs.article_rule (
    id serial PRIMARY KEY,
    customer_number text,
    queue text,
    service text,
    partnumber text,
    billable boolean NOT NULL DEFAULT true,
    CHECK (customer_number IS NOT NULL OR queue IS NOT NULL OR service IS NOT NULL),
    CHECK (partnumber IS NOT NULL OR NOT billable),
    UNIQUE NULLS NOT DISTINCT (customer_number, queue, service)
);
COMMENT ON TABLE kivi_otrs.article_rule IS 'Hourly-rate article per customer and/or OTRS queue/service; billable = false excludes the queue';
COMMENT ON COLUMN kivi_otrs.article_rule.id IS 'Rule';
COMMENT ON COLUMN kivi_otrs.article_rule.customer_number IS 'kivitendo customer number the rule is for (NULL = any)';
COMMENT ON COLUMN kivi_otrs.article_rule.queue IS 'OTRS queue name (NULL = any)';
COMMENT ON COLUMN kivi_otrs.article_rule.service IS 'OTRS service name (NULL = any)';
COMMENT ON COLUMN kivi_otrs.article_rule.partnumber IS 'kivitendo part number of the article to bill';
COMMENT ON COLUMN kivi_otrs.article_rule.billable IS 'false: tickets matching the rule are not billed';

CREATE TABLE kivi_otrs.template (
    name text NOT NULL CHECK (name IN ('description', 'longdescription')),
    language text NOT NULL,
    body text NOT NULL,
    mtime timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, language)
);
COMMENT ON TABLE kivi_otrs.template IS 'Admin overrides of the position templates (Jinja, sandboxed); without a row the shipped template is used';
COMMENT ON COLUMN kivi_otrs.template.name IS 'description (plain text) or longdescription (HTML, escaped)';
COMMENT ON COLUMN kivi_otrs.template.language IS 'de, en, ...';
COMMENT ON COLUMN kivi_otrs.template.body IS 'Jinja template text';
COMMENT ON COLUMN kivi_otrs.template.mtime IS 'Last change';
