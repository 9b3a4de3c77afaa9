#!/usr/bin/python3
"""End to end against fake Kubernetes API servers: the real meshfed binary
watching three clusters (east local; west and south declared by a remote
Secret), with a ztunnel-like Delta xDS client connected.

Covers: initial sync of all clusters, a service labelled global reaching the
other cluster's client, a namespace label flipping a rule, endpoint scaling
changing capacity, a Secret key removed dropping its cluster, an API server
killed (stale, state kept) and restarted (relist), /metrics and /debug
answers, the leader's ServiceScope and AuthorizationPolicy (ZtunnelAccepted)
status, and SIGTERM while connected.
Usage: e2e_kube.py MESHFED_BINARY SOURCE_DIR
"""
import calendar
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztunnel  # noqa: E402
from e2elib import (FAILURES, check, fake_get, gateway, get, kubeconfig, log_ports, make_certs,  # noqa: E402
                    metric, ns, pods, post, remote_secret, slice_, start_fake, summary, svc, waiter)

wait_for = waiter(20.0)
H = "svc.cluster.local"


# ---------- objects ----------

def gateway_api(net, ip):
    """The east-west gateway as Istio 1.27 ambient declares it."""
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "istio-eastwest", "namespace": "istio-system",
                         "labels": {"topology.istio.io/network": net}},
            "spec": {"gatewayClassName": "istio-east-west",
                     "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE",
                                    "tls": {"mode": "Terminate"}}]},
            "status": {"addresses": [{"type": "IPAddress", "value": ip}]}}


def cluster_objects(net, gw_ip, reviews_ips, extra=(), gw_api=False):
    objs = [ns("istio-system", {"topology.istio.io/network": net}), ns("bookinfo"), ns("shop"),
            gateway_api(net, gw_ip) if gw_api else gateway(net, gw_ip),
            svc("bookinfo", "reviews", "10.96.0.20", {"istio.io/global": "true"}),
            slice_("bookinfo", "reviews", reviews_ips)] + pods("bookinfo", "reviews", reviews_ips)
    return objs + list(extra)


