#!/usr/bin/python3
"""End to end under API server faults: the real meshfed binary watching three
fake clusters (east local; west and south from a remote Secret, each in its
own fakekube process) with ztunnel-like Delta xDS clients connected, while a
writer keeps changing objects in every cluster.

Faults: watch streams cut mid-stream again and again (/fake/disconnect),
truncated and malformed watch lines (/fake/malformed), a 410 storm
(/fake/compact every 200 ms), a slow API server (/fake/pause), and west's API
server killed and restarted on its port several times with a larger
--initial-rv each time (a new etcd history: 410, relist).

After the faults stop: meshfed's view of every cluster (/debug/clusterz object
counts, /debug/servicez scopes, /debug/endpointz endpoints) equals the fake
servers' final objects, the connected ztunnels hold exactly what a freshly
connected one gets, meshfed still runs, and /metrics counted the relists and
errors.
Usage: e2e_faults.py MESHFED_BINARY SOURCE_DIR
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztunnel  # noqa: E402
from e2elib import (FAILURES, check, fake_get, gateway, get, get_json, kubeconfig, log_ports, make_certs, metrics,  # noqa: E402
                    ns, pod, post, remote_secret, slice_, start_fake, summary, svc, waiter)

wait_for = waiter(30.0, interval=0.2)
NS = "apps"
NSVC = 5
SRC = None


# ---------- a cluster whose final objects we know ----------

class FakeCluster:
    def __init__(self, cid, idx, net, gw, port):
        self.id, self.idx, self.net, self.gw, self.port = cid, idx, net, gw, port
        self.objects = {}  # (kind, ns, name) -> obj: what the fake server holds
        self.up = True
        self.mu = threading.Lock()
        self.sizes = {}

    def apply(self, objs):
        objs = objs if isinstance(objs, list) else [objs]
        with self.mu:
            if not self.up:
                return False
            try:
                post(self.port, "/fake/apply", objs)
            except OSError:
                return False
            for o in objs:
                md = o["metadata"]
                self.objects[(o["kind"], md.get("namespace"), md["name"])] = o
            return True

    def delete(self, kind, n, name):
        with self.mu:
            if not self.up:
                return False
            try:
                post(self.port, "/fake/delete", {"kind": kind, "namespace": n, "name": name})
            except OSError:
                return False
            self.objects.pop((kind, n, name), None)
            return True

    def reapply_all(self):
        """After a restart the fake server is empty: put the same objects back."""
        with self.mu:
            post(self.port, "/fake/apply", list(self.objects.values()))

    def ip(self, s, i):
        return f"10.{20 + self.idx}.{s}.{i + 1}"

    def scale(self, s, n, ready, global_=True):
        name = f"app{s}"
        old = self.sizes.get(s, 0)
        objs = [svc(NS, name, f"10.96.{self.idx}.{s + 1}", {"istio.io/global": "true"} if global_ else {}),
                slice_(NS, name, [self.ip(s, i) for i in range(n)], ready)]
        objs += [pod(NS, name, i, self.ip(s, i)) for i in range(n)]
        if not self.apply(objs):
            return
        for i in range(n, old):
            self.delete("Pod", NS, f"{name}-{i}")
        self.sizes[s] = n

    def initial(self, extra=()):
        self.apply([ns("istio-system", {"topology.istio.io/network": self.net}), ns(NS),
                    gateway(self.net, self.gw)] + list(extra))
        for s in range(NSVC):
            self.scale(s, 2, [True, True])

    def mutate(self, rnd):
        r = rnd.random()
        if r < 0.75:
            s = rnd.randrange(NSVC)
            n = rnd.randint(1, 4)
            self.scale(s, n, [rnd.random() < 0.7 for _ in range(n)], global_=rnd.random() < 0.85)
        elif ("Service", NS, "tmp") in self.objects:
            self.delete("EndpointSlice", NS, "tmp-1")
            self.delete("Service", NS, "tmp")
        else:
            self.apply([svc(NS, "tmp", f"10.96.{self.idx}.200", {"istio.io/global": "true"}),
                        slice_(NS, "tmp", [self.ip(9, 0)], [True])])


class Writer(threading.Thread):
    """Keeps changing objects in every cluster until stopped."""

    def __init__(self, clusters, period=0.05):
        super().__init__(daemon=True)
        self.clusters, self.period = clusters, period
        self.stop = threading.Event()
        self.rnd = random.Random(7)
        self.writes = 0

    def run(self):
        while not self.stop.is_set():
            c = self.rnd.choice(self.clusters)
            c.mutate(self.rnd)
            self.writes += 1
            time.sleep(self.period)


# ---------- what meshfed should show ----------

def expected(clusters):
    counts, scopes, eps = {}, {}, {}
    kinds = {"Namespace": "Namespace", "Service": "Service", "EndpointSlice": "EndpointSlice", "Pod": "Pod"}
    for c in clusters:
        with c.mu:
            objs = dict(c.objects)
        cnt = {}
        for (kind, n, name), o in objs.items():
            if kind in kinds:
                cnt[kind] = cnt.get(kind, 0) + 1
            if kind == "Service":
                g = o["metadata"].get("labels", {}).get("istio.io/global") == "true"
                scopes.setdefault(f"{n}/{name}", {})[c.id] = "GLOBAL" if g else "LOCAL"
            if kind == "EndpointSlice":
                sname = o["metadata"]["labels"]["kubernetes.io/service-name"]
                eps.setdefault(f"{n}/{sname}", {})[c.id] = sorted(
                    (e["addresses"][0], e["conditions"]["ready"], e["targetRef"]["name"]) for e in o["endpoints"])
        counts[c.id] = cnt
    return counts, scopes, eps


def actual(dport, services):
    cz = get_json(dport, "/debug/clusterz") or []
    counts = {c["id"]: {k: v for k, v in c["objects"].items() if v and k in
                        ("Namespace", "Service", "EndpointSlice", "Pod")} for c in cz}
    states = {c["id"]: c["state"] for c in cz}
    sz = get_json(dport, "/debug/servicez") or []
    scopes = {s["service"]: {c["cluster"]: c["scope"] for c in s["clusters"]} for s in sz}
    eps = {}
    for key in services:
        e = get_json(dport, "/debug/endpointz?service=" + key)
        for cid, v in ((e or {}).get("clusters") or {}).items():
            if v["endpoints"]:
                eps.setdefault(key, {})[cid] = sorted((x["address"], x["ready"], x.get("pod")) for x in v["endpoints"])
    return counts, states, scopes, eps


def diff(a, b):
    """A short description of how dict a differs from dict b."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)} != {b.get(k)}")
    return "; ".join(out[:4]) or "equal"


