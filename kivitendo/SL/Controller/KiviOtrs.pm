package SL::Controller::KiviOtrs;

# kivi-otrs: "Geschlossene Tickets des Vormonats holen" on the sales order screen.
#
# The browser posts the order form's customer id, order id and periodic flag to
# controller.pl?action=KiviOtrs/positions. This controller checks the right, the
# request's origin, the order and the customer, then asks the local
# kivi-otrs endpoint (kivi-otrs serve) for order positions, server-side, with the
# bearer token from the [kivi_otrs] section of config/kivitendo.conf, naming the
# session's kivitendo client (Mandant) and user, and hands
# the endpoint's JSON answer back unchanged (HTTP status and one-line error
# included). The token never reaches the browser and is never logged.

use strict;
use warnings;
use utf8;

use parent qw(SL::Controller::Base);

use HTTP::Tiny;
use JSON::PP;

use SL::DB::Customer;
use SL::DB::Order;

use constant DEFAULT_URL     => 'http://127.0.0.1:8765';
use constant DEFAULT_TIMEOUT => 60;
use constant MAX_TIMEOUT     => 600;

my %ALLOWED_PERIODS = map { ($_ => 1) } qw(previous-month current-month);

my %STATUS_TEXT = (
  200 => 'OK',
  400 => 'Bad Request',
  401 => 'Unauthorized',
  403 => 'Forbidden',
  404 => 'Not Found',
  405 => 'Method Not Allowed',
  409 => 'Conflict',
  413 => 'Payload Too Large',
  422 => 'Unprocessable Entity',
  500 => 'Internal Server Error',
  502 => 'Bad Gateway',
  503 => 'Service Unavailable',
  504 => 'Gateway Timeout',
);

# The controller's own messages, in the kivitendo user's language (countrycode de/en).
my %TEXT = (
  post_only        => { de => 'KiviOtrs/positions nimmt nur POST-Anfragen an',
                        en => 'use POST for KiviOtrs/positions' },
  not_ajax         => { de => 'Anfrage abgelehnt: nur der Knopf im Auftrag darf sie senden (X-Requested-With fehlt)',
                        en => 'request refused: only the button on the order screen may send it (X-Requested-With missing)' },
  foreign_origin   => { de => 'Anfrage abgelehnt: sie kommt von einer anderen Seite (%s)',
                        en => 'request refused: it comes from another site (%s)' },
  no_customer      => { de => 'Bitte zuerst einen Kunden wählen.',
                        en => 'Choose a customer first.' },
  not_a_number     => { de => '%s muss eine ganze Zahl sein',
                        en => '%s must be a whole number' },
  bad_period       => { de => 'unbekannter Zeitraum',
                        en => 'unknown period' },
  bad_date         => { de => '%s muss ein Datum wie 2026-10-31 sein',
                        en => '%s must be a date like 2026-10-31' },
  order_missing    => { de => 'Auftrag %s gibt es nicht (mehr); bitte die Seite neu laden',
                        en => 'order %s does not exist (any more); reload the page' },
  not_sales_order  => { de => 'Beleg %s ist kein Verkaufsauftrag',
                        en => 'record %s is not a sales order' },
  customer_changed => { de => 'Der Kunde dieses Auftrags wurde geändert: bitte erst den Auftrag speichern',
                        en => 'the customer of this order was changed: save the order first' },
  customer_missing => { de => 'Kunde %s gibt es nicht',
                        en => 'customer %s does not exist' },
  bad_url          => { de => 'kivi-otrs: url im Abschnitt [kivi_otrs] von config/kivitendo.conf muss mit http:// oder https:// beginnen',
                        en => 'kivi-otrs: url in the [kivi_otrs] section of config/kivitendo.conf must start with http:// or https://' },
  not_configured   => { de => 'kivi-otrs ist nicht eingerichtet: token im Abschnitt [kivi_otrs] von config/kivitendo.conf setzen'
                            . ' (derselbe Wert wie api.token von kivi-otrs, mindestens 16 Zeichen)',
                        en => 'kivi-otrs is not configured: set token in the [kivi_otrs] section of config/kivitendo.conf'
                            . ' (the same value as api.token of kivi-otrs, at least 16 characters)' },
  unreachable      => { de => 'kivi-otrs-Dienst unter %s nicht erreichbar%s; läuft kivi-otrs.service?',
                        en => 'kivi-otrs service not reachable at %s%s; is kivi-otrs.service running?' },
  token_hint       => { de => ' (token in [kivi_otrs] von kivitendo.conf muss gleich api.token von kivi-otrs sein)',
                        en => ' (the token in [kivi_otrs] of kivitendo.conf must equal api.token of kivi-otrs)' },
  no_client        => { de => 'kein kivitendo-Mandant in der Sitzung; bitte neu anmelden',
                        en => 'no kivitendo client in this session; log in again' },
);

