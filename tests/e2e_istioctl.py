#!/usr/bin/python3
"""End to end: what `istioctl proxy-status --xds-address` reads from meshfed.

Starts `meshfed --demo` on examples/, connects a ztunnel of cluster east
(Delta, tests/ztunnel.py) and an istio-proxy east-west gateway (SotW LDS),
then asks over a State-of-the-World ADS stream exactly as istioctl does
(pilot's debug type istio.io/debug/syncz, a node without CLUSTER_ID) and
decodes the answer with the Envoy CSDS ClientConfig message compiled from
xds/proto: one resource per connected proxy with its node id, the
CLUSTER_ID/NAMESPACE metadata istioctl parses, and a sync status per type;
control_plane names meshfed.
Usage: e2e_istioctl.py MESHFED_BINARY SOURCE_DIR
"""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import FAILURES, check, log_ports, metrics, summary, waiter  # noqa: E402
import ztunnel  # noqa: E402

wait_for = waiter(20.0)
SYNCZ = "istio.io/debug/syncz"
CLIENT_CONFIG = "type.googleapis.com/envoy.service.status.v3.ClientConfig"
ADDRESS = "type.googleapis.com/istio.workload.Address"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
GW_ID = "waypoint~10.0.0.9~istio-eastwest-abc.istio-system~istio-system.svc.cluster.local"
ZT_ID = "ztunnel~10.0.0.7~ztunnel-x1.istio-system~istio-system.svc.cluster.local"


def csds(src):
    out = tempfile.mkdtemp(prefix="meshfed-csds-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(src, "xds/proto"),
                    "-I", "/usr/include", "--python_out", out,
                    "envoy/service/status/v3/csds.proto"], check=True)
    sys.path.insert(0, out)
    from envoy.service.status.v3 import csds_pb2  # noqa: E402
    return csds_pb2


def sotw_once(grpc, ads_grpc, disc, port, node, type_url, names=()):
    """One SotW request on a fresh stream; the first response (or None)."""
    q = queue.Queue()
    rq = disc.DiscoveryRequest(node=node, type_url=type_url, resource_names=list(names))
    q.put(rq)

    def reqs():
        while True:
            r = q.get()
            if r is None:
                return
            yield r
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = ads_grpc.AggregatedDiscoveryServiceStub(ch)
    call = stub.StreamAggregatedResources(reqs())
    try:
        return next(iter(call)), (q, ch, call)
    except Exception as e:  # noqa: BLE001
        print("stream failed:", e)
        q.put(None)
        ch.close()
        return None, None


def main():
    binary, src = sys.argv[1], sys.argv[2]
    grpc, workload_pb2, ads_grpc, disc = ztunnel.protos(src)
    csds_pb2 = csds(src)
    from google.protobuf import struct_pb2  # noqa: E402
    from envoy.config.core.v3 import base_pb2  # noqa: E402
    work = tempfile.mkdtemp(prefix="meshfed-istioctl-")
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen([binary, "--demo", os.path.join(src, "examples"), "--xds-listen",
                             "127.0.0.1:0", "--debug-listen", "127.0.0.1:0", "--cluster-id",
                             "east"], stdout=log, stderr=log, env=dict(os.environ, POD_NAME="meshfed-0"))
    held = []
    try:
        p = wait_for(lambda: log_ports(log))
        if not check(bool(p), "meshfed starts"):
            return
        xport = p[0]
        zt = ztunnel.Ztunnel(src, xport, "east", "network-east", node_id=ZT_ID, reconnect=True)
        held.append(zt)
        check(zt.wait(lambda s: len(s) > 5, 20), "a ztunnel of east holds its view")
        md = struct_pb2.Struct()
        md.update({"CLUSTER_ID": "east", "NETWORK": "network-east",
                   "LABELS": {"gateway.istio.io/managed": "istio.io-eastwest-controller"}})
        gw, gwh = sotw_once(grpc, ads_grpc, disc, xport, base_pb2.Node(id=GW_ID, metadata=md), LDS)
        check(gw is not None and len(gw.resources) == 3, "an east-west gateway got its listeners")
        if gwh:
            held.append(gwh)
            gwh[0].put(disc.DiscoveryRequest(type_url=LDS, response_nonce=gw.nonce,
                                             version_info=gw.version_info))
        # what istioctl sends: an event-generator node with no cluster
        imd = struct_pb2.Struct()
        imd.update({"GENERATOR": "event", "NAMESPACE": "istio-system"})
        inode = base_pb2.Node(id="sidecar~0.0.0.0~istioctl.istio-system~istio-system.svc.cluster.local",
                              metadata=imd)

        def synced():
            r, h = sotw_once(grpc, ads_grpc, disc, xport, inode, SYNCZ)
            if h:
                h[0].put(None)
                h[1].close()
            if r is None:
                return None
            got = {}
            for a in r.resources:
                cc = csds_pb2.ClientConfig()
                if a.type_url == CLIENT_CONFIG and a.Unpack(cc):
                    got[cc.node.id] = cc
            gwc = got.get(GW_ID)
            ok = gwc and any(g.type_url == LDS and g.config_status == csds_pb2.SYNCED
                             for g in gwc.generic_xds_configs)
            return (r, got) if ok else None
        res = wait_for(synced)
        check(res is not None, "syncz answers with both proxies, the gateway's LDS SYNCED")
        if not res:
            return
        r, got = res
        check(r.type_url == SYNCZ, "the response names the debug type")
        cp = json.loads(r.control_plane.identifier or "{}")
        check(cp.get("Component") == "meshfed" and cp.get("ID") == "meshfed-0",
              f"control_plane names meshfed and its instance ({r.control_plane.identifier})")
        check(sorted(got) == sorted([GW_ID, ZT_ID]), f"one ClientConfig per proxy, not istioctl itself ({sorted(got)})")
        zc = got.get(ZT_ID)
        meta = dict(zc.node.metadata) if zc else {}
        check(meta.get("CLUSTER_ID") == "east" and meta.get("NAMESPACE") == "istio-system",
              f"node metadata istioctl parses: CLUSTER_ID, NAMESPACE ({meta})")
        st = {g.type_url: g.config_status for g in zc.generic_xds_configs} if zc else {}
        check(st.get(ADDRESS) == csds_pb2.SYNCED, f"the ztunnel's Address type is SYNCED ({st})")
        m = metrics(p[1])
        pushes = {t: m.get(f'meshfed_xds_pushes_total{{type="{t}"}}', 0) for t in ("wds", "lds", "debug")}
        check(all(v >= 1 for v in pushes.values()),
              f"pushes are counted by type, as istiod's pilot_xds_pushes{{type}} ({pushes})")
    finally:
        for h in held:
            if isinstance(h, tuple):
                h[0].put(None)
                h[1].close()
            else:
                h.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        if FAILURES:
            log.seek(0)
            print(log.read()[-4000:])
    summary()
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