def main():
    global SRC
    binary, SRC = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-e2e-faults-")
    make_certs(work)
    procs = {}
    procs["east"], lp = start_fake(work, ["east"])
    procs["west"], wp = start_fake(work, ["west"])
    procs["south"], sp = start_fake(work, ["south"])
    east = FakeCluster("east", 0, "network-east", "192.0.2.10", lp["east"])
    west = FakeCluster("west", 1, "network-west", "198.51.100.10", wp["west"])
    south = FakeCluster("south", 2, "network-south", "203.0.113.10", sp["south"])
    clusters = [east, west, south]
    east.initial([remote_secret({"west": west.port, "south": south.port})])
    west.initial()
    south.initial()
    kc = os.path.join(work, "east.kubeconfig")
    open(kc, "w").write(kubeconfig(east.port))
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen([binary, "--kubeconfig", kc, "--cluster-id", "east", "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20", "--stale-after", "2"],
                            stdout=log, stderr=log)
    zts, writer = [], None
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts against three fake API servers")
        if not p:
            return
        xport, dport = p
        check(bool(wait_for(lambda: get(dport, "/ready")[0] == 200, 60)), "/ready once all three synced")
        zts = [ztunnel.Ztunnel(SRC, xport, "east", "network-east", node_id=f"ztunnel~10.0.0.{i}~zt{i}.istio-system~"
                               "istio-system.svc.cluster.local") for i in range(1, 4)]
        check(all(z.wait(lambda s: len(s) > 10, 20) for z in zts), "three ztunnels connected with a view")
        m0 = metrics(dport)

        writer = Writer(clusters)
        writer.start()

        # 1. watch streams cut mid-stream, again and again
        for i in range(20):
            for c in (east, south):
                post(c.port, "/fake/disconnect", {})
            time.sleep(0.2)
        check(proc.poll() is None, "meshfed survives 20 rounds of watch streams cut mid-stream")

        # 2. truncated and malformed watch lines
        bad_lines = ['{"type":"ADDED","object":{"metadata":{"name":"x"', "{not json", '{"type":"ADDED"}',
                     '{"type":"MODIFIED","object":42}', '{"type":"BOGUS","object":{}}', "[]", '"str"',
                     '{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":null}}}']
        for line in bad_lines:
            for c in (east, south):
                post(c.port, "/fake/malformed", {"line": line})
            time.sleep(0.1)
        for c in (east, south):
            post(c.port, "/fake/malformed", {"size": 3 * 1024 * 1024})  # one huge line
        time.sleep(1.0)
        check(proc.poll() is None, f"meshfed survives {len(bad_lines) + 1} malformed watch lines per watch")

        # 3. a 410 storm: history compacted every 200 ms while objects change
        end = time.time() + 4
        while time.time() < end:
            for c in (east, south):
                post(c.port, "/fake/compact", {"disconnect": random.random() < 0.5})
            time.sleep(0.2)
        check(proc.poll() is None, "meshfed survives a 410 storm (compact every 200 ms for 4 s)")

        # 4. a slow API server: events held back for a while
        for c in (east, south):
            post(c.port, "/fake/pause", {"on": True})
        time.sleep(4)
        for c in (east, south):
            post(c.port, "/fake/pause", {"on": False})
        check(proc.poll() is None, "meshfed survives a paused API server")

        # 5. west flaps: killed, restarted on its port with a larger initial rv
        for k in range(1, 5):
            with west.mu:
                west.up = False
                procs["west"].kill()
                procs["west"].wait()
            time.sleep(0.5 + k * 0.7)  # the later downtimes exceed --stale-after
            procs["west"], _ = start_fake(work, [f"west={west.port}"], initial_rv=100000 * k)
            west.reapply_all()
            with west.mu:
                west.up = True
            time.sleep(1.5)
        check(proc.poll() is None, "meshfed survives west's API server flapping 4 times")

        writer.stop.set()
        writer.join()
        print(f"writer: {writer.writes} writes during the faults", flush=True)

        # ---------- after the faults ----------
        want_counts, want_scopes, want_eps = expected(clusters)
        got = {}

        def converged():
            got["counts"], got["states"], got["scopes"], got["eps"] = actual(dport, sorted(want_scopes))
            return (got["counts"] == want_counts and got["scopes"] == want_scopes and got["eps"] == want_eps
                    and set(got["states"].values()) == {"synced"})
        ok = wait_for(converged, 60)
        check(set(got["states"].values()) == {"synced"} and set(got["states"]) == {"east", "west", "south"},
              f"every cluster is synced again ({got['states']})")
        check(got["counts"] == want_counts, "clusterz object counts equal the fake servers' objects "
              f"({diff(got['counts'], want_counts)})")
        check(got["scopes"] == want_scopes, "servicez scopes equal the fake servers' Services "
              f"({diff(got['scopes'], want_scopes)})")
        check(got["eps"] == want_eps, "endpointz equals the fake servers' EndpointSlices "
              f"({diff(got['eps'], want_eps)})")
        del ok

        fresh = ztunnel.Ztunnel(SRC, xport, "east", "network-east", node_id="ztunnel~10.0.0.9~fresh.istio-system~"
                                "istio-system.svc.cluster.local")
        fresh.wait(lambda s: len(s) > 10, 20)
        time.sleep(1.0)  # any push still under way
        for i, z in enumerate(zts):
            same = z.wait(lambda s: z.versions == fresh.versions, 20)
            d = {k: v for k, v in z.versions.items() if fresh.versions.get(k) != v}
            d.update({k: None for k in fresh.versions if k not in z.versions})
            check(bool(same) and z.error is None,
                  f"ztunnel {i + 1} (connected throughout) holds exactly a fresh client's state "
                  f"({len(z.versions)} vs {len(fresh.versions)} resources; differ: {list(d)[:3]})")
        # the fresh view agrees with the objects: every global service of a remote
        # network, with ready endpoints, is reachable through its gateway (unless
        # east keeps it local)
        sh = {k for k in fresh.state if "/SplitHorizonWorkload/" in k}
        want_sh = set()
        for c in (west, south):
            for (kind, n, name), o in c.objects.items():
                scopes = want_scopes.get(f"{n}/{name[:-2]}", {})
                # a cluster that keeps the service LOCAL neither exports nor imports it
                # (docs/servicescope.md): east's proxies then see only east's copy
                if kind == "EndpointSlice" and scopes.get(c.id) == "GLOBAL" \
                        and scopes.get("east") != "LOCAL" \
                        and any(e["conditions"]["ready"] for e in o["endpoints"]):
                    want_sh.add(f"{c.net}/SplitHorizonWorkload/istio-system/istio-eastwest/{c.gw}/{n}/"
                                f"{name[:-2]}.{n}.svc.cluster.local")
        check(want_sh <= sh, f"the fresh client reaches every remote global service with ready endpoints "
              f"(missing {sorted(want_sh - sh)[:3]})")
        kept_local = {k for k in sh if want_scopes.get(
            f"{k.split('/')[5]}/{k.split('/')[6].split('.')[0]}", {}).get("east") == "LOCAL"}
        check(not kept_local, f"services east keeps LOCAL get no split-horizon workload there ({sorted(kept_local)[:3]})")
        fresh.close()

        check(proc.poll() is None, "meshfed is still running")
        m1 = metrics(dport)
        delta = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
        print("metrics: " + ", ".join(f"{k}={m1.get(k)}" for k in sorted(m1) if k.startswith("meshfed_kube_")),
              flush=True)
        check(delta("meshfed_kube_relists_total") >= 3, f"relists counted ({delta('meshfed_kube_relists_total')})")
        check(delta("meshfed_kube_decode_errors_total") >= 2,
              f"malformed watch lines counted ({delta('meshfed_kube_decode_errors_total')})")
        check(delta("meshfed_kube_errors_total") >= 1, f"watch errors counted ({delta('meshfed_kube_errors_total')})")
        check(delta("meshfed_kube_watch_restarts_total") >= 20,
              f"watch restarts counted ({delta('meshfed_kube_watch_restarts_total')})")
        # the fresh client has just closed; the server may not have seen it yet
        connected = wait_for(lambda: metrics(dport).get("meshfed_xds_connected") == 3, 10)
        check(connected, f"the three ztunnels are still connected "
              f"({metrics(dport).get('meshfed_xds_connected')})")

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        check(rc == 0, f"SIGTERM after the faults exits cleanly (rc={rc})")
    finally:
        if writer:
            writer.stop.set()
        for z in zts:
            z.close()
        for p_ in [proc] + list(procs.values()):
            if p_.poll() is None:
                p_.kill()
                p_.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed log (tail) ---\n" + "".join(log.readlines()[-60:]))
        shutil.rmtree(work, ignore_errors=True)


