#!/usr/bin/perl
# Verifies the message on stdin with Mail::DKIM, its keys looked up in DNS at 127.0.0.1:PORT.
#     perl mail_dkim.pl dkim PORT < message.eml   one JSON line per DKIM signature
#     perl mail_dkim.pl arc PORT < message.eml    one JSON line: the ARC chain's result (RFC
#                                                 8617) and each seal's and message signature's
use strict;
use warnings;
use JSON::PP;
use Mail::DKIM::ARC::Verifier;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my ($mode, $port) = @ARGV;
die "usage: $0 dkim|arc PORT < message\n"
    unless defined $port && ($mode eq 'dkim' || $mode eq 'arc');
Mail::DKIM::DNS::resolver(
    Net::DNS::Resolver->new(
        nameservers => ['127.0.0.1'],
        port        => $port,
        recurse     => 0,
        retry       => 1,
        udp_timeout => 5,
        tcp_timeout => 5,
    )
);

binmode STDIN;
my $verifier = $mode eq 'arc' ? Mail::DKIM::ARC::Verifier->new() : Mail::DKIM::Verifier->new();
while (my $line = <STDIN>) {
    # Mail::DKIM wants CRLF line endings; the message may have either
    $line =~ s/\r?\n\z/\015\012/;
    $verifier->PRINT($line);
}
$verifier->CLOSE();

my $json = JSON::PP->new->canonical;
if ($mode eq 'arc') {
    print $json->encode({
        result     => $verifier->result,
        detail     => $verifier->result_detail // '',
        signatures => [
            map {
                {
                    header   => $_->prefix =~ s/:\s*\z//r,
                    instance => $_->instance + 0,
                    domain   => $_->domain,
                    result   => $_->result,
                }
            } $verifier->signatures
        ],
    }), "\n";
    exit 0;
}
for my $signature ($verifier->signatures) {
    print $json->encode({
        domain    => $signature->domain,
        selector  => $signature->selector,
        algorithm => $signature->algorithm,
        result    => $signature->result,
        comment   => $signature->result_detail // '',
    }), "\n";
}
