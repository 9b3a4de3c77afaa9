// h2front.js - an HTTP/2 (TLS, ALPN h2 only) front for a tests/fakekube
// cluster, because a real kube-apiserver speaks HTTP/2 and libcurl then
// multiplexes every list and watch of a cluster over one connection, which
// the HTTP/1.1 fake alone never exercises. Each h2 stream becomes one
// HTTP/1.1 request to the fake; the response (a chunked watch included)
// streams back as it arrives.
//
// Usage: node h2front.js CERT KEY CA UPSTREAM_PORT
// Prints "port N control M" once listening. The control port is plain
// HTTP/1.1 on 127.0.0.1: GET /stats returns {"sessions": total, "open": now,
// "streams": total, "max_streams": most on one session}; GET /goaway sends
// GOAWAY on every open session and closes it 300 ms later, as an API server
// does when it shuts down.
'use strict';
const fs = require('fs');
const http2 = require('http2');
const http = require('http');
const https = require('https');

const [cert, key, ca, upstream] = process.argv.slice(2);
const stats = { sessions: 0, open: 0, streams: 0, max_streams: 0 };
const sessions = new Set();
const agent = new https.Agent({ keepAlive: true, ca: fs.readFileSync(ca) });

const server = http2.createSecureServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  allowHTTP1: false,
});

server.on('session', (s) => {
  s.streams = 0;
  stats.sessions++;
  stats.open++;
  sessions.add(s);
  s.on('close', () => {
    stats.open--;
    sessions.delete(s);
  });
});

server.on('stream', (stream, headers) => {
  const path = headers[':path'];
  stream.on('error', () => {});
  stats.streams++;
  stream.session.streams++;
  stats.max_streams = Math.max(stats.max_streams, stream.session.streams);
  const fwd = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':')) fwd[k] = v;
  const req = https.request({
    host: '127.0.0.1', port: Number(upstream), method: headers[':method'], path,
    headers: fwd, agent,
  }, (res) => {
    const h = { ':status': res.statusCode };
    if (res.headers['content-type']) h['content-type'] = res.headers['content-type'];
    if (stream.closed) return res.destroy();
    stream.respond(h);
    res.pipe(stream);
    // the fake cut the connection (a disconnect fault): reset the stream,
    // as a broken connection to a real server looks to the client
    res.on('close', () => {
      if (!res.complete && !stream.closed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
  });
  req.on('error', () => {
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  stream.on('close', () => req.destroy());
  stream.pipe(req);
});

const control = http.createServer((req, res) => {
  // a graceful shutdown: GOAWAY, then the connection closes with the
  // watches still on it
  if (req.url === '/goaway') {
    for (const s of sessions) {
      s.goaway();
      setTimeout(() => s.destroy(), 300);
    }
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(stats));
});

server.listen(0, '127.0.0.1', () => {
  control.listen(0, '127.0.0.1', () => {
    console.log('port ' + server.address().port + ' control ' + control.address().port);
  });
});
