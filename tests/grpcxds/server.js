// server.js - plain gRPC servers for tests/e2e_grpcxds.py, one per argument
// "HOST:PORT=NAME" (PORT 0 picks one); each answers Who with its NAME.
// Prints one JSON line {"NAME": port, ...} once all are bound, then serves
// until killed.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const def = loader.loadSync(path.join(__dirname, 'echo.proto'), {});
const Echo = grpc.loadPackageDefinition(def).meshfed.test.Echo;

function serve(spec) {
  const [addr, name] = spec.split('=');
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Who: (call, cb) => cb(null, {cluster: name}),
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) return reject(err);
      resolve([name, port]);
    });
  });
}

Promise.all(process.argv.slice(2).map(serve)).then((bound) => {
  console.log(JSON.stringify(Object.fromEntries(bound)));
}, (err) => {
  console.error('bind failed: ' + err.message);
  process.exit(1);
});