def silent_server():
    """A TCP port that accepts connections and never answers (a stalled API
    server or list): (socket, port). Bounded: closed by the caller."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held = []

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            held.append(c)
    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def closed_port():
    s_ = socket.socket()
    s_.bind(("127.0.0.1", 0))
    port = s_.getsockname()[1]
    s_.close()
    return port


def bad_remotes(binary):
    """Issue 14 items 3 and 2: remotes that cannot be reached (connection
    refused; accepted but never answered) keep no replica unready, and say
    why in the log, /debug/clusterz and /metrics; a Secret re-pointed at
    another API server with the same resourceVersions starts the cluster
    from scratch, so the new content is served."""
    work = tempfile.mkdtemp(prefix="meshfed-e2e-remotes-")
    make_certs(work)
    procs = []
    srv, silent = silent_server()
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = None
    try:
        p_east, lp = start_fake(work, ["east"])
        p_a, ap = start_fake(work, ["west"], absent=["gateways"])  # no Gateway API CRD
        p_b, bp = start_fake(work, ["west"])
        procs += [p_east, p_a, p_b]
        east = FakeCluster("east", 0, "network-east", "192.0.2.10", lp["east"])
        a = FakeCluster("west", 1, "network-west", "198.51.100.10", ap["west"])
        b = FakeCluster("west", 1, "network-west", "198.51.100.10", bp["west"])
        # the same writes in the same order: the same resourceVersions, other content
        for c, vip in ((a, "10.96.50.1"), (b, "10.96.50.2")):
            c.apply([ns("istio-system", {"topology.istio.io/network": c.net}), ns(NS), gateway(c.net, c.gw),
                     svc(NS, "moved", vip, {"istio.io/global": "true"}), slice_(NS, "moved", ["10.1.50.1"])])
        check(fake_get(ap["west"], f"/api/v1/namespaces/{NS}/services/moved")["metadata"]["resourceVersion"]
              == fake_get(bp["west"], f"/api/v1/namespaces/{NS}/services/moved")["metadata"]["resourceVersion"],
              "the two west API servers hold 'moved' at the same resourceVersion")
        secret = remote_secret({"west": a.port, "dead": silent, "gone": closed_port()})
        east.initial([secret])
        kc = os.path.join(work, "east.kubeconfig")
        open(kc, "w").write(kubeconfig(east.port))
        proc = subprocess.Popen([binary, "--kubeconfig", kc, "--cluster-id", "east", "--xds-listen", "127.0.0.1:0",
                                 "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20", "--sync-warn-after", "2",
                                 "--stale-after", "600"], stdout=log, stderr=log)
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts with two unreachable remotes")
        if not p:
            return
        _, dport = p
        st = wait_for(lambda: get(dport, "/ready")[0] == 200, 20)
        check(bool(st), f"/ready is 200 although remotes dead and gone never sync ({get(dport, '/ready')})")

        def clusterz():
            return {c["id"]: c for c in get_json(dport, "/debug/clusterz") or []}
        cz = wait_for(lambda: (lambda z: z if "problem" in z.get("dead", {}) and "problem" in z.get("gone", {})
                               else None)(clusterz()), 15) or clusterz()
        dead, gone = cz.get("dead", {}), cz.get("gone", {})
        check(dead.get("state") == "syncing" and "not synced after" in dead.get("problem", "")
              and "has not answered" in dead.get("problem", "") and "pods" in dead.get("pendingLists", ""),
              f"clusterz says why dead (accepts, never answers) has not synced ({dead.get('problem')})")
        check(gone.get("state") == "syncing" and "not synced after" in gone.get("problem", "")
              and gone.get("lastError"), f"clusterz gives gone's last error ({gone.get('lastError')})")
        check(cz.get("east", {}).get("local") is True and cz.get("east", {}).get("state") == "synced",
              "the local cluster is marked local and synced")
        log.seek(0)
        text = log.read()
        check("cluster dead: not synced after" in text and "does not gate readiness" in text,
              "the log says which remote is slow, why, and that it does not gate readiness")
        m = metrics(dport)
        check(m.get('meshfed_cluster_state{cluster="dead",state="syncing"}') == 1
              and m.get("meshfed_cluster_sync_slow_total", 0) >= 2,
              f"/metrics shows the remotes' state and counts slow syncs ({m.get('meshfed_cluster_sync_slow_total')})")

        def vip_of_moved():
            d = get_json(dport, "/debug/config_dump?cluster=east&network=network-east") or {}
            svc_ = d.get("resources", {}).get(f"{NS}/moved.{NS}.svc.cluster.local", {}).get("service", {})
            return [x.get("address") for x in svc_.get("addresses", [])]
        check(wait_for(lambda: "10.96.50.1" in vip_of_moved(), 20), f"west's 'moved' served from A ({vip_of_moved()})")
        west = wait_for(lambda: clusterz().get("west", {}).get("absent") and clusterz()["west"], 10) or {}
        check(west.get("absent") == ["gateways"] and west.get("state") == "synced",
              f"clusterz shows that west does not serve the Gateway API, and west is synced "
              f"({west.get('absent')}, {west.get('state')})")
        secret["data"] = remote_secret({"west": b.port, "dead": silent})["data"]
        post(east.port, "/fake/apply", secret)
        check(wait_for(lambda: vip_of_moved() == ["10.96.50.2"], 20),
              f"re-pointed at another server, west is listed from scratch: B's address is served ({vip_of_moved()})")
        log.seek(0)
        text = log.read()
        check("its informers start from scratch" in text, "the log says west starts from scratch and why")
        gone_lines = [x for x in text.splitlines() if "warn" in x and "cluster gone: list " in x
                      and "Couldn't connect" in x and "not synced" not in x]
        per_res = {x.split("cluster gone: list ")[1].split(":")[0] for x in gone_lines}
        remote_res = {"namespaces", "services", "endpointslices", "pods", "nodes", "gateways",
                      "authorizationpolicies", "peerauthentications"}
        check(per_res == remote_res and len(gone_lines) == len(remote_res),
              f"gone's refused connections: one line per resource, none hidden by another "
              f"({len(gone_lines)} lines for {sorted(per_res)}; errors counted "
              f"{metrics(dport).get('meshfed_kube_errors_total')})")
        check(wait_for(lambda: "gone" not in clusterz(), 10), "a cluster the Secret no longer names is removed")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        check(rc == 0, f"SIGTERM exits cleanly (rc={rc})")
    finally:
        srv.close()
        for p_ in ([proc] if proc else []) + procs:
            if p_.poll() is None:
                p_.kill()
                p_.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed log (bad remotes, tail) ---\n" + "".join(log.readlines()[-40:]))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        if os.environ.get("E2E_ONLY") != "bad_remotes":
            main()
        bad_remotes(sys.argv[1])
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        FAILURES.append(repr(e))
    summary()
    sys.exit(1 if FAILURES else 0)
