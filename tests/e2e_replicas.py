#!/usr/bin/python3
"""End to end with several meshfed replicas on the same clusters, as the
chart's Deployment runs them: two fake API servers (east local, west named by
a remote Secret), replicas A and B watching both, each with its own token
bound to the chart's RBAC so the fake API server can tell their requests
apart.

Covers: ztunnel-like clients of the same cluster and network on A and on B
get the same Address and Authorization sets, name for name and byte for byte
(versions too), before and after a change; exactly one replica leads, holds
the Lease and writes status, the other writes nothing; when the leader stops,
the other takes the Lease over. Then a replica C with a short
--xds-max-connection-age: a raw HTTP/2 client sees GOAWAY (NO_ERROR) after
the age, its stream kept through the grace and the connection closed after
it; ztunnel clients on C reconnect and get their view again, equal to the
other replica's.
Usage: e2e_replicas.py MESHFED_BINARY SOURCE_DIR
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztunnel  # noqa: E402
from e2elib import (FAILURES, check, fake_get, gateway, get, get_json, kubeconfig, log_ports,  # noqa: E402
                    make_certs, metric, ns, pods, post, remote_secret, slice_, start_fake, stop,
                    summary, svc, waiter)

wait_for = waiter(30.0)
H = "svc.cluster.local"
# west's reviews as east sees it: through west's east-west gateway
WEST_REVIEWS = ("network-west/SplitHorizonWorkload/istio-system/istio-eastwest/198.51.100.10/"
                f"bookinfo/reviews.bookinfo.{H}")


def capacity(state):
    """West's reviews' capacity (its endpoints) in a client's state, or None."""
    return state[WEST_REVIEWS].workload.capacity.value if WEST_REVIEWS in state else None
SRC = None
STATUS_WRITES = ("patch servicescopes/status", "update servicescopes/status",
                 "patch authorizationpolicies/status", "update authorizationpolicies/status")


# ---------- objects ----------

def policy(name, n, spec):
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": n, "generation": 1}, "spec": spec}