def auth_phase(binary, kc, west, work):
    """A second meshfed with --xds-auth jwt: ztunnels prove their cluster
    with a service-account token that the cluster's API server reviews."""
    sa = lambda name: {"apiVersion": "v1", "kind": "ServiceAccount",  # noqa: E731
                       "metadata": {"name": name, "namespace": "istio-system"}}
    post(west, "/fake/apply", [sa("ztunnel"), sa("other")])
    mint = lambda name: json.loads(post(  # noqa: E731
        west, f"/api/v1/namespaces/istio-system/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"audiences": ["istio-ca"], "expirationSeconds": 3600}}, token="test-token"))["status"]["token"]
    tok, other = mint("ztunnel"), mint("other")
    log = open(os.path.join(work, "meshfed-auth.log"), "a+")
    proc = subprocess.Popen([binary, "--kubeconfig", kc, "--cluster-id", "east", "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20", "--xds-auth", "jwt",
                             "--xds-allowed-identities", "istio-system/ztunnel,*/istio-eastwest"],
                            stdout=log, stderr=log)
    zts = []
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "auth: meshfed --xds-auth jwt starts")
        if not p:
            return
        xport, dport = p
        check(wait_for(lambda: get(dport, "/ready")[0] == 200), "auth: ready")
        bearer = ("authorization", "Bearer " + tok)

        def zt(cluster, md, reconnect=False):
            z = ztunnel.Ztunnel(SRC, xport, cluster, metadata=md, reconnect=reconnect)
            zts.append(z)
            return z
        grpc = ztunnel.protos(SRC)[0]
        # /ready waits for the local cluster only: west's network may become
        # known after this stream starts, which ends it once (ztunnel reconnects)
        z = zt("west", [bearer, ("clusterid", "west")], reconnect=True)
        check(bool(z.wait(lambda s: "west//Pod/bookinfo/reviews-0" in s)) and
              not any(k.startswith("east//Pod/") for k in z.state),
              "auth: a west ztunnel token (TokenReview by west's API server) gets west's view")
        check(zt("west", [bearer]).wait(lambda s: "west//Pod/bookinfo/reviews-0" in s),
              "auth: without clusterid metadata the node's CLUSTER_ID picks the reviewer")
        c = zt("east", [bearer, ("clusterid", "west")]).code()
        check(c == grpc.StatusCode.PERMISSION_DENIED,
              f"auth: the same token with the node claiming east is PERMISSION_DENIED ({c})")
        c = zt("west", [("clusterid", "west")]).code()
        check(c == grpc.StatusCode.UNAUTHENTICATED, f"auth: no token is UNAUTHENTICATED ({c})")
        c = zt("east", [bearer, ("clusterid", "east")]).code()
        check(c == grpc.StatusCode.UNAUTHENTICATED,
              f"auth: west's token presented for east is rejected by east's API server ({c})")
        c = zt("west", [("authorization", "Bearer " + other), ("clusterid", "west")]).code()
        check(c == grpc.StatusCode.PERMISSION_DENIED,
              f"auth: istio-system/other is not in --xds-allowed-identities ({c})")
        c = zt("nowhere", [bearer, ("clusterid", "nowhere")]).code()
        check(c == grpc.StatusCode.UNAUTHENTICATED, f"auth: an unknown cluster is UNAUTHENTICATED ({c})")
        log.seek(0)
        text = log.read()
        check(tok not in text and other not in text and "test-token" not in text,
              "auth: no token appears in meshfed's log")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        check(rc == 0, f"auth: SIGTERM exits cleanly (rc={rc})")
    finally:
        for z in zts:
            z.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed --xds-auth jwt log (tail) ---\n" + "".join(log.readlines()[-40:]))


def h2_phase(binary, east, work):
    """A meshfed whose local cluster sits behind an HTTP/2 front, as a real
    API server does: libcurl multiplexes every list and watch of the cluster
    over one connection, survives GOAWAY, and a 410 relists over it."""
    if not shutil.which("node"):
        print("note: node not installed, the HTTP/2 phase is skipped")
        return
    front = subprocess.Popen(["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakekube",
                                                   "h2front.js"),
                              os.path.join(work, "server.pem"), os.path.join(work, "server.key"),
                              os.path.join(work, "ca.pem"), str(east)], stdout=subprocess.PIPE, text=True)
    words = front.stdout.readline().split()
    h2port, ctl = int(words[1]), int(words[3])
    stats = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ctl}/stats", timeout=5).read())  # noqa: E731
    # its current-context names a dead server: --context must pick "c"; its
    # user gets the token from an exec credential plugin, as cloud clusters do
    k = json.loads(kubeconfig(h2port))
    k["clusters"].append({"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}})
    k["contexts"].append({"name": "dead", "context": {"cluster": "dead", "user": "u"}})
    k["current-context"] = "dead"
    plugin = os.path.join(work, "token-plugin.sh")
    runs = os.path.join(work, "token-plugin.runs")
    with open(plugin, "w") as f:
        f.write("#!/bin/sh\necho run >> %s\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",'"
                "'\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%%s\"}}' \"$TOKEN\"\n" % runs)
    os.chmod(plugin, 0o700)
    k["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": plugin,
                                      "env": [{"name": "TOKEN", "value": "test-token"}]}}
    kc = os.path.join(work, "h2.kubeconfig")
    open(kc, "w").write(json.dumps(k))
    log = open(os.path.join(work, "meshfed-h2.log"), "a+")
    proc = subprocess.Popen([binary, "--kubeconfig", kc, "--context", "c", "--cluster-id", "east",
                             "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20"],
                            stdout=log, stderr=log, env=dict(os.environ, POD_NAME="replica-h2"))
    zt = None
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p) and wait_for(lambda: get(p[1], "/ready")[0] == 200),
              "h2: meshfed syncs east through the HTTP/2 front (--context c of a kubeconfig "
              "whose current-context is dead; token from an exec plugin)")
        check(os.path.exists(runs), "h2: the exec credential plugin ran")
        if not p:
            return
        st = stats()
        check(st["max_streams"] >= 9,
              f"h2: east's 9 lists and watches share one HTTP/2 connection ({st})")
        zt = ztunnel.Ztunnel(SRC, p[0], "east", "network-east", reconnect=True)
        check(bool(zt.wait(lambda s: "east//Pod/bookinfo/reviews-0" in s)), "h2: a ztunnel gets east's pods")
        urllib.request.urlopen(f"http://127.0.0.1:{ctl}/goaway", timeout=5).read()
        check(wait_for(lambda: (metric(p[1], "meshfed_kube_watch_restarts_total") or 0) >= 9),
              "h2: GOAWAY and a closed connection: the watches resume quietly")
        ips = ["10.10.0.11", "10.10.0.31"]
        post(east, "/fake/apply", [slice_("bookinfo", "reviews", ips)] + pods("bookinfo", "reviews", ips))
        check(bool(zt.wait(lambda s: "east//Pod/bookinfo/reviews-1" in s)),
              f"h2: and watch events arrive on the new connection ({stats()})")
        post(east, "/fake/compact", {"disconnect": True})
        post(east, "/fake/apply", [slice_("bookinfo", "reviews", ips[:1])] + pods("bookinfo", "reviews", ips[:1]))
        post(east, "/fake/delete", {"kind": "Pod", "namespace": "bookinfo", "name": "reviews-1"})
        check(bool(zt.wait(lambda s: "east//Pod/bookinfo/reviews-1" not in s)),
              "h2: after a compaction (410) the relist over HTTP/2 removes the deleted pod")
        check(wait_for(lambda: (metric(p[1], "meshfed_kube_relists_total") or 0) >= 1),
              "h2: and counts the relist")
    finally:
        if zt:
            zt.close()
        for p_ in (proc, front):
            p_.kill()
            p_.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed (HTTP/2) log (tail) ---\n" + "".join(log.readlines()[-30:]))


