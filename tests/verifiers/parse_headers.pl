#!/usr/bin/perl
# Reads the header section of the message on stdin with MailTools (Mail::Header unfolds,
# Mail::Address parses the addresses) and Encode's RFC 2047 decoder; prints one JSON object:
# the field names in order, the From, To and Reply-To addresses (name and address) and the
# Subject.
#     perl parse_headers.pl < message.eml
use strict;
use warnings;
use Encode qw(decode);
use JSON::PP;
use Mail::Address;
use Mail::Header;

binmode STDIN;
my @lines;
while (my $line = <STDIN>) {
    last if $line =~ /\A\r?\n\z/;
    $line =~ s/\r?\n\z/\n/;
    push @lines, $line;
}
my $head = Mail::Header->new(\@lines, Modify => 0);
$head->unfold;
my %result = (fields => [map { /\A([^:]+):/ ? lc $1 : () } @{ $head->header }]);
for my $tag ('From', 'To', 'Reply-To') {
    my $value = $head->get($tag) // next;
    $result{lc $tag} = [
        map {
            my $phrase = $_->phrase // '';
            # a quoted string's quotes and backslashes are syntax, not text
            $phrase =~ s/\A"(.*)"\z/$1/s and $phrase =~ s/\\(.)/$1/g;
            { name => decode('MIME-Header', $phrase), address => $_->address }
        } Mail::Address->parse($value)
    ];
}
my $subject = $head->get('Subject');
if (defined $subject) {
    $subject =~ s/\A\s+|\s+\z//g;
    $result{subject} = decode('MIME-Header', $subject);
}
print JSON::PP->new->canonical->utf8->encode(\%result), "\n";
