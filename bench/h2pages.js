// h2pages.js - bench_kube's API server over TLS with HTTP/2 only (ALPN h2),
// as a real kube-apiserver serves it: list pages that bench_kube rendered
// into DIR (endpointslices.N.json, pods.N.json; ?continue=N picks page N),
// held in memory so that the figure stays the client's; a watch gets its
// headers and then nothing; any other list is empty.
//
// Usage: node h2pages.js CERT KEY DIR
// Prints "port N" once listening; when stdin closes it prints
// "sessions S streams T" and exits.
'use strict';
const fs = require('fs');
const http2 = require('http2');
const path = require('path');

const [cert, key, dir] = process.argv.slice(2);
const pages = new Map();
for (const f of fs.readdirSync(dir)) {
  if (f.endsWith('.json')) pages.set(f, fs.readFileSync(path.join(dir, f)));
}
const empty = Buffer.from('{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}');
const stats = { sessions: 0, streams: 0 };

const server = http2.createSecureServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  allowHTTP1: false,
});
server.on('session', () => stats.sessions++);
server.on('stream', (stream, headers) => {
  const p = headers[':path'];
  stream.on('error', () => {});
  stats.streams++;
  if (p.includes('watch=')) {
    stream.respond({ ':status': 200, 'content-type': 'application/json' });
    return;
  }
  const kind = p.includes('endpointslices') ? 'endpointslices' : p.includes('/pods') ? 'pods' : '';
  const m = /[?&]continue=(\d+)/.exec(p);
  const body = (kind && pages.get(kind + '.' + (m ? m[1] : '0') + '.json')) || empty;
  stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': body.length });
  stream.end(body);
});

server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
process.stdin.on('data', () => {});
process.stdin.on('end', () => {
  console.log('sessions ' + stats.sessions + ' streams ' + stats.streams);
  process.exit(0);
});
