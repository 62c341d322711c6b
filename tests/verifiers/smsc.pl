#!/usr/bin/perl
# A scriptable SMSC for the smpp provider's tests, built on Net::SMPP (Debian: libnet-smpp-perl).
#
# Usage: smsc.pl --port PORT [--system-id ID] [--password PW]
#
# Listens on 127.0.0.1:PORT and serves any number of connections in one process, so
# that every connection sees the same script. Writes one JSON object per line on stdout:
#   {"event":"ready","port":...}                       listening
#   {"event":"bind","connection":N,"system_id":...,"password":...,"status":...}
#   {"event":"submit_sm","connection":N,"seq":...,"destination_addr":...,"dest_addr_ton":...,
#    "dest_addr_npi":...,"source_addr":...,"source_addr_ton":...,"source_addr_npi":...,
#    "data_coding":...,"esm_class":...,"registered_delivery":...,"short_message":"<hex>",
#    "answer":"submit_sm_resp"|"generic_nack"|"none","status":...,"message_id":...}
#   {"event":"enquire_link","connection":N,"seq":...}      the client's, answered
#   {"event":"enquire_link_resp","connection":N,"seq":...} the answer to ours
#   {"event":"unbind","connection":N}  {"event":"closed","connection":N}
#   {"event":"unbind_resp","connection":N}                  the answer to our unbind
#   {"event":"generic_nack","connection":N,"seq":...,"status":...}
#   {"event":"other","connection":N,"command_id":...}      answered with generic_nack
#   {"event":"control","command":...}                       a control line was applied
# Reads control lines (JSON objects) on stdin, and exits when stdin closes:
#   {"command":"fail","status":S,"count":C}   answer the next C submit_sm with status S
#   {"command":"nack","status":S,"count":C}   answer them with generic_nack of status S
#   {"command":"silence","count":C}           answer none of the next C submit_sm
#   {"command":"drop"}                        close every connection
#   {"command":"enquire_link"}                send enquire_link on every bound connection
#   {"command":"deliver_sm"}                  send a deliver_sm on every bound connection
#   {"command":"unbind"}                      send unbind on every bound connection

use strict;
use warnings;

use Getopt::Long;
use IO::Select;
use JSON::PP;
use Net::SMPP;

use constant {
    CMD_BIND_TRANSMITTER => 0x00000002,
    CMD_SUBMIT_SM        => 0x00000004,
    CMD_UNBIND           => 0x00000006,
    CMD_UNBIND_RESP      => 0x80000006,
    CMD_GENERIC_NACK     => 0x80000000,
    CMD_ENQUIRE_LINK     => 0x00000015,
    CMD_ENQUIRE_LINK_RESP => 0x80000015,
    ESME_RINVCMDID       => 0x00000003,
    ESME_RINVBNDSTS      => 0x00000004,
    ESME_RINVPASWD       => 0x0000000E,
    ESME_RINVSYSID       => 0x0000000F,
};

my ($port, $system_id, $password) = (undef, 'mailgw', 'secret');
GetOptions('port=i' => \$port, 'system-id=s' => \$system_id, 'password=s' => \$password)
    && defined $port
    or die "usage: $0 --port PORT [--system-id ID] [--password PW]\n";

$| = 1;
# Net::SMPP warns of every client that closes without unbinding, which the tests do on purpose
$SIG{__WARN__} = sub { warn @_ unless $_[0] =~ /^premature eof/ };
my $json = JSON::PP->new->canonical;
sub emit { print $json->encode({@_}), "\n" }

my $listener = Net::SMPP->new_listen('127.0.0.1', port => $port, smpp_version => 0x34)
    or die "cannot listen on 127.0.0.1:$port: $!\n";
my $select = IO::Select->new($listener, \*STDIN);
my %connections;    # fileno => {smpp, id, bound}
my $next_connection = 0;
my $next_message_id = 0;
my @script;         # {answer, status, count} applied to the coming submit_sm, in order
my $stdin_buffer = '';

emit(event => 'ready', port => $port);

sub close_connection {
    my ($connection) = @_;
    $select->remove($connection->{smpp});
    delete $connections{ fileno $connection->{smpp} };
    close $connection->{smpp};
    emit(event => 'closed', connection => $connection->{id});
}

sub next_answer {
    return { answer => 'submit_sm_resp', status => 0 } unless @script;
    my $step = $script[0];
    shift @script if --$step->{count} <= 0;
    return $step;
}

