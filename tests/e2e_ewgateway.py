#!/usr/bin/python3
"""e2e_ewgateway.py - what an istio-proxy east-west gateway gets, against golden JSON.

Starts `meshfed --demo` on a copy of examples/, connects a State-of-the-World
ADS stream as istiod's east-west gateway of cluster "east" (a "waypoint~" node
with the label gateway.istio.io/managed=istio.io-eastwest-controller in its
LABELS), fetches LDS, CDS and EDS, decodes every resource with the Python
protobuf modules generated from xds/proto (json_format.MessageToDict, Any
configs expanded) and compares them with tests/data/ewgateway/*.json (see the
README there for where the golden files come from). Then the same over Delta
ADS, which istio-proxy uses by default.

    e2e_ewgateway.py MESHFED SRCDIR [--update]

--update rewrites the golden files from what meshfed serves (review the diff).
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import FAILURES, check, log_ports, summary, wait_for  # noqa: E402

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
NODE_ID = "waypoint~10.0.0.9~istio-eastwest-abc.istio-system~istio-system.svc.cluster.local"

# Every message a gateway resource carries in an Any, so that MessageToDict
# can expand them.
PROTOS = [
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/matching/common_inputs/network/v3/network_inputs.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "xds/type/matcher/v3/ip.proto",
]


def protos(src):
    """Generates every xds/proto file into a temp dir and imports the ones
    above (their imports come along)."""
    out = tempfile.mkdtemp(prefix="meshfed-pyproto-")
    root = os.path.join(src, "xds/proto")
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.relpath(os.path.join(d, n), root) for n in names if n.endswith(".proto")]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", root, "-I", "/usr/include",
                    "--python_out", out, "--grpc_python_out", out] + sorted(files), check=True)
    sys.path.insert(0, out)
    import importlib
    mods = {p: importlib.import_module(p[:-len(".proto")].replace("/", ".") + "_pb2")
            for p in PROTOS}
    import grpc  # noqa: E402
    from envoy.service.discovery.v3 import ads_pb2_grpc  # noqa: E402
    return grpc, ads_pb2_grpc, mods


class _Ads:
    """One ADS stream (SotW or Delta, by the subclass): ask() sends a request
    and returns the response, ACKed; the first request carries the node."""
    method = None

    def __init__(self, grpc, ads, disc, port, node):
        self.disc = disc
        self.node = node
        self.first = True
        self.reqs = queue.Queue()
        self.resps = queue.Queue()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = ads.AggregatedDiscoveryServiceStub(self.channel)
        self.call = getattr(stub, self.method)(iter(self.reqs.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                self.resps.put(r)
        except Exception as e:  # noqa: BLE001 - reported by ask()
            self.resps.put(e)

    def ask(self, type_url, names=()):
        req = self.request(type_url, names)
        if self.first:
            req.node.CopyFrom(self.node)
            self.first = False
        self.reqs.put(req)
        try:
            r = self.resps.get(timeout=10)
        except queue.Empty:
            return None
        if isinstance(r, Exception):
            raise r
        self.reqs.put(self.ack(type_url, names, r))
        return r

    def close(self):
        self.reqs.put(None)
        self.channel.close()


class Sotw(_Ads):
    """A SotW ADS stream (ACKs name the same resources)."""
    method = "StreamAggregatedResources"

    def request(self, type_url, names):
        return self.disc.DiscoveryRequest(type_url=type_url, resource_names=list(names))

    def ack(self, type_url, names, r):
        return self.disc.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                          version_info=r.version_info, response_nonce=r.nonce)


class Delta(_Ads):
    """A Delta ADS stream: ask(type, names) subscribes (no names: wildcard)."""
    method = "DeltaAggregatedResources"

    def request(self, type_url, names):
        return self.disc.DeltaDiscoveryRequest(type_url=type_url,
                                               resource_names_subscribe=list(names))

    def ack(self, type_url, names, r):
        return self.disc.DeltaDiscoveryRequest(type_url=type_url, response_nonce=r.nonce)


def delta_decoded(resp, msg_cls, json_format):
    """name -> MessageToDict of every resource of a Delta response; each
    Resource's name must be its resource's."""
    out = {}
    for r in resp.resources:
        m = msg_cls()
        r.resource.Unpack(m)
        d = json_format.MessageToDict(m)
        out[r.name] = d
        if d.get("name", d.get("clusterName")) != r.name:
            out["(misnamed) " + r.name] = d
    return out


def golden_of(golden, name):
    with open(os.path.join(golden, name)) as f:
        return json.load(f)


def decoded(resp, msg_cls, json_format):
    """name -> MessageToDict of every resource of resp."""
    out = {}
    for a in resp.resources:
        m = msg_cls()
        a.Unpack(m)
        out[m.name if hasattr(m, "name") and m.name else m.cluster_name] = \
            json_format.MessageToDict(m)
    return out


def gateway_node(disc):
    node = disc.DiscoveryRequest().node
    node.id = NODE_ID
    node.metadata.fields["CLUSTER_ID"].string_value = "east"
    node.metadata.fields["NETWORK"].string_value = "network-east"
    node.metadata.fields["LABELS"].struct_value.fields[
        "gateway.istio.io/managed"].string_value = "istio.io-eastwest-controller"
    return node


def compare(got, path, update):
    if update:
        with open(path, "w") as f:
            json.dump(got, f, indent=2, sort_keys=True)
            f.write("\n")
    with open(path) as f:
        want = json.load(f)
    ok = got == want
    if not ok:
        print(f"--- {path} differs; got:\n" + json.dumps(got, indent=2, sort_keys=True))
    return ok


def run(binary, src, update):
    grpc, ads, mods = protos(src)
    from google.protobuf import json_format  # noqa: E402
    disc = mods["envoy/service/discovery/v3/discovery.proto"]
    lmod = mods["envoy/config/listener/v3/listener.proto"]
    cmod = mods["envoy/config/cluster/v3/cluster.proto"]
    emod = mods["envoy/config/endpoint/v3/endpoint.proto"]
    golden = os.path.join(src, "tests/data/ewgateway")
    work = tempfile.mkdtemp(prefix="meshfed-ewgw-")
    demo = os.path.join(work, "examples")
    shutil.copytree(os.path.join(src, "examples"), demo)
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen([binary, "--demo", demo, "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20"],
                            stdout=log, stderr=log)
    s = None
    try:
        p = wait_for(lambda: log_ports(log))
        if not check(bool(p), "meshfed starts and prints its ports"):
            return
        s = Sotw(grpc, ads, disc, p[0], gateway_node(disc))
        # the demo's clusters sync after start: wait until both global services show
        lds = s.ask(LDS)
        check(lds is not None and lds.type_url == LDS, "LDS answers the gateway")
        cds = wait_for(lambda: (lambda r: r if r and len(r.resources) == 7 else None)(s.ask(CDS)),
                       timeout=20, interval=0.3)
        check(cds is not None, "CDS: 4 fixed clusters and one per global service port (3)")
        lds = s.ask(LDS)
        listeners = decoded(lds, lmod.Listener, json_format)
        check(sorted(listeners) == ["connect_terminate", "forward_inner_connect",
                                    "main_internal"], "LDS: istiod's three listener names")
        check(compare(listeners, os.path.join(golden, "listeners.json"), update),
              "LDS matches tests/data/ewgateway/listeners.json")
        clusters = decoded(cds, cmod.Cluster, json_format) if cds else {}
        check(compare(clusters, os.path.join(golden, "clusters.json"), update),
              "CDS matches tests/data/ewgateway/clusters.json")
        names = sorted(n for n in clusters if n.startswith("inbound-vip|"))
        eds = s.ask(EDS, names)
        cla = decoded(eds, emod.ClusterLoadAssignment, json_format) if eds else {}
        check(sorted(cla) == names, "EDS: one assignment per inbound-vip cluster")
        check(compare(cla, os.path.join(golden, "endpoints.json"), update),
              "EDS matches tests/data/ewgateway/endpoints.json")
        rds = s.ask(RDS)
        check(rds is not None and len(rds.resources) == 0, "RDS: nothing (routes are inline)")

        d = Delta(grpc, ads, disc, p[0], gateway_node(disc))
        try:
            for type_url, cls, names, gold in (
                    (LDS, lmod.Listener, (), "listeners.json"),
                    (CDS, cmod.Cluster, (), "clusters.json"),
                    (EDS, emod.ClusterLoadAssignment, names, "endpoints.json")):
                r = d.ask(type_url, names)
                got = delta_decoded(r, cls, json_format) if r else {}
                check(got == golden_of(golden, gold), f"Delta: {gold} the same as over SotW")
        finally:
            d.close()
    finally:
        if s:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.seek(0)
        if FAILURES:
            print(log.read()[-4000:])
        shutil.rmtree(work, ignore_errors=True)


def trust_domain_reaches_gateway(binary, src):
    """--trust-domain is what connect_terminate accepts peers of."""
    grpc, ads, mods = protos(src)
    from google.protobuf import json_format  # noqa: E402
    disc = mods["envoy/service/discovery/v3/discovery.proto"]
    lmod = mods["envoy/config/listener/v3/listener.proto"]
    work = tempfile.mkdtemp(prefix="meshfed-ewgw-td-")
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen([binary, "--demo", os.path.join(src, "examples"), "--xds-listen",
                             "127.0.0.1:0", "--debug-listen", "127.0.0.1:0", "--trust-domain",
                             "example.org"], stdout=log, stderr=log)
    s = None
    try:
        p = wait_for(lambda: log_ports(log))
        if not check(bool(p), "meshfed --trust-domain example.org starts"):
            return
        s = Sotw(grpc, ads, disc, p[0], gateway_node(disc))
        text = json.dumps(decoded(s.ask(LDS), lmod.Listener, json_format))
        check("spiffe://example.org/" in text and "spiffe://cluster.local/" not in text,
              "connect_terminate verifies peers of the configured trust domain")
    finally:
        if s:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def main():
    binary, src = sys.argv[1], sys.argv[2]
    run(binary, src, "--update" in sys.argv[3:])
    trust_domain_reaches_gateway(binary, src)
    summary()
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
