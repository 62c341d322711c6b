// Verifies every DKIM signature of the message on stdin with mailauth, its keys looked up
// in DNS at 127.0.0.1:PORT; prints one JSON line per signature.
//     node verify_dkim.mjs PORT < message.eml
import { Resolver } from 'node:dns/promises';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';

const resolver = new Resolver({ timeout: 5000, tries: 1 });
resolver.setServers([`127.0.0.1:${process.argv[2]}`]);

const chunks = [];
for await (const chunk of process.stdin) {
    chunks.push(chunk);
}
const verified = await dkimVerify(Buffer.concat(chunks), {
    resolver: (name, type) => resolver.resolve(name, type),
});
for (const signature of verified.results) {
    console.log(JSON.stringify({
        domain: signature.signingDomain,
        selector: signature.selector,
        algorithm: signature.algo,
        result: signature.status.result,
        comment: signature.status.comment || '',
    }));
}
