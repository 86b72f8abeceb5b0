// Send COUNT ADT^A01 messages built with simple-hl7 to an MLLP listener, one connection, each after
// the previous one's ACK; print one JSON line per ACK: {"msa1": ..., "msa2": ...}.
// Usage: node send.js HOST PORT COUNT PREFIX
'use strict';
const hl7 = require('simple-hl7');

const [host, port, count, prefix] = process.argv.slice(2);
const client = hl7.Server.createTcpClient({host: host, port: Number(port), keepalive: true});
const timer = setTimeout(() => { console.error('timed out'); process.exit(2); }, 20000);

function message(n) {
  const msg = new hl7.Message('NODEAPP', 'NODEFAC', 'EHRGATE', 'HUB', '20240401120000', '',
                              ['ADT', 'A01'], prefix + n, 'P', '2.5.1');
  msg.addSegment('EVN', 'A01', '20240401120000');
  msg.addSegment('PID', '1', '', ['NODE' + n, '', '', 'FAC', 'MR'], '', ['Gonçalves', 'Inês'], '', '19800101', 'F');
  return msg;
}

function send(n) {
  if (n >= Number(count)) {
    clearTimeout(timer);
    client.close();
    return;
  }
  client.send(message(n), (err, ack) => {
    if (err) { console.error(String(err)); process.exit(1); }
    const msa = ack.getSegment('MSA');
    console.log(JSON.stringify({msa1: msa.getField(1), msa2: msa.getField(2)}));
    setImmediate(() => send(n + 1));  // the client clears its busy flag after this callback returns
  });
}

send(0);
