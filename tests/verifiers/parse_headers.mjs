// Reads the header section of the message on stdin as mailauth does (its own header
// splitter), the addresses with nodemailer's address parser and the RFC 2047 words with
// libmime; prints one JSON object: the field names in order, the From, To and Reply-To
// addresses (name and address) and the Subject.
//     node parse_headers.mjs < message.eml
import addressparser from 'nodemailer/lib/addressparser/index.js';
import libmime from 'libmime';
import tools from 'mailauth/lib/tools.js';

const chunks = [];
for await (const chunk of process.stdin) {
    chunks.push(chunk);
}
const message = Buffer.concat(chunks);
const end = message.indexOf('\r\n\r\n');
const { parsed } = tools.parseHeaders(end < 0 ? message : message.subarray(0, end + 2));

const value = header => {
    const line = header.line.toString('binary');
    return line.slice(line.indexOf(':') + 1).replace(/\r?\n(?=[ \t])/g, '').trim();
};
const result = { fields: parsed.map(header => header.key) };
for (const header of parsed) {
    if (['from', 'to', 'reply-to'].includes(header.key)) {
        result[header.key] = addressparser(value(header)).map(address => ({
            name: libmime.decodeWords(address.name),
            address: address.address,
        }));
    } else if (header.key === 'subject') {
        result.subject = libmime.decodeWords(value(header));
    }
}
console.log(JSON.stringify(result));
