"""ztunnel.py - a test client that speaks to meshfed the way ztunnel does.

Delta ADS (DeltaAggregatedResources) for type.googleapis.com/istio.workload.Address:
a wildcard subscription with node metadata CLUSTER_ID/NETWORK, an ACK for every
response, and the resulting state (name -> decoded Address) kept up to date in
a background thread. Protos are generated from xds/proto with Debian's
python3-grpc-tools into a temporary directory.
"""
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

ADDRESS = "type.googleapis.com/istio.workload.Address"
_mods = None


def protos(src):
    """Generates and imports the Python modules for xds/proto (once)."""
    global _mods
    if _mods:
        return _mods
    out = tempfile.mkdtemp(prefix="meshfed-pyproto-")
    files = ["workload.proto", "envoy/service/discovery/v3/discovery.proto",
             "envoy/service/discovery/v3/ads.proto", "envoy/config/core/v3/base.proto",
             "envoy/config/core/v3/address.proto", "google/rpc/status.proto"]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(src, "xds/proto"),
                    "-I", "/usr/include", "--python_out", out, "--grpc_python_out", out] + files,
                   check=True)
    sys.path.insert(0, out)
    import grpc  # noqa: E402
    import workload_pb2  # noqa: E402
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # noqa: E402
    _mods = (grpc, workload_pb2, ads_pb2_grpc, discovery_pb2)
    return _mods


class Ztunnel:
    def __init__(self, src, port, cluster, network="", node_id=None, metadata=None,
                 reconnect=False):
        """metadata: optional gRPC request metadata, as ztunnel sends with
        token auth: [("authorization", "Bearer <jwt>"), ("clusterid", id)].
        reconnect: when the server ends the stream UNAVAILABLE, open a new one
        with the versions held as initial_resource_versions, as ztunnel does."""
        self.metadata = metadata
        self.reconnect = reconnect
        self.reconnects = 0
        self.closed = False
        self.grpc, self.wl, ads, self.disc = protos(src)
        self.state = {}
        self.versions = {}
        self.responses = 0
        self.error = None
        self.cond = threading.Condition()
        self.reqs = queue.Queue()
        self.channel = self.grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = ads.AggregatedDiscoveryServiceStub(self.channel)
        node = self.disc.DeltaDiscoveryRequest().node
        node.id = node_id or f"ztunnel~10.0.0.1~ztunnel-test.istio-system~istio-system.svc.cluster.local"
        node.metadata.fields["CLUSTER_ID"].string_value = cluster
        if network:
            node.metadata.fields["NETWORK"].string_value = network
        self.node = node
        self.reqs.put(self._first())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _first(self):
        first = self.disc.DeltaDiscoveryRequest(type_url=ADDRESS)
        first.node.CopyFrom(self.node)
        for name, version in self.versions.items():
            first.initial_resource_versions[name] = version
        return first

    def _requests(self):
        while True:
            r = self.reqs.get()
            if r is None:
                return
            yield r

    def _run(self):
        while True:
            e = self._stream()
            unavailable = e is not None and e.code() == self.grpc.StatusCode.UNAVAILABLE
            if not (self.reconnect and unavailable and not self.closed):
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
                return
            time.sleep(0.1)
            with self.cond:
                self.reconnects += 1
                self.reqs = queue.Queue()
                self.reqs.put(self._first())

    def _stream(self):
        """One stream until it ends: None, or the RpcError it ended with."""
        try:
            for resp in self.stub.DeltaAggregatedResources(self._requests(),
                                                           metadata=self.metadata):
                with self.cond:
                    for r in resp.resources:
                        a = self.wl.Address()
                        a.ParseFromString(r.resource.value)
                        self.state[r.name] = a
                        self.versions[r.name] = r.version
                    for name in resp.removed_resources:
                        self.state.pop(name, None)
                        self.versions.pop(name, None)
                    self.responses += 1
                    self.cond.notify_all()
                self.reqs.put(self.disc.DeltaDiscoveryRequest(type_url=ADDRESS,
                                                              response_nonce=resp.nonce))
        except self.grpc.RpcError as e:
            return e
        return None

    def wait(self, pred, timeout=15.0):
        """Waits until pred(state) is true; returns it (or the last value)."""
        end = time.time() + timeout
        with self.cond:
            while True:
                v = pred(self.state)
                if v or self.error or time.time() >= end:
                    return v
                self.cond.wait(min(0.2, max(0.01, end - time.time())))

    def code(self, timeout=15.0):
        """The status code the stream ended with (waits), or None."""
        self.wait(lambda s: False, timeout)
        return self.error.code() if self.error else None

    def close(self):
        self.closed = True
        self.reqs.put(None)
        self.channel.close()
