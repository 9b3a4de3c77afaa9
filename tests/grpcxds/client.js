// client.js - a proxyless gRPC client for tests/e2e_grpcxds.py: dials
// TARGET (xds:///host:port) with @grpc/grpc-js-xds, whose bootstrap comes
// from GRPC_XDS_BOOTSTRAP, and calls Who every INTERVAL ms forever on one
// channel, printing "OK <cluster>" or "ERR <code> <details>" per call.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
require('@grpc/grpc-js-xds').register();

const target = process.argv[2];
const interval = Number(process.argv[3] || 50);
const def = loader.loadSync(path.join(__dirname, 'echo.proto'), {});
const Echo = grpc.loadPackageDefinition(def).meshfed.test.Echo;
const client = new Echo(target, grpc.credentials.createInsecure());

function once() {
  const deadline = new Date(Date.now() + 2000);
  client.Who({}, {deadline}, (err, reply) => {
    if (err)
      console.log(`ERR ${err.code} ${String(err.details).replace(/\n/g, ' ')}`);
    else
      console.log(`OK ${reply.cluster}`);
    setTimeout(once, interval);
  });
}
once();