__PACKAGE__->run_before('check_auth');

#
# actions
#

sub action_positions {
  my ($self) = @_;

  my $method = uc($ENV{REQUEST_METHOD} // 'POST');
  return $self->_send_json(405, { error => _t('post_only') }) if $method ne 'POST';

  my $forgery = _cross_site_problem();
  return $self->_send_json(403, { error => $forgery }) if $forgery;

  my $settings = _settings();
  return $self->_send_json(500, { error => $settings->{error} }) if $settings->{error};

  my ($payload, $status, $problem) = _build_payload($::form);
  return $self->_send_json($status, { error => $problem }) if $problem;

  ($status, $problem) = _check_records($payload);
  return $self->_send_json($status, { error => $problem }) if $problem;

  my $client = _client();
  return $self->_send_json(500, { error => _t('no_client') }) if !$client;
  $payload->{client} = $client;

  my ($code, $answer) = _call_endpoint($settings, $payload, $::myconfig{login});
  return $self->_send_json($code, $answer);
}

#
# filters
#

# The right kivitendo's own order controller needs to add positions to a sales order
# (SL::DB::Order::TypeData: rights edit => 'sales_order_edit').
sub check_auth {
  $::auth->assert('sales_order_edit');
}

#
# helpers
#

sub _language {
  my $code = lc($::myconfig{countrycode} // '');
  return $code =~ m{^en} ? 'en' : 'de';
}

sub _t {
  my ($key, @args) = @_;
  my $text = $TEXT{$key}->{_language()};
  return @args ? sprintf($text, @args) : $text;
}

# kivitendo protects its session against cross-site requests with a SameSite=strict
# session cookie (SL::Form::create_http_response). On top of that this action only
# answers what a same-origin jQuery call sends: the X-Requested-With header
# ($::request->is_ajax; another site cannot add it without a CORS preflight, which
# kivitendo never allows), and an Origin header, when the browser sends one, that
# names this very host.
sub _cross_site_problem {
  return _t('not_ajax') if !$::request || !$::request->is_ajax;

  my $origin = $ENV{HTTP_ORIGIN} // '';
  return undef if $origin eq '';

  my $host = $ENV{HTTP_X_FORWARDED_HOST} // $ENV{HTTP_HOST} // '';
  $host    =~ s{,.*$}{};
  $host    =~ s{^\s+|\s+$}{}g;
  my ($origin_host) = $origin =~ m{^https?://([^/\s]+)$}i;

  return undef if defined $origin_host && $host ne '' && lc($origin_host) eq lc($host);
  return _t('foreign_origin', _one_line($origin));
}

# The order must be a sales order of the posted customer; the customer must exist.
sub _check_records {
  my ($payload) = @_;

  if ($payload->{order_id}) {
    my $order = SL::DB::Order->new(id => $payload->{order_id})->load(speculative => 1);
    return (404, _t('order_missing', $payload->{order_id})) if !$order;
    return (400, _t('not_sales_order', $order->ordnumber // $payload->{order_id}))
      if ($order->record_type // '') ne 'sales_order';
    return (409, _t('customer_changed'))
      if $payload->{customer_id} && ($order->customer_id // 0) != $payload->{customer_id};
  }

  if ($payload->{customer_id}) {
    my $customer = SL::DB::Customer->new(id => $payload->{customer_id})->load(speculative => 1);
    return (404, _t('customer_missing', $payload->{customer_id})) if !$customer;
  }

  return (200, undef);
}

# kivitendo's client (Mandant) of this session, so that one kivi-otrs endpoint can
# serve several client databases and never mixes them up.
sub _client {
  my $client = $::auth && $::auth->client;
  return undef if ref($client) ne 'HASH' || !$client->{id} || !$client->{dbname};

  my %result = (id => $client->{id} + 0, dbname => "$client->{dbname}");
  $result{name}   = "$client->{name}"   if defined $client->{name};
  $result{dbhost} = "$client->{dbhost}" if defined $client->{dbhost} && $client->{dbhost} ne '';
  $result{dbport} = $client->{dbport} + 0 if defined $client->{dbport} && $client->{dbport} =~ m{^\d+$};
  return \%result;
}

# Reads [kivi_otrs] from kivitendo.conf: url, token, timeout.
sub _settings {
  my $conf = $::lx_office_conf{kivi_otrs} || {};

  my $url = $conf->{url} // '';
  $url =~ s{^\s+|\s+$}{}g;
  $url = DEFAULT_URL if $url eq '';
  $url =~ s{/+$}{};
  return { error => _t('bad_url') }
    if $url !~ m{^https?://[^/\s]+$};

  my $secret = $conf->{token} // '';
  $secret =~ s{^\s+|\s+$}{}g;
  return { error => _t('not_configured') }
    if length($secret) < 16;

  my $timeout = $conf->{timeout} // '';
  $timeout = DEFAULT_TIMEOUT if $timeout !~ m{^\d+$} || $timeout < 1;
  $timeout = MAX_TIMEOUT     if $timeout > MAX_TIMEOUT;

  return { url => $url, secret => $secret, timeout => $timeout };
}

# Turns the posted form fields into the endpoint's request body: (payload, status, problem).
sub _build_payload {
  my ($form) = @_;

  my %payload = (dry_run => JSON::PP::false);

  for my $key (qw(order_id customer_id)) {
    my $value = $form->{$key} // '';
    $value =~ s{^\s+|\s+$}{}g;
    next if $value eq '';
    return (undef, 400, _t('not_a_number', $key)) if $value !~ m{^\d{1,18}$};
    $payload{$key} = $value + 0;
  }
  return (undef, 400, _t('no_customer')) if !$payload{order_id} && !$payload{customer_id};

  my $period = $form->{period} // '';
  if ($period ne '') {
    return (undef, 400, _t('bad_period')) if !$ALLOWED_PERIODS{$period} && $period !~ m{^last-\d{1,3}-days$};
    $payload{period} = $period;
  }

  for my $key (qw(from to)) {
    my $value = $form->{$key} // '';
    next if $value eq '';
    return (undef, 400, _t('bad_date', $key)) if $value !~ m{^\d{4}-\d{2}-\d{2}$};
    $payload{$key} = $value;
  }
  $payload{period} = 'previous-month' if !$payload{period} && !$payload{from} && !$payload{to};

  $payload{periodic} = ($form->{periodic} // '') =~ m{^(?:1|true|on|yes)$}i ? JSON::PP::true : JSON::PP::false;

  my $number_format = $::myconfig{numberformat} // '';
  $payload{number_format} = $number_format if $number_format ne '';
  $payload{language}      = _language();

  return (\%payload, 200, undef);
}

# POSTs to <url>/positions; returns (status, decoded answer). Never fails.
sub _call_endpoint {
  my ($settings, $payload, $login) = @_;

  my $endpoint = $settings->{url} . '/positions';
  my $http     = HTTP::Tiny->new(
    agent       => 'kivitendo-kivi-otrs/1',
    timeout     => $settings->{timeout},
    # the endpoint listens on loopback: never route it through a proxy from the environment
    proxy       => undef,
    http_proxy  => undef,
    https_proxy => undef,
  );

  my %headers = (
    'Content-Type'  => 'application/json',
    'Accept'        => 'application/json',
    'Authorization' => 'Bearer ' . $settings->{secret},
  );
  $login = defined $login ? "$login" : '';
  $login =~ s{[^\x20-\x7e]}{}g;
  $headers{'X-Kivitendo-User'} = substr($login, 0, 100) if $login ne '';

  my $response = $http->request('POST', $endpoint, {
    headers => \%headers,
    content => JSON::PP->new->utf8->canonical->encode($payload),
  });

  my $status = $response->{status} // 599;

  # HTTP::Tiny reports connection problems (refused, timeout, DNS) as status 599.
  if ($status == 599) {
    my $detail = _one_line($response->{content});
    my $code   = $detail =~ m{timed? ?out}i ? 504 : 502;
    return ($code, { error => _t('unreachable', $settings->{url}, $detail ne '' ? " ($detail)" : '') });
  }

  my $answer = eval { JSON::PP->new->utf8->decode($response->{content} // '') };
  if (ref($answer) ne 'HASH') {
    return (502, { error => "kivi-otrs service at $settings->{url} answered HTTP $status without JSON" });
  }

  if ($status == 200) {
    return (502, { error => "kivi-otrs service at $settings->{url} answered without a positions list" })
      if ref($answer->{positions}) ne 'ARRAY';
    return (200, $answer);
  }

  my $message = _one_line($answer->{error});
  $message    = "kivi-otrs service answered HTTP $status" if $message eq '';
  $message   .= _t('token_hint') if $status == 401;

  my $code = $STATUS_TEXT{$status} ? $status : 502;
  return ($code, { error => $message });
}

sub _one_line {
  my ($text) = @_;
  $text = defined $text ? "$text" : '';
  $text =~ s{\s+}{ }g;
  $text =~ s{^ | $}{}g;
  return length($text) > 300 ? substr($text, 0, 297) . '...' : $text;
}

sub _send_json {
  my ($self, $status, $data) = @_;

  my $line = $status . ' ' . ($STATUS_TEXT{$status} // 'Error');
  my $json = JSON::PP->new->canonical->encode($data); # characters; kivitendo's output layer encodes UTF-8

  print $::form->create_http_response(content_type => 'application/json', charset => 'UTF-8', status => $line);
  $::form->{header} = 1;

  return $self->render(\$json, { type => 'json', process => 0, header => 0 });
}

1;

__END__

=encoding utf-8

=head1 NAME

SL::Controller::KiviOtrs - order-screen button "Geschlossene Tickets des Vormonats holen"

=head1 SYNOPSIS

  POST controller.pl?action=KiviOtrs/positions
       customer_id=9001&order_id=12&periodic=0

  # config/kivitendo.conf
  [kivi_otrs]
  url     = http://127.0.0.1:8765
  token   = <same value as api.token of kivi-otrs>
  timeout = 60

=head1 DESCRIPTION

Needs the right C<sales_order_edit> (what kivitendo's own order controller needs
to add positions to a sales order), a POST sent by jQuery from the same site
(C<X-Requested-With>, and C<Origin> naming this host when the browser sends one),
an existing sales order of the posted customer when C<order_id> is given, and an
existing customer.

Sends the endpoint C<customer_id>, C<order_id>, C<period>, C<periodic>,
C<number_format>, C<language> (C<de>/C<en> from the user's countrycode) and
C<client> (C<id>, C<dbname>, C<name>, C<dbhost>, C<dbport> of the session's
client, from C<< $::auth->client >>), with the user's login in the header
C<X-Kivitendo-User>. Returns the endpoint's JSON answer (C<positions>,
C<preview>) or C<{"error": "..."}> with the endpoint's HTTP status. The browser
side (public/js/kivi.KiviOtrs.js) passes the positions to
C<kivi.Order.add_multi_items>; nothing is saved until the user saves the order.

=cut