def cluster_objects(net, gw_ip, reviews_ips):
    return ([ns("istio-system", {"topology.istio.io/network": net}), ns("bookinfo"), ns("shop"),
             gateway(net, gw_ip),
             svc("bookinfo", "reviews", "10.96.0.20", {"istio.io/global": "true"}),
             slice_("bookinfo", "reviews", reviews_ips),
             svc("bookinfo", "ratings", "10.96.0.42"), slice_("bookinfo", "ratings", ["10.10.0.20"]),
             svc("shop", "checkout", "10.96.0.50", {"istio.io/global": "true"}),
             slice_("shop", "checkout", ["10.10.1.11", "10.10.1.12"]),
             policy("allow-frontend", "bookinfo",
                    {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/x/sa/y"]}}]}]}),
             policy("deny-admin", "shop",
                    {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]})]
            + pods("bookinfo", "reviews", reviews_ips) + pods("bookinfo", "ratings", ["10.10.0.20"])
            + pods("shop", "checkout", ["10.10.1.11", "10.10.1.12"]))


# ---------- replicas ----------

class Replica:
    def __init__(self, binary, work, name, east, args=()):
        """meshfed as pod name (POD_NAME, its Lease identity) with its own token for east."""
        self.name, self.token = name, name + "-token"
        kc = os.path.join(work, name + ".kubeconfig")
        open(kc, "w").write(kubeconfig(east, self.token))
        self.log = open(os.path.join(work, name + ".log"), "a+")
        self.proc = subprocess.Popen([binary, "--kubeconfig", kc, "--cluster-id", "east",
                                      "--xds-listen", "127.0.0.1:0", "--debug-listen", "127.0.0.1:0",
                                      "--debounce-ms", "20"] + list(args),
                                     stdout=self.log, stderr=self.log, env=dict(os.environ, POD_NAME=name))
        p = wait_for(lambda: log_ports(self.log))
        self.xport, self.dport = p or (0, 0)

    def synced(self):
        cs = get_json(self.dport, "/debug/clusterz") or []
        return (get(self.dport, "/ready")[0] == 200 and len(cs) == 2
                and all(c.get("state") == "synced" for c in cs))

    def leading(self):
        return metric(self.dport, "meshfed_leader") == 1

    def tail(self):
        self.log.seek(0)
        return "".join(self.log.readlines()[-40:])


def token_stats(east, token):
    st = fake_get(east, "/fake/state") or {}
    return st.get("tokens", {}).get(token, {"requests": {}, "bytes": {}})


def same_view(a, b):
    """Whether two clients hold the same Address and Authorization sets:
    the same names, the same versions, the same bytes."""
    with a.cond, b.cond:
        return (a.versions == b.versions and a.authz_versions == b.authz_versions
                and a.raw == b.raw)


def compare(a, b, what, min_addresses, min_authz):
    """Waits for equal views of non-empty sets of at least these sizes."""
    ok = wait_for(lambda: len(a.raw[ztunnel.ADDRESS]) >= min_addresses and
                  len(a.raw[ztunnel.AUTHORIZATION]) >= min_authz and same_view(a, b))
    na, nz = len(a.raw[ztunnel.ADDRESS]), len(a.raw[ztunnel.AUTHORIZATION])
    nb = len(b.raw[ztunnel.ADDRESS])
    diff = sorted(set(a.versions.items()) ^ set(b.versions.items()))[:4]
    check(bool(ok), f"{what}: equal Address ({na} and {nb} resources) and Authorization ({nz}) "
          f"sets, byte for byte{'' if ok else ', differing: ' + str(diff)}")
    if ok:
        fields = all(a.state[k] == b.state[k] for k in a.state)
        check(fields, f"{what}: and field by field once decoded")


# ---------- a raw HTTP/2 client, to see the GOAWAY ----------

def _frame(typ, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", sid) + payload


def _hpack_literal(name, value):
    """A header as a literal without indexing, new name, no Huffman."""
    def integer(n):
        if n < 127:
            return bytes([n])
        out, n = [127], n - 127
        while n >= 128:
            out.append(n % 128 + 128)
            n //= 128
        return bytes(out + [n])
    return b"\x00" + integer(len(name)) + name + integer(len(value)) + value


def h2_probe(port, request, limit):
    """Opens one DeltaAggregatedResources stream on a new HTTP/2 connection,
    sends request, answers SETTINGS and PING, and reads until the server
    closes the connection (or limit seconds). A list of (seconds since
    connecting, what, details): "data" bytes of stream 1, "goaway" (last
    stream id, error code), "rst", "trailers", "closed"."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    t0 = time.monotonic()
    events = []
    path = b"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
    block = b"".join(_hpack_literal(k, v) for k, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
        (b":authority", b"127.0.0.1:%d" % port), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])
    big = 2 ** 31 - 1
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, struct.pack(">HI", 4, big))
              + _frame(8, 0, 0, struct.pack(">I", big - 65535)) + _frame(1, 4, 1, block)
              + _frame(0, 0, 1, b"\x00" + struct.pack(">I", len(request)) + request))
    buf = b""
    try:
        while time.monotonic() - t0 < limit:
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n, typ, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
                sid = int.from_bytes(buf[5:9], "big") & 0x7fffffff
                payload, buf = buf[9:9 + n], buf[9 + n:]
                t = time.monotonic() - t0
                if typ == 4 and not flags & 1:
                    s.sendall(_frame(4, 1, 0))
                elif typ == 6 and not flags & 1:
                    s.sendall(_frame(6, 1, 0, payload))
                elif typ == 7:
                    last, code = struct.unpack(">II", payload[:8])
                    events.append((t, "goaway", (last & 0x7fffffff, code)))
                elif typ == 0 and sid == 1:
                    events.append((t, "data", len(payload)))
                elif typ == 3 and sid == 1:
                    events.append((t, "rst", struct.unpack(">I", payload[:4])[0]))
                elif typ == 1 and sid == 1 and flags & 1:
                    events.append((t, "trailers", None))
            data = s.recv(65536)
            if not data:
                events.append((time.monotonic() - t0, "closed", None))
                break
            buf += data
    except OSError as e:
        events.append((time.monotonic() - t0, "closed", str(e)))
    finally:
        s.close()
    return events


def age_phase(binary, work, east, west, other):
    """Replica C with a 3 s connection age and a 2 s grace."""
    age, grace = 3.0, 2.0
    c = Replica(binary, work, "replica-c", east, ["--xds-max-connection-age", "3s",
                                                  "--xds-max-connection-age-grace", "2s"])
    zts = []
    try:
        check(bool(c.xport) and bool(wait_for(c.synced)), "age: replica C starts and syncs")
        check(not c.leading(), "age: C serves without leading")
        _, _, _, disc = ztunnel.protos(SRC)
        req = disc.DeltaDiscoveryRequest(type_url=ztunnel.ADDRESS)
        req.node.id = "ztunnel~10.0.0.9~probe.istio-system~istio-system.svc.cluster.local"
        req.node.metadata.fields["CLUSTER_ID"].string_value = "east"
        # the server may be slow (sanitizers): read for the age, its jitter,
        # the grace and a wide margin; only the lower bounds are exact
        ev = h2_probe(c.xport, req.SerializeToString(), age * 1.1 + grace + 60)
        goaways = [e for e in ev if e[1] == "goaway"]
        data = [e for e in ev if e[1] == "data"]
        closed = [e for e in ev if e[1] == "closed"]
        ends = [e for e in ev if e[1] in ("rst", "trailers")]
        first = goaways[0] if goaways else None
        summary_ = [(round(t, 2), w, d) for t, w, d in ev if w != "data"] + [("data", sum(d for _, _, d in data))]
        check(bool(data) and bool(first) and data[0][0] < first[0],
              f"age: the stream gets its view, then the server sends GOAWAY ({summary_})")
        check(bool(first) and first[0] >= age * 0.9 and first[2][1] == 0,
              "age: the first GOAWAY comes after the age less its 10% jitter, NO_ERROR (graceful)")
        check(bool(first) and bool(closed) and closed[0][0] - first[0] >= grace * 0.9
              and not [e for e in ends if e[0] < first[0] + grace * 0.9],
              "age: the open stream is kept through the grace, then the connection is closed")

        # ztunnels: one resuming with its versions (as ztunnel does), one
        # asking for everything again; both must end with the other
        # replica's view
        fresh = ztunnel.Ztunnel(SRC, c.xport, "east", "network-east", authz=True, reconnect=True,
                                resume=False)
        resumed = ztunnel.Ztunnel(SRC, c.xport, "east", "network-east", authz=True, reconnect=True)
        ref = ztunnel.Ztunnel(SRC, other.xport, "east", "network-east", authz=True, reconnect=True)
        zts += [fresh, resumed, ref]
        check(bool(wait_for(lambda: fresh.reconnects >= 2 and resumed.reconnects >= 2, 90)),
              f"age: ztunnel clients on C are cut and reconnect ({fresh.reconnects}, {resumed.reconnects} "
              f"reconnects; errors {fresh.error}, {resumed.error})")
        compare(fresh, ref, "age: a client that empties its state and asks again after each reconnect "
                "gets the whole view", 8, 1)
        ips = ["10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.14"]
        post(west, "/fake/apply", [slice_("bookinfo", "reviews", ips)] + pods("bookinfo", "reviews", ips))
        check(bool(resumed.wait(lambda s: capacity(s) == 4, 60)),
              "age: a change reaches the client that resumed across reconnects")
        compare(resumed, ref, "age: the resuming client", 8, 1)
        c.proc.send_signal(signal.SIGTERM)
        check(c.proc.wait(timeout=30) == 0, "age: C exits cleanly on SIGTERM, clients connected")
    finally:
        for z in zts:
            z.close()
        stop(c.proc)
        if FAILURES:
            print("--- replica-c log (tail) ---\n" + c.tail())


def main():
    global SRC
    binary, SRC = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-e2e-replicas-")
    make_certs(work)
    local, lp = start_fake(work, ["east"])
    remote, rp = start_fake(work, ["west"])
    east, west = lp["east"], rp["west"]
    post(east, "/fake/token", {"tokens": ["test-token"],
                               "rbac": {r + "-token": "chart" for r in ("replica-a", "replica-b", "replica-c")}})
    scopes = {"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceScope", "metadata": {"name": "default"},
              "spec": {"rules": [{"servicesSelector": {"matchExpressions": [
                  {"key": "istio.io/global", "operator": "In", "values": ["true"]}]}, "scope": "GLOBAL"}]}}
    post(east, "/fake/apply", cluster_objects("network-east", "192.0.2.10", ["10.10.0.11"])
         + [scopes, remote_secret({"west": west})])
    post(west, "/fake/apply", cluster_objects("network-west", "198.51.100.10", ["10.10.0.11", "10.10.0.12"]))
    reps, zts = [], []
    try:
        a = Replica(binary, work, "replica-a", east)
        reps.append(a)
        b = Replica(binary, work, "replica-b", east)
        reps.append(b)
        check(bool(a.xport and b.xport), "two replicas start on the same clusters")
        check(bool(wait_for(lambda: a.synced() and b.synced())), "both sync east and west")

        for cluster, net in (("east", "network-east"), ("west", "network-west")):
            za = ztunnel.Ztunnel(SRC, a.xport, cluster, net, authz=True, reconnect=True)
            zb = ztunnel.Ztunnel(SRC, b.xport, cluster, net, authz=True, reconnect=True)
            zts += [za, zb]
            compare(za, zb, f"{cluster}'s view on A and on B", 8, 1)
        za, zb = zts[0], zts[1]
        check(WEST_REVIEWS in za.state and "east//Pod/bookinfo/reviews-0" in za.state,
              "east's view holds west's global service through its gateway and east's own pods")
        ips = ["10.10.0.11", "10.10.0.12", "10.10.0.13"]
        post(west, "/fake/apply", [slice_("bookinfo", "reviews", ips)] + pods("bookinfo", "reviews", ips))
        post(east, "/fake/apply", policy("allow-frontend", "bookinfo", {"rules": [{}]}))
        check(bool(za.wait(lambda s: capacity(s) == 3) and zb.wait(lambda s: capacity(s) == 3)),
              "a change in west reaches the clients of both replicas")
        compare(za, zb, "after changes in west and east, east's view on A and on B", 8, 1)

        # leader election: one Lease holder, the only one writing
        check(bool(wait_for(lambda: [r.leading() for r in reps].count(True) == 1)),
              "exactly one replica leads (meshfed_leader 1)")
        time.sleep(3)  # a few renewals: the other must still not lead
        leaders = [r for r in reps if r.leading()]
        check(len(leaders) == 1, f"and it stays that way ({[r.name for r in leaders]})")
        leader = leaders[0] if leaders else a
        other = b if leader is a else a
        lease = fake_get(east, "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/meshfed-leader")
        check(bool(lease) and lease["spec"].get("holderIdentity") == leader.name,
              f"the Lease meshfed-leader names it ({lease and lease['spec'].get('holderIdentity')})")

        def scope_written():
            o = fake_get(east, "/apis/meshfed.io/v1alpha1/servicescopes/default")
            return bool(((o or {}).get("status") or {}).get("conditions"))
        check(bool(wait_for(scope_written)), "the ServiceScope's status is written")
        lst, ost = token_stats(east, leader.token), token_stats(east, other.token)
        lw = sum(lst["requests"].get(k, 0) for k in STATUS_WRITES)
        ow = sum(ost["requests"].get(k, 0) for k in STATUS_WRITES)
        check(lw > 0 and ow == 0, f"only the leader writes status ({lw} writes by the leader, {ow} by the other)")
        lu, ou = lst["requests"].get("update leases", 0), ost["requests"].get("update leases", 0)
        check(lu > 0 and ou == 0, f"only the leader renews the Lease ({lu} updates; the other {ou}, "
              f"{ost['requests'].get('get leases', 0)} reads)")
        w = {k: v for k, v in ost["requests"].items() if k.split()[0] in ("create", "update", "patch", "delete")}
        check(set(w) <= {"create leases"} and w.get("create leases", 0) <= 1,
              f"the other replica writes nothing but, at most once, the Lease it lost the race for ({w})")

        age_phase(binary, work, east, west, other)

        # failover: the leader stops (SIGTERM releases the Lease)
        leader.proc.send_signal(signal.SIGTERM)
        check(leader.proc.wait(timeout=30) == 0, "the leader exits cleanly on SIGTERM")
        check(bool(wait_for(other.leading, 45)), "the other replica takes the Lease over")
        lease = fake_get(east, "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/meshfed-leader")
        check(bool(lease) and lease["spec"].get("holderIdentity") == other.name,
              f"the Lease names it ({lease and lease['spec'].get('holderIdentity')})")
        post(east, "/fake/apply", dict(scopes, metadata={"name": "second"}))

        def second_written():
            o = fake_get(east, "/apis/meshfed.io/v1alpha1/servicescopes/second")
            return bool(((o or {}).get("status") or {}).get("conditions"))
        check(bool(wait_for(second_written)) and
              sum(token_stats(east, other.token)["requests"].get(k, 0) for k in STATUS_WRITES) > 0,
              "and writes status from then on")
        other.proc.send_signal(signal.SIGTERM)
        check(other.proc.wait(timeout=30) == 0, "the last replica exits cleanly on SIGTERM")
    finally:
        for z in zts:
            z.close()
        for r in reps:
            stop(r.proc)
        for p_ in (local, remote):
            p_.kill()
            p_.wait()
        if FAILURES:
            for r in reps:
                print(f"--- {r.name} log (tail) ---\n" + r.tail())
        shutil.rmtree(work, ignore_errors=True)
    summary()


if __name__ == "__main__":
    main()
    sys.exit(1 if FAILURES else 0)