def main():
    global SRC
    binary, SRC = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-e2e-kube-")
    make_certs(work)
    local, lp = start_fake(work, ["east"])
    remote, rp = start_fake(work, ["west", "south"])
    east, west, south = lp["east"], rp["west"], rp["south"]
    scopes = {"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceScope", "metadata": {"name": "default"},
              "spec": {"rules": [
                  {"servicesSelector": {"matchExpressions": [{"key": "istio.io/global", "operator": "In",
                                                              "values": ["true"]}]}, "scope": "GLOBAL"},
                  {"namespaceSelector": {"matchLabels": {"team": "payments"}},
                   "servicesSelector": {"matchLabels": {"tier": "frontend"}}, "scope": "GLOBAL"}]}}
    post(east, "/fake/apply", cluster_objects("network-east", "192.0.2.10", ["10.10.0.11"],
                                              [scopes, remote_secret({"west": west, "south": south})]))
    west_objs = cluster_objects("network-west", "198.51.100.10", ["10.10.0.11", "10.10.0.12", "10.10.0.13"],
                                [svc("bookinfo", "ratings", "10.96.0.42"), slice_("bookinfo", "ratings", ["10.10.0.20"]),
                                 svc("shop", "checkout", "10.96.0.50", {"tier": "frontend"}),
                                 slice_("shop", "checkout", ["10.10.1.11"])]
                                + pods("bookinfo", "ratings", ["10.10.0.20"]) + pods("shop", "checkout", ["10.10.1.11"]))
    post(west, "/fake/apply", west_objs)
    post(south, "/fake/apply", cluster_objects("network-south", "203.0.113.10", ["10.10.0.11", "10.10.0.12"],
                                               gw_api=True))
    kc = os.path.join(work, "east.kubeconfig")
    open(kc, "w").write(kubeconfig(east))
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen([binary, "--kubeconfig", kc, "--cluster-id", "east", "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20", "--stale-after", "2"],
                            stdout=log, stderr=log)
    zt = None
    extra = []
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts against the fake API server")
        if not p:
            return
        xport, dport = p

        def clusters():
            st, body = get(dport, "/debug/clusterz")
            return {c["id"]: c for c in json.loads(body)} if st == 200 else {}
        # /ready follows the local cluster only; the remotes sync on their own
        check(wait_for(lambda: get(dport, "/ready")[0] == 200), "/ready once east synced")
        check(bool(wait_for(lambda: len(clusters()) == 3 and all(
            c.get("state") == "synced" for c in clusters().values()))),
            "east, west and south all sync")
        cs = clusters()
        check(set(cs) == {"east", "west", "south"}, f"clusterz lists the local and both remote clusters ({sorted(cs)})")
        check(cs.get("west", {}).get("network") == "network-west" and cs.get("west", {}).get("gateway") == "198.51.100.10",
              "west's network and gateway come from its own objects")
        check(cs.get("south", {}).get("gateway") == "203.0.113.10",
              "south's gateway comes from its Gateway of class istio-east-west")

        zt = ztunnel.Ztunnel(SRC, xport, "east", "network-east", reconnect=True)
        sh = lambda net, gw, n, s: f"{net}/SplitHorizonWorkload/istio-system/istio-eastwest/{gw}/{n}/{s}.{n}.{H}"  # noqa: E731
        west_reviews = sh("network-west", "198.51.100.10", "bookinfo", "reviews")
        got = zt.wait(lambda s: west_reviews in s and s[west_reviews].workload.capacity.value == 3)
        check(bool(got), "east's ztunnel reaches west's reviews through the gateway, capacity 3")
        check(zt.wait(lambda s: sh("network-south", "203.0.113.10", "bookinfo", "reviews") in s),
              "and south's reviews")
        check(not any(k.startswith("west//Pod/") for k in zt.state), "east's ztunnel never gets west's pod IPs")
        check(f"bookinfo/ratings.bookinfo.{H}" not in zt.state, "west's local ratings is invisible in east")
        # ztunnel sends no NETWORK: meshfed takes the cluster's network
        zt2 = ztunnel.Ztunnel(SRC, xport, "east", reconnect=True)
        got2 = zt2.wait(lambda s: west_reviews in s)
        own = sh("network-east", "192.0.2.10", "bookinfo", "reviews")
        check(bool(got2) and own not in zt2.state and "east//Pod/bookinfo/reviews-0" in zt2.state,
              "a ztunnel without NETWORK metadata gets its cluster's network view")
        zt2.close()

        # ServiceScope status, written by the leader
        def scope_status():
            o = fake_get(east, "/apis/meshfed.io/v1alpha1/servicescopes/default")
            st_ = (o or {}).get("status", {})
            conds = st_.get("conditions", [])
            counts_ = {r["index"]: r["selectedServices"] for r in st_.get("rules", [])}
            return st_ if conds and conds[0].get("status") == "True" and counts_.get(0) == 3 else None
        st_ = wait_for(scope_status)
        check(bool(st_) and st_["conditions"][0]["type"] == "Accepted",
              "the leader writes ServiceScope status: Accepted=True")
        counts = {r["index"]: r["selectedServices"] for r in (st_ or {}).get("rules", [])}
        check(counts.get(0) == 3, f"status counts rule 0 selecting reviews in three clusters ({counts})")
        check(metric(dport, "meshfed_leader") == 1, "this replica leads (meshfed_leader 1)")
        bad = {"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceScope", "metadata": {"name": "broken"},
               "spec": {"rules": [{"servicesSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
                                   "scope": "GLOBAL"}]}}
        post(east, "/fake/apply", bad)

        def bad_status():
            o = fake_get(east, "/apis/meshfed.io/v1alpha1/servicescopes/broken")
            c = ((o or {}).get("status") or {}).get("conditions", [])
            return c and c[0]
        c = wait_for(bad_status)
        check(bool(c) and c["status"] == "False" and "needs at least one value" in c.get("message", ""),
              f"an invalid ServiceScope gets Accepted=False with the reason ({c and c.get('message')})")
        check(zt.wait(lambda s: west_reviews in s), "an invalid ServiceScope leaves the valid rules working")

        # AuthorizationPolicy status: the ZtunnelAccepted condition istiod writes, for the
        # local cluster's policies only
        def ap(name, spec, cluster=east, gen=1):
            post(cluster, "/fake/apply", {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                                          "metadata": {"name": name, "namespace": "bookinfo", "generation": gen},
                                          "spec": spec})

        def ap_cond(name, cluster=east):
            o = fake_get(cluster, f"/apis/security.istio.io/v1/namespaces/bookinfo/authorizationpolicies/{name}")
            c = ((o or {}).get("status") or {}).get("conditions", [])
            return c[0] if c else None
        ap("allow-frontend", {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/x/sa/y"]}}]}]})
        ap("audit", {"action": "AUDIT", "rules": [{}]})
        ap("bad-cidr", {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]})
        ap("west-only", {"rules": [{}]}, cluster=west)
        c = wait_for(lambda: ap_cond("allow-frontend"))
        check(bool(c) and c["type"] == "ZtunnelAccepted" and c["status"] == "True"
              and c["reason"] == "Accepted" and c["message"] == "attached to ztunnel"
              and c.get("observedGeneration") == 1 and c.get("lastTransitionTime"),
              f"an accepted AuthorizationPolicy gets ZtunnelAccepted=True, Accepted ({c})")
        c = wait_for(lambda: ap_cond("audit"))
        check(bool(c) and c["status"] == "False" and c["reason"] == "UnsupportedValue"
              and c["message"] == "ztunnel does not support the AUDIT action",
              f"an AUDIT policy gets ZtunnelAccepted=False, UnsupportedValue ({c})")
        c = wait_for(lambda: ap_cond("bad-cidr"))
        check(bool(c) and c["status"] == "True" and c["reason"] == "InvalidPolicy"
              and "10.0.0.0/33" in c["message"] and "fail closed" in c["message"],
              f"a DENY with a bad CIDR is enforced fail closed, and its status says so ({c})")
        ap("allow-frontend", {"action": "AUDIT"}, gen=2)
        c = wait_for(lambda: (ap_cond("allow-frontend") or {}).get("observedGeneration") == 2
                     and ap_cond("allow-frontend"))
        check(bool(c) and c["reason"] == "UnsupportedValue", f"a changed policy's status follows ({c})")
        check(ap_cond("west-only", cluster=west) is None,
              "a remote cluster's policy gets no status from this control plane")
        lease = fake_get(east, "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/meshfed-leader")
        check(bool(lease) and lease["spec"].get("holderIdentity"), "the Lease meshfed-leader names the leader")

        # a second replica serves too, but does not lead
        log2 = open(os.path.join(work, "meshfed2.log"), "a+")
        env2 = dict(os.environ, POD_NAME="replica-2")
        proc2 = subprocess.Popen([binary, "--kubeconfig", kc, "--cluster-id", "east", "--xds-listen",
                                  "127.0.0.1:0", "--debug-listen", "127.0.0.1:0"], stdout=log2, stderr=log2,
                                 env=env2)
        try:
            p2 = wait_for(lambda: log_ports(log2))
            ok2 = bool(p2) and wait_for(lambda: get(p2[1], "/ready")[0] == 200)
            check(ok2 and metric(p2[1], "meshfed_leader") == 0 and metric(dport, "meshfed_leader") == 1,
                  "a second replica is ready and serves, without leading")
        finally:
            proc2.send_signal(signal.SIGTERM)
            proc2.wait(timeout=20)

        # label ratings global in west
        r = svc("bookinfo", "ratings", "10.96.0.42", {"istio.io/global": "true"})
        post(west, "/fake/apply", r)
        check(zt.wait(lambda s: f"bookinfo/ratings.bookinfo.{H}" in s),
              "labelling ratings istio.io/global=true in west pushes it to east's ztunnel")

        # a namespace label that the AND rule selects on
        post(west, "/fake/apply", ns("shop", {"team": "payments"}))
        check(zt.wait(lambda s: f"shop/checkout.shop.{H}" in s),
              "labelling west's shop namespace team=payments makes checkout global (AND rule)")
        post(west, "/fake/apply", ns("shop"))
        check(zt.wait(lambda s: f"shop/checkout.shop.{H}" not in s), "removing the label makes it local again")

        # scale west's reviews to five endpoints
        ips = [f"10.10.0.{i}" for i in range(11, 16)]
        post(west, "/fake/apply", [slice_("bookinfo", "reviews", ips)] + pods("bookinfo", "reviews", ips))
        check(zt.wait(lambda s: west_reviews in s and s[west_reviews].workload.capacity.value == 5),
              "scaling west's reviews to 5 endpoints sets capacity 5")

        # drop south from the Secret
        post(east, "/fake/apply", remote_secret({"west": west}))
        check(wait_for(lambda: set(clusters()) == {"east", "west"}), "removing south's Secret key removes the cluster")
        check(zt.wait(lambda s: not any("network-south" in k for k in s)), "east's ztunnel loses south's workloads")

        # kill the remote API server: west goes stale but keeps its state
        remote.kill()
        remote.wait()
        check(wait_for(lambda: clusters().get("west", {}).get("state") == "stale", 15),
              "west is marked stale when its API server goes away")
        check(west_reviews in zt.state, "a stale cluster keeps its last known state")
        rv = 100000
        remote, rp2 = start_fake(work, [f"west={west}"], initial_rv=rv)
        post(west, "/fake/apply", west_objs[:-6] + [slice_("bookinfo", "reviews", ips[:2])] + pods("bookinfo", "reviews", ips[:2]))
        check(wait_for(lambda: clusters().get("west", {}).get("state") == "synced", 20),
              "west recovers when its API server returns")
        check(zt.wait(lambda s: west_reviews in s and s[west_reviews].workload.capacity.value == 2),
              "after the restart, the relist brings west's current endpoints (capacity 2)")

        st, body = get(dport, "/metrics")
        check('meshfed_kube_relists_total' in body and 'meshfed_xds_connected 1' in body,
              "/metrics shows the relist counter and the connected ztunnel")
        st, body = get(dport, "/debug/syncz")
        sync = json.loads(body) if st == 200 else []
        check(len(sync) == 1 and sync[0]["cluster"] == "east", "/debug/syncz lists the connected ztunnel")
        st, body = get(dport, "/debug/config_dump?proxy=" + urllib.parse.quote(sync[0]["proxy"]) if sync else "/x")
        check(st == 200 and west_reviews in json.loads(body).get("resources", {}),
              "/debug/config_dump?proxy= shows what that proxy sees")

        # a new cluster joins with a Secret made by `meshfed create-remote-secret`
        north_p, np_ = start_fake(work, ["north"], absent=["gateways"])
        extra.append(north_p)
        north = np_["north"]
        post(north, "/fake/apply", cluster_objects("network-north", "192.0.2.77", ["10.10.0.11"]) +
             [{"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "meshfed", "namespace": "istio-system"}}])
        nkc = os.path.join(work, "north.kubeconfig")
        open(nkc, "w").write(kubeconfig(north))
        out = subprocess.run([binary, "create-remote-secret", "--kubeconfig", nkc, "--name", "north"],
                             capture_output=True, text=True)
        import yaml
        secret = yaml.safe_load(out.stdout) if out.returncode == 0 else None
        inner = yaml.safe_load(secret["stringData"]["north"]) if secret else {}
        user = (inner.get("users") or [{}])[0].get("user", {})
        check(bool(secret) and secret["metadata"]["labels"]["istio/multiCluster"] == "true"
              and user.get("token", "").startswith("sa.istio-system.meshfed."),
              "create-remote-secret prints a Secret with a ServiceAccount token, not the user's")
        check(bool(secret) and secret["metadata"]["name"] == "meshfed-remote-secret-north",
              "its Secret is meshfed's own (meshfed-remote-secret-ID), never istioctl's to replace")
        exp = (secret or {}).get("metadata", {}).get("annotations", {}).get("meshfed.io/token-expiration", "")
        left = calendar.timegm(time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ")) - time.time() if exp else 0
        check(abs(left - 365 * 86400) < 120 and f"expires at {exp}" in out.stderr,
              "the token's one-year expiry is in an annotation and on stderr")
        for bad in ["Bad Name!", "-north", "north-", "a..b", "x" * 232, ""]:
            bo = subprocess.run([binary, "create-remote-secret", "--kubeconfig", nkc, "--name", bad],
                                capture_output=True, text=True)
            check(bo.returncode == 2 and not bo.stdout and "not a valid cluster ID" in bo.stderr,
                  f"--name {bad[:20]!r} is refused (not DNS-1123), exit 2")
        ok = subprocess.run([binary, "create-remote-secret", "--kubeconfig", nkc, "--name", "x" * 231,
                             "--tls-server-name", "api.north.example"], capture_output=True, text=True)
        osec = yaml.safe_load(ok.stdout) if ok.returncode == 0 else None
        ocl = yaml.safe_load(osec["stringData"]["x" * 231])["clusters"][0]["cluster"] if osec else {}
        check(ocl.get("tls-server-name") == "api.north.example" and len(osec["metadata"]["name"]) == 253,
              "--tls-server-name goes into the kubeconfig's cluster; a 231-character ID fits a 253-character name")
        if secret:
            post(east, "/fake/apply", secret)
        north_reviews = sh("network-north", "192.0.2.77", "bookinfo", "reviews")
        check(wait_for(lambda: clusters().get("north", {}).get("state") == "synced"),
              "applying it in east makes east's meshfed watch north (no Gateway API there: still synced)")
        check(zt.wait(lambda s: north_reviews in s), "and north's global services reach east's ztunnel")
        out = subprocess.run([binary, "create-remote-secret", "--kubeconfig", nkc, "--name", "north",
                              "--service-account", "nobody", "--create-service-account=false"],
                             capture_output=True, text=True)
        check(out.returncode == 1 and "not found" in out.stderr and not out.stdout,
              "with --create-service-account=false, a missing ServiceAccount is a clear error")
        out = subprocess.run([binary, "create-remote-secret", "--kubeconfig", nkc, "--name", "north",
                              "--service-account", "reader"], capture_output=True, text=True)
        # fakekube serves no RBAC kinds: the ClusterRole step answers 404 there
        check(fake_get(north, "/api/v1/namespaces/istio-system/serviceaccounts/reader") is not None
              and "created ServiceAccount istio-system/reader" in out.stderr
              and "creating ClusterRole meshfed-remote-reader: HTTP 404" in out.stderr
              and out.returncode == 1 and not out.stdout,
              "by default a missing ServiceAccount is created, then its ClusterRole; a failed step is named")

        h2_phase(binary, east, work)
        auth_phase(binary, kc, west, work)

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        check(rc == 0, f"SIGTERM with a connected client exits cleanly (rc={rc})")
    finally:
        if zt:
            zt.close()
        for p_ in [proc, local, remote] + extra:
            if p_.poll() is None:
                p_.kill()
                p_.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed log (tail) ---\n" + "".join(log.readlines()[-60:]))
        shutil.rmtree(work, ignore_errors=True)
    summary()


if __name__ == "__main__":
    main()
    sys.exit(1 if FAILURES else 0)
