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

  // The order form keeps its periodic invoices configuration (YAML) in a
  // hidden field; empty means "no periodic invoices". Best effort: a config
  // that says "active: 0" counts as not periodic.
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

  ns.summary = function(answer) {
    var preview = answer.preview  || {};
    var fresh   = preview['new']  || [];
    var billed  = preview.billed  || [];
    var skipped = preview.skipped || [];
    var count   = (answer.positions || []).length;

    var text = fresh.length + ' Ticket(s) neu, '
             + billed.length + ' bereits abgerechnet, '
             + skipped.length + ' \u00fcbersprungen.';
    if (count > 0)
      text += ' ' + count + ' Position(en) eingef\u00fcgt \u2013 noch nicht gespeichert: Auftrag speichern, um abzurechnen'
            + ' (Reservierung verf\u00e4llt nach 120 Minuten).';
    if (billed.length)
      text += ' Bereits abgerechnet: ' + list(billed, function(entry) {
        return plain(entry.ticket_number) + (entry.where ? ' (' + plain(entry.where) + ')' : '');
      }) + '.';
    if (skipped.length)
      text += ' \u00dcbersprungen: ' + list(skipped, function(entry) {
        return plain(entry.ticket_number) + (entry.reason ? ' (' + plain(entry.reason) + ')' : '');
      }) + '.';
    return text;
  };

  ns.error_message = function(jqXHR, textStatus) {
    var answer = jqXHR && jqXHR.responseJSON;
    if (!answer && jqXHR && jqXHR.responseText) {
      try { answer = JSON.parse(jqXHR.responseText); } catch (e) { answer = undefined; }
    }
    if (answer && answer.error) return 'kivi-otrs: ' + plain(answer.error);
    var status = jqXHR && jqXHR.status ? ' (HTTP ' + jqXHR.status + ')' : '';
    return 'kivi-otrs: Anfrage fehlgeschlagen' + status + (textStatus ? ': ' + plain(textStatus) : '');
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
      kivi.display_flash('error', 'kivi-otrs: Bitte zuerst einen Kunden w\u00e4hlen.');
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
