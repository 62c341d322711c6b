// Authenticates the message on stdin as a receiving server would with mailauth's
// authenticate(): DKIM, SPF for the given client, ARC and DMARC, keys and policies looked
// up in DNS at 127.0.0.1:PORT; prints one JSON line.
//     node authenticate.mjs PORT IP HELO MAIL_FROM < message.eml
import { Resolver } from 'node:dns/promises';
import { authenticate } from 'mailauth';

const [port, ip, helo, sender] = process.argv.slice(2);
const resolver = new Resolver({ timeout: 5000, tries: 1 });
resolver.setServers([`127.0.0.1:${port}`]);

const chunks = [];
for await (const chunk of process.stdin) {
    chunks.push(chunk);
}
const result = await authenticate(Buffer.concat(chunks), {
    ip,
    helo,
    sender,
    mta: 'verifier.test',
    resolver: (name, type) => resolver.resolve(name, type),
    disableBimi: true,
});
console.log(JSON.stringify({
    dkim: result.dkim.results.map(signature => ({
        domain: signature.signingDomain,
        selector: signature.selector,
        algorithm: signature.algo,
        result: signature.status.result,
        comment: signature.status.comment || '',
    })),
    spf: result.spf.status.result,
    arc: {
        result: result.arc.status.result,
        comment: result.arc.status.comment || '',
        instance: result.arc.i,
        sealed: result.arc.authenticationResults || null,
    },
    dmarc: result.dmarc ? result.dmarc.status.result : 'none',
}));
