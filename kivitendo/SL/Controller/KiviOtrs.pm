package SL::Controller::KiviOtrs;

# kivi-otrs: "Geschlossene Tickets des Vormonats holen" on the sales order screen.
#
# The browser posts the order form's customer id, order id and periodic flag to
# controller.pl?action=KiviOtrs/positions. This controller asks the local
# kivi-otrs endpoint (kivi-otrs serve) for order positions, server-side, with the
# bearer token from the [kivi_otrs] section of config/kivitendo.conf, and hands
# the endpoint's JSON answer back unchanged (HTTP status and one-line error
# included). The token never reaches the browser and is never logged.

use strict;
use warnings;

use parent qw(SL::Controller::Base);

use HTTP::Tiny;
use JSON::PP;

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
  413 => 'Payload Too Large',
  422 => 'Unprocessable Entity',
  500 => 'Internal Server Error',
  502 => 'Bad Gateway',
  503 => 'Service Unavailable',
  504 => 'Gateway Timeout',
);

__PACKAGE__->run_before('check_auth');

#
# actions
#

sub action_positions {
  my ($self) = @_;

  my $method = uc($ENV{REQUEST_METHOD} // 'POST');
  return $self->_send_json(405, { error => 'use POST for KiviOtrs/positions' }) if $method ne 'POST';

  my $settings = _settings();
  return $self->_send_json(500, { error => $settings->{error} }) if $settings->{error};

  my ($payload, $problem) = _build_payload($::form);
  return $self->_send_json(400, { error => $problem }) if $problem;

  my ($status, $answer) = _call_endpoint($settings, $payload, $::myconfig{login});
  return $self->_send_json($status, $answer);
}

#
# filters
#

sub check_auth {
  $::auth->assert('sales_order_edit');
}

#
# helpers
#

# Reads [kivi_otrs] from kivitendo.conf: url, token, timeout.
sub _settings {
  my $conf = $::lx_office_conf{kivi_otrs} || {};

  my $url = $conf->{url} // '';
  $url =~ s{^\s+|\s+$}{}g;
  $url = DEFAULT_URL if $url eq '';
  $url =~ s{/+$}{};
  return { error => "kivi-otrs: url in the [kivi_otrs] section of config/kivitendo.conf must start with http:// or https://" }
    if $url !~ m{^https?://[^/\s]+$};

  my $secret = $conf->{token} // '';
  $secret =~ s{^\s+|\s+$}{}g;
  return { error => 'kivi-otrs is not configured: set token in the [kivi_otrs] section of config/kivitendo.conf'
                  . ' (the same value as api.token of kivi-otrs, at least 16 characters)' }
    if length($secret) < 16;

  my $timeout = $conf->{timeout} // '';
  $timeout = DEFAULT_TIMEOUT if $timeout !~ m{^\d+$} || $timeout < 1;
  $timeout = MAX_TIMEOUT     if $timeout > MAX_TIMEOUT;

  return { url => $url, secret => $secret, timeout => $timeout };
}

# Turns the posted form fields into the endpoint's request body.
sub _build_payload {
  my ($form) = @_;

  my %payload = (dry_run => JSON::PP::false);

  for my $key (qw(order_id customer_id)) {
    my $value = $form->{$key} // '';
    $value =~ s{^\s+|\s+$}{}g;
    next if $value eq '';
    return (undef, "$key must be a whole number") if $value !~ m{^\d{1,18}$};
    $payload{$key} = $value + 0;
  }
  return (undef, 'choose a customer first') if !$payload{order_id} && !$payload{customer_id};

  my $period = $form->{period} // '';
  if ($period ne '') {
    return (undef, 'unknown period') if !$ALLOWED_PERIODS{$period} && $period !~ m{^last-\d{1,3}-days$};
    $payload{period} = $period;
  }

  for my $key (qw(from to)) {
    my $value = $form->{$key} // '';
    next if $value eq '';
    return (undef, "$key must be a date like 2026-10-31") if $value !~ m{^\d{4}-\d{2}-\d{2}$};
    $payload{$key} = $value;
  }
  $payload{period} = 'previous-month' if !$payload{period} && !$payload{from} && !$payload{to};

  $payload{periodic} = ($form->{periodic} // '') =~ m{^(?:1|true|on|yes)$}i ? JSON::PP::true : JSON::PP::false;

  my $number_format = $::myconfig{numberformat} // '';
  $payload{number_format} = $number_format if $number_format ne '';

  return (\%payload, undef);
}

# POSTs to <url>/positions; returns (status, decoded answer). Never fails.
sub _call_endpoint {
  my ($settings, $payload, $login) = @_;

  my $endpoint = $settings->{url} . '/positions';
  my $client   = HTTP::Tiny->new(
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

  my $response = $client->request('POST', $endpoint, {
    headers => \%headers,
    content => JSON::PP->new->utf8->canonical->encode($payload),
  });

  my $status = $response->{status} // 599;

  # HTTP::Tiny reports connection problems (refused, timeout, DNS) as status 599.
  if ($status == 599) {
    my $detail = _one_line($response->{content});
    my $code   = $detail =~ m{timed? ?out}i ? 504 : 502;
    return ($code, { error => "kivi-otrs service not reachable at $settings->{url}"
                            . ($detail ne '' ? " ($detail)" : '')
                            . '; is kivi-otrs.service running?' });
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
  $message   .= ' (the token in [kivi_otrs] of kivitendo.conf must equal api.token of kivi-otrs)' if $status == 401;

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

Needs the right C<sales_order_edit>. Asks the local kivi-otrs endpoint for the
positions of the customer's closed tickets and returns its JSON answer
(C<positions>, C<new>, C<billed>, C<skipped>) or C<{"error": "..."}> with the
endpoint's HTTP status. The browser side (js/kivi.KiviOtrs.js) passes the
positions to C<kivi.Order.add_multi_items>; nothing is saved until the user
saves the order.

=cut
