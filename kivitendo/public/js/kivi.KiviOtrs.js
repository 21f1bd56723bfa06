/*
 * kivi-otrs: button "Geschlossene Tickets des Vormonats holen" on kivitendo's
 * sales order screen.
 *
 * Asks kivitendo's controller KiviOtrs/positions (which calls the local
 * kivi-otrs endpoint server-side) for positions of the customer's closed
 * tickets and inserts them into the unsaved order with kivitendo's own
 * kivi.Order.add_multi_items(data). That function takes the name/value pairs
 * the part picker's multi-item dialog produces (add_items[+].parts_id,
 * add_items[].qty_as_number, ...); kivitendo renders, prices and totals the
 * rows. Nothing is saved until the user saves the order.
 */
namespace('kivi.KiviOtrs', function(ns) {
  'use strict';

  ns.button_selector = '#kivi_otrs_get_tickets';
  ns.url             = 'controller.pl?action=KiviOtrs/positions';
  ns.period          = 'previous-month';
  ns.running         = false;

  // Fields of one position, in the order they are posted after parts_id.
  // recurring_billing_mode: kivitendo 4.1 keeps it only when the position's second
  // row is rendered (user preference "Positionsdetails anzeigen"); otherwise the row
  // is saved with kivitendo's default. Passing it on is harmless and lets an expanded
  // row show 'once'; what counts is the database, which sets 'once' on every saved
  // ticket position of an order with periodic invoices.
  ns.position_fields = [
    'qty_as_number', 'description', 'longdescription', 'unit',
    'sellprice_as_number', 'discount_as_percent', 'recurring_billing_mode'
  ];

  var MAX_LISTED = 10;

  var val = function(selector) {
    var value = $(selector).val();
    return value === undefined || value === null ? '' : String(value);
  };

  // Texts from the helpdesk end up in a flash message: keep them plain.
  var plain = function(text) {
    return String(text === undefined || text === null ? '' : text)
      .replace(/</g, '\u2039').replace(/>/g, '\u203a').replace(/\s+/g, ' ').trim();
  };

  var fill = function(text, args) {
    return text.replace(/\{(\w+)\}/g, function(_m, key) { return plain(args[key]); });
  };

  // The summary in the kivitendo user's language: the button carries data-lang
  // (de/en, from the user's countrycode); German unless it says en.
  ns.texts = {
    de: {
      counts:          '{new} Ticket(s) neu, {billed} bereits abgerechnet, {reserved} reserviert, {skipped} \u00fcbersprungen.',
      inserted:        '{count} Position(en) eingef\u00fcgt \u2013 noch nicht gespeichert: Auftrag speichern, um abzurechnen (Reservierung verf\u00e4llt nach {minutes} Minuten).',
      billed_list:     'Bereits abgerechnet: {list}.',
      reserved_list:   'Reserviert: {list}.',
      skipped_list:    '\u00dcbersprungen: {list}.',
      billed_in:       'in Auftrag {ordnumber}',
      invoiced_in:     'in Rechnung {invnumber}',
      invoiced_order:  'in Rechnung {invnumber} (Auftrag {ordnumber})',
      billed_unknown:  'in einem Auftrag',
      reserved_unsaved:'reserviert bis {time} (nicht gespeicherter Auftrag von {user})',
      reserved_order:  'reserviert bis {time} (nicht gespeicherte \u00c4nderung an Auftrag {ordnumber} von {user})',
      someone:         'jemandem',
      no_customer:     'kivi-otrs: Bitte zuerst einen Kunden w\u00e4hlen.',
      failed:          'kivi-otrs: Anfrage fehlgeschlagen',
      reasons: {
        other_customer:       'geh\u00f6rt zu Kunde {customer_id}',
        no_time:              'keine erfasste Zeit',
        not_billable:         'Queue {queue} / Service {service} ist als nicht abrechenbar eingestellt',
        rule_part_missing:    'Artikel {partnumber} aus der Artikelregel fehlt in kivitendo',
        default_part_missing: 'Standardartikel {partnumber} fehlt in kivitendo',
        no_article:           'kein Stundensatz-Artikel eingestellt (billing.default_part oder Artikelregel)',
        unit_not_time:        'Artikel {partnumber} hat die Einheit {unit}, keine Zeiteinheit',
        case_only:            'CustomerID {customer_id} weicht nur in Gro\u00df-/Kleinschreibung ab; in OTRS korrigieren',
        case_conflict:        'geh\u00f6rt zu Kunde {customer_id}: Kundennummern, die sich nur in Gro\u00df-/Kleinschreibung unterscheiden, sind in OTRS eine Firma'
      }
    },
    en: {
      counts:          '{new} ticket(s) new, {billed} already billed, {reserved} reserved, {skipped} skipped.',
      inserted:        '{count} position(s) inserted \u2013 not saved yet: save the order to bill them (the reservation expires after {minutes} minutes).',
      billed_list:     'Already billed: {list}.',
      reserved_list:   'Reserved: {list}.',
      skipped_list:    'Skipped: {list}.',
      billed_in:       'in order {ordnumber}',
      invoiced_in:     'in invoice {invnumber}',
      invoiced_order:  'in invoice {invnumber} (order {ordnumber})',
      billed_unknown:  'in an order',
      reserved_unsaved:'reserved until {time} (unsaved order of {user})',
      reserved_order:  'reserved until {time} (unsaved change to order {ordnumber} by {user})',
      someone:         'someone',
      no_customer:     'kivi-otrs: Choose a customer first.',
      failed:          'kivi-otrs: request failed',
      reasons: {
        other_customer:       'belongs to customer {customer_id}',
        no_time:              'no accounted time',
        not_billable:         'queue {queue} / service {service} is configured as not billable',
        rule_part_missing:    'article {partnumber} of the article rule does not exist in kivitendo',
        default_part_missing: 'default article {partnumber} does not exist in kivitendo',
        no_article:           'no hourly-rate article configured (billing.default_part or an article rule)',
        unit_not_time:        'article {partnumber} has unit {unit}, not a time unit',
        case_only:            'CustomerID {customer_id} differs in upper/lower case only; correct it in OTRS',
        case_conflict:        'belongs to customer {customer_id}: customer numbers differing only in case are one company in OTRS'
      }
    }
  };

  ns.language = function() {
    var lang = $(ns.button_selector).data('lang');
    return lang === 'en' ? 'en' : 'de';
  };

  var T = function() { return ns.texts[ns.language()]; };

  // HH:MM of an ISO 8601 instant in the browser's (= the user's) time zone.
  ns.local_time = function(iso) {
    var when = new Date(iso);
    if (isNaN(when.getTime())) return '';
    var two = function(n) { return (n < 10 ? '0' : '') + n; };
    return two(when.getHours()) + ':' + two(when.getMinutes());
  };

  ns.is_periodic = function() {
    if (val('#type') !== '' && val('#type') !== 'sales_order') return false;
    var config = val('#order_periodic_invoices_config');
    if (config.trim() === '') return false;
    return !/(^|\n)\s*active:\s*['"]?0['"]?\s*(\n|$)/.test(config);
  };

  ns.request_data = function() {
    return {
      customer_id: val('#order_customer_id'),
      order_id:    val('#id'),
      periodic:    ns.is_periodic() ? 1 : 0,
      period:      ns.period
    };
  };

  // Endpoint positions -> the name/value list kivi.Order.add_multi_items takes.
  ns.positions_to_form_data = function(positions) {
    var data = [];
    $.each(positions, function(_idx, position) {
      data.push({ name: 'add_items[+].parts_id', value: String(position.parts_id) });
      $.each(ns.position_fields, function(_i, field) {
        var value = position[field];
        if (value === undefined || value === null) return;
        data.push({ name: 'add_items[].' + field, value: String(value) });
      });
    });
    return data;
  };

  var list = function(entries, describe) {
    var shown = $.map(entries.slice(0, MAX_LISTED), describe);
    if (entries.length > MAX_LISTED) shown.push('\u2026');
    return shown.join('; ');
  };

  // A ticket that another position holds: billed (saved) or only reserved.
  ns.is_reserved = function(entry) { return entry.state === 'reserved'; };

  ns.describe_billed = function(entry) {
    var t = T();
    var ordnumber = entry.ordnumber;
    if (ns.is_reserved(entry)) {
      var time = entry.reserved_until ? ns.local_time(entry.reserved_until) : '';
      if (time === '' && entry.where) return plain(entry.where);   // older endpoint
      return fill(ordnumber ? t.reserved_order : t.reserved_unsaved,
                  { time: time, ordnumber: ordnumber, user: entry.claimed_by || t.someone });
    }
    if (entry.state === 'invoiced' && entry.invnumber)
      return fill(ordnumber ? t.invoiced_order : t.invoiced_in, { invnumber: entry.invnumber, ordnumber: ordnumber });
    if (ordnumber) return fill(t.billed_in, { ordnumber: ordnumber });
    return entry.where ? plain(entry.where) : t.billed_unknown;
  };

  ns.describe_skipped = function(entry) {
    var text = entry.reason_code && T().reasons[entry.reason_code];
    if (text) return fill(text, entry.reason_args || {});
    return plain(entry.reason);   // unknown code: the endpoint's own words
  };

  ns.summary = function(answer) {
    var t        = T();
    var preview  = answer.preview  || {};
    var fresh    = preview['new']  || [];
    var held     = preview.billed  || [];
    var skipped  = preview.skipped || [];
    var reserved = $.grep(held, ns.is_reserved);
    var billed   = $.grep(held, function(entry) { return !ns.is_reserved(entry); });
    var count    = (answer.positions || []).length;
    var entry    = function(describe) {
      return function(e) { return plain(e.ticket_number) + ' (' + describe(e) + ')'; };
    };

    var text = fill(t.counts, { 'new': fresh.length, billed: billed.length, reserved: reserved.length,
                                skipped: skipped.length });
    if (count > 0)
      text += ' ' + fill(t.inserted, { count: count, minutes: answer.reservation_minutes || 120 });
    if (billed.length)   text += ' ' + fill(t.billed_list,   { list: list(billed,   entry(ns.describe_billed)) });
    if (reserved.length) text += ' ' + fill(t.reserved_list, { list: list(reserved, entry(ns.describe_billed)) });
    if (skipped.length)  text += ' ' + fill(t.skipped_list,  { list: list(skipped,  entry(ns.describe_skipped)) });
    return text;
  };

  ns.error_message = function(jqXHR, textStatus) {
    var answer = jqXHR && jqXHR.responseJSON;
    if (!answer && jqXHR && jqXHR.responseText) {
      try { answer = JSON.parse(jqXHR.responseText); } catch (e) { answer = undefined; }
    }
    if (answer && answer.error) return 'kivi-otrs: ' + plain(answer.error);
    var status = jqXHR && jqXHR.status ? ' (HTTP ' + jqXHR.status + ')' : '';
    return T().failed + status + (textStatus ? ': ' + plain(textStatus) : '');
  };

  ns.set_running = function(running) {
    ns.running = running;
    $(ns.button_selector).prop('disabled', running);
  };

  ns.get_tickets = function() {
    if (ns.running) return false;

    if (kivi.Order.check_cv && !kivi.Order.check_cv()) return false;
    var data = ns.request_data();
    if (data.customer_id === '' && data.order_id === '') {
      kivi.display_flash('error', T().no_customer);
      return false;
    }

    ns.set_running(true);
    $.ajax({
      url:      ns.url,
      type:     'POST',
      method:   'POST',
      data:     data,
      dataType: 'json',
      success:  function(answer) {
        try {
          var positions = (answer && answer.positions) || [];
          if (positions.length)
            kivi.Order.add_multi_items(ns.positions_to_form_data(positions));
          kivi.display_flash(positions.length ? 'info' : 'warning', ns.summary(answer || {}));
        } finally {
          ns.set_running(false);
        }
      },
      error: function(jqXHR, textStatus) {
        ns.set_running(false);
        kivi.display_flash('error', ns.error_message(jqXHR, textStatus));
      }
    });
    return false;
  };
});