sub control {
    my ($line) = @_;
    my $order = eval { decode_json($line) } or die "bad control line: $line\n";
    my $command = $order->{command} // '';
    my $count = $order->{count} // 1;
    if ($command eq 'fail') {
        push @script, { answer => 'submit_sm_resp', status => $order->{status}, count => $count };
    } elsif ($command eq 'nack') {
        push @script, { answer => 'generic_nack', status => $order->{status}, count => $count };
    } elsif ($command eq 'silence') {
        push @script, { answer => 'none', status => 0, count => $count };
    } elsif ($command eq 'drop') {
        close_connection($_) for values %connections;
    } elsif ($command eq 'enquire_link') {
        $_->{smpp}->enquire_link(async => 1) for grep { $_->{bound} } values %connections;
    } elsif ($command eq 'deliver_sm') {
        $_->{smpp}->deliver_sm(async => 1, source_addr => '33612345678',
            destination_addr => 'Mailgw', short_message => 'STOP')
            for grep { $_->{bound} } values %connections;
    } elsif ($command eq 'unbind') {
        $_->{smpp}->unbind(async => 1) for grep { $_->{bound} } values %connections;
    } else {
        die "unknown control command: $line\n";
    }
    emit(event => 'control', command => $command);
}

sub submit_sm {
    my ($connection, $pdu) = @_;
    my $smpp = $connection->{smpp};
    my %event = (
        event => 'submit_sm', connection => $connection->{id}, seq => $pdu->{seq},
        map({ $_ => $pdu->{$_} } qw(destination_addr source_addr)),
        map({ $_ => 0 + $pdu->{$_} } qw(dest_addr_ton dest_addr_npi source_addr_ton
            source_addr_npi data_coding esm_class registered_delivery)),
        short_message => unpack('H*', $pdu->{short_message}),
    );
    my $step = $connection->{bound} ? next_answer() : { answer => 'submit_sm_resp',
        status => ESME_RINVBNDSTS };
    my $message_id = '';
    if ($step->{answer} eq 'submit_sm_resp') {
        $message_id = sprintf('m%06d', ++$next_message_id) unless $step->{status};
        $smpp->submit_sm_resp(seq => $pdu->{seq}, status => $step->{status},
            message_id => $message_id);
    } elsif ($step->{answer} eq 'generic_nack') {
        $smpp->generic_nack(seq => $pdu->{seq}, status => $step->{status});
    }
    emit(%event, answer => $step->{answer}, status => $step->{status},
        message_id => $message_id);
}

sub serve {
    my ($connection) = @_;
    my $smpp = $connection->{smpp};
    my $pdu = $smpp->read_pdu() or return close_connection($connection);
    my $command = $pdu->{cmd};
    if ($command == CMD_BIND_TRANSMITTER) {
        my $status = $pdu->{system_id} ne $system_id ? ESME_RINVSYSID
            : $pdu->{password} ne $password ? ESME_RINVPASWD : 0;
        $connection->{bound} = !$status;
        $smpp->bind_transmitter_resp(seq => $pdu->{seq}, status => $status,
            system_id => 'perl-smsc');
        emit(event => 'bind', connection => $connection->{id}, system_id => $pdu->{system_id},
            password => $pdu->{password}, status => $status);
    } elsif ($command == CMD_SUBMIT_SM) {
        submit_sm($connection, $pdu);
    } elsif ($command == CMD_ENQUIRE_LINK) {
        $smpp->enquire_link_resp(seq => $pdu->{seq});
        emit(event => 'enquire_link', connection => $connection->{id}, seq => $pdu->{seq});
    } elsif ($command == CMD_ENQUIRE_LINK_RESP) {
        emit(event => 'enquire_link_resp', connection => $connection->{id}, seq => $pdu->{seq});
    } elsif ($command == CMD_UNBIND) {
        $smpp->unbind_resp(seq => $pdu->{seq});
        emit(event => 'unbind', connection => $connection->{id});
        close_connection($connection);
    } elsif ($command == CMD_UNBIND_RESP) {
        emit(event => 'unbind_resp', connection => $connection->{id});
        close_connection($connection);
    } elsif ($command == CMD_GENERIC_NACK) {
        emit(event => 'generic_nack', connection => $connection->{id}, seq => $pdu->{seq},
            status => $pdu->{status});
    } elsif ($command & 0x80000000) {
        emit(event => 'other', connection => $connection->{id}, command_id => $command);
    } else {
        $smpp->generic_nack(seq => $pdu->{seq}, status => ESME_RINVCMDID);
        emit(event => 'other', connection => $connection->{id}, command_id => $command);
    }
}

while (1) {
    for my $handle ($select->can_read) {
        if ($handle == $listener) {
            my $smpp = $listener->accept or next;
            $connections{ fileno $smpp } = { smpp => $smpp, id => ++$next_connection, bound => 0 };
            $select->add($smpp);
        } elsif ($handle == \*STDIN) {
            # the test's end closes stdin: nothing may outlive it
            sysread(STDIN, $stdin_buffer, 4096, length $stdin_buffer) or exit 0;
            control($1) while $stdin_buffer =~ s/^([^\n]*)\n//;
        } elsif (my $connection = $connections{ fileno $handle }) {
            serve($connection);
        }
    }
}
