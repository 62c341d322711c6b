#!/usr/bin/perl
# Verifies every DKIM signature of the message on stdin with Mail::DKIM, its keys looked
# up in DNS at 127.0.0.1:PORT; prints one JSON line per signature.
#     perl verify_dkim.pl PORT < message.eml
use strict;
use warnings;
use JSON::PP;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my $port = shift @ARGV or die "usage: $0 PORT < message\n";
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
my $verifier = Mail::DKIM::Verifier->new();
while (my $line = <STDIN>) {
    # Mail::DKIM wants CRLF line endings; the message may have either
    $line =~ s/\r?\n\z/\015\012/;
    $verifier->PRINT($line);
}
$verifier->CLOSE();

my $json = JSON::PP->new->canonical;
for my $signature ($verifier->signatures) {
    print $json->encode({
        domain    => $signature->domain,
        selector  => $signature->selector,
        algorithm => $signature->algorithm,
        result    => $signature->result,
        comment   => $signature->result_detail // '',
    }), "\n";
}
