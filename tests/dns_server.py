"""A loopback DNS server (Twisted Names) answering from a JSON file, for tests.

    python -m tests.dns_server ZONE.json PORT

The file maps names to records, for example
``{"sel._domainkey.example.com": [["TXT", "v=DKIM1; k=rsa; p=..."]],
"example.com": [["MX", 10, "mx.example.com"]], "mx.example.com": [["A", "127.0.0.1"]]}``.
It is read again for every query, so a test may add records while the server runs.
Names absent from it get NXDOMAIN.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.names import common, dns, error, server


def _record(kind: str, values: list[Any]) -> Any:
    if kind == "A":
        return dns.Record_A(values[0], ttl=60)
    if kind == "AAAA":
        return dns.Record_AAAA(values[0], ttl=60)
    if kind == "MX":
        return dns.Record_MX(values[0], values[1].encode(), ttl=60)
    if kind == "TXT":
        # DNS strings hold 255 bytes each; a DKIM key is split as a zone file would.
        data = values[0].encode()
        return dns.Record_TXT(*(data[i : i + 255] for i in range(0, len(data), 255)), ttl=60)
    if kind == "CNAME":
        return dns.Record_CNAME(values[0].encode(), ttl=60)
    raise ValueError(f"unsupported record type {kind}")


class JsonZone(common.ResolverBase):
    def __init__(self, path: Path) -> None:
        common.ResolverBase.__init__(self)
        self.path = path

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:
        zone = json.loads(self.path.read_text())
        entries = zone.get(name.decode().lower().rstrip("."))
        if entries is None:
            return defer.fail(error.DomainError(name))
        answers = []
        for kind, *values in entries:
            record = _record(kind, values)
            if type in (record.TYPE, dns.ALL_RECORDS):
                answers.append(dns.RRHeader(name, record.TYPE, dns.IN, 60, record, auth=True))
        return defer.succeed((answers, [], []))


def main(zone: str, port: int) -> None:
    factory = server.DNSServerFactory(authorities=[JsonZone(Path(zone))])
    reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
