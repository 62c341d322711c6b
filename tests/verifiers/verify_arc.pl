#!/usr/bin/perl
# Verifies the ARC chain (RFC 8617) of the message on stdin with Mail::DKIM::ARC::Verifier,
# its keys looked up in DNS at 127.0.0.1:PORT; prints one JSON line: the chain's result and
# each seal's and message signature's.
#     perl verify_arc.pl PORT < message.eml
use strict;
use warnings;
use JSON::PP;
use Mail::DKIM::ARC::Verifier;
use Mail::DKIM::DNS;
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
my $arc = Mail::DKIM::ARC::Verifier->new();
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\015\012/;
    $arc->PRINT($line);
}
$arc->CLOSE();

print JSON::PP->new->canonical->encode({
    result     => $arc->result,
    detail     => $arc->result_detail // '',
    signatures => [
        map {
            {
                header   => $_->prefix =~ s/:\s*\z//r,
                instance => $_->instance + 0,
                domain   => $_->domain,
                result   => $_->result,
            }
        } $arc->signatures
    ],
}), "\n";
