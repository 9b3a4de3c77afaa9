#!/usr/bin/python3
"""replicas.py - what each meshfed replica costs the Kubernetes API servers.

For 1, 2 and 3 replicas in turn: two fake API servers (tests/fakekube, east
local and west named by a remote Secret) holding the same objects, then the
replicas started together, each with its own token for east (so east can
tell them apart). Measured from the API servers' own counters (requests and
response bytes by verb and resource, headers and bodies before TLS):
  - initial sync: lists, bytes listed, watches opened, seconds until every
    replica has every cluster synced, each replica's CPU seconds and RSS;
  - idle: requests per minute with nothing changing (the Lease: the leader
    renews, the others read it; status writes), over --idle seconds;
  - changes: --changes EndpointSlice and Pod updates in west, bytes of watch
    events served per change.
Prints a table; not a pass/fail test.

Usage: bench/replicas.py [--binary build/meshfed] [--replicas 1,2,3]
                         [--services 200] [--pods 10] [--idle 30] [--changes 100]
"""
import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import e2elib  # noqa: E402
from e2elib import (gateway, get, get_json, kubeconfig, log_ports, make_certs, ns, pods, post,  # noqa: E402
                    remote_secret, slice_, start_fake, stop, svc, wait_for)


def state(port):
    ctx = ssl.create_default_context(cafile=e2elib.CA)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/fake/state", context=ctx, timeout=30) as r:
        return json.loads(r.read())


def objects(net, gw_ip, services, npods, base):
    out = [ns("istio-system", {"topology.istio.io/network": net}), ns("apps"), gateway(net, gw_ip)]
    for i in range(services):
        name = f"svc-{i}"
        ips = [f"10.{base}.{(i * npods + j) // 250}.{(i * npods + j) % 250 + 1}" for j in range(npods)]
        labels = {"istio.io/global": "true"} if i % 2 == 0 else {}
        out += [svc("apps", name, f"10.96.{i // 250}.{i % 250 + 1}", labels), slice_("apps", name, ips)]
        out += pods("apps", name, ips)
    return out


def proc_cost(pid):
    """(CPU seconds, RSS in MiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def sums(st, pred):
    """(requests, bytes) over the verb-resource keys pred accepts."""
    return (sum(v for k, v in st["requests"].items() if pred(k)),
            sum(v for k, v in st["bytes"].items() if pred(k)))


def minus(a, b):
    return {"requests": {k: v - b["requests"].get(k, 0) for k, v in a["requests"].items()},
            "bytes": {k: v - b["bytes"].get(k, 0) for k, v in a["bytes"].items()}}


def both(sts):
    """The two clusters' counters added up."""
    out = {"requests": {}, "bytes": {}}
    for st in sts:
        for d in ("requests", "bytes"):
            for k, v in st[d].items():
                out[d][k] = out[d].get(k, 0) + v
    return out


def run(args, work, n):
    local, lp = start_fake(work, ["east"])
    remote, rp = start_fake(work, ["west"])
    east, west = lp["east"], rp["west"]
    procs = []
    try:
        names = [f"replica-{i}" for i in range(n)]
        post(east, "/fake/token", {"tokens": ["test-token"] + [r + "-token" for r in names]})
        post(east, "/fake/apply", objects("network-east", "192.0.2.10", args.services, args.pods, 10)
             + [remote_secret({"west": west})])
        west_objs = objects("network-west", "198.51.100.10", args.services, args.pods, 20)
        post(west, "/fake/apply", west_objs)
        t0 = time.monotonic()
        for r in names:
            kc = os.path.join(work, r + ".kubeconfig")
            open(kc, "w").write(kubeconfig(east, r + "-token"))
            log = open(os.path.join(work, r + ".log"), "w+")
            p = subprocess.Popen([args.binary, "--kubeconfig", kc, "--cluster-id", "east",
                                  "--xds-listen", "127.0.0.1:0", "--debug-listen", "127.0.0.1:0"],
                                 stdout=log, stderr=log, env=dict(os.environ, POD_NAME=r))
            procs.append((p, log))
        ports = [wait_for(lambda: log_ports(log), 60) for _, log in procs]

        def synced(dport):
            cs = get_json(dport, "/debug/clusterz") or []
            return get(dport, "/ready")[0] == 200 and len(cs) == 2 and all(c["state"] == "synced" for c in cs)
        ok = all(p and wait_for(lambda: synced(p[1]), 300) for p in ports)
        sync_s = time.monotonic() - t0
        if not ok:
            raise RuntimeError("replicas did not sync; logs in " + work)
        time.sleep(2)  # the leader's first status writes
        s0 = [state(east), state(west)]
        costs = [proc_cost(p.pid) for p, _ in procs]
        time.sleep(args.idle)
        s1 = [state(east), state(west)]
        idle = minus(both(s1), both(s0))
        # changes: one EndpointSlice and one Pod each, in west
        svcs = args.services
        for i in range(args.changes):
            k = i % svcs
            ips = [f"10.30.{k // 250}.{k % 250 + 1}"]
            post(west, "/fake/apply", [slice_("apps", f"svc-{k}", ips)] + pods("apps", f"svc-{k}", ips))

        def watched():
            return sums(both([state(east), state(west)]), lambda k: k.startswith("watch "))[1]
        last, stable = watched(), 0
        while stable < 4:  # every event delivered: watch bytes still for 2 s
            time.sleep(0.5)
            now = watched()
            stable = stable + 1 if now == last else 0
            last = now
        s2 = [state(east), state(west)]
        changes = minus(both(s2), both(s1))
        init = both(s0)
        empty = {"requests": {}, "bytes": {}}
        per_token = {r: minus(s1[0]["tokens"].get(r + "-token", empty), s0[0]["tokens"].get(r + "-token", empty))
                     for r in names}
        return {"n": n, "sync_s": sync_s, "init": init, "idle": idle, "changes": changes,
                "watches_open": s0[0]["watches"] + s0[1]["watches"], "costs": costs,
                "objects": len(west_objs), "per_token": per_token,
                "leaders": [p is not None and e2elib.metric(p[1], "meshfed_leader") for p in ports]}
    finally:
        for p, _ in procs:
            stop(p)
        for p_ in (local, remote):
            p_.kill()
            p_.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "meshfed"))
    ap.add_argument("--replicas", default="1,2,3")
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--changes", type=int, default=100)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="meshfed-bench-replicas-")
    make_certs(work)
    results = []
    try:
        for n in [int(x) for x in args.replicas.split(",")]:
            r = run(args, work, n)
            results.append(r)
            print(f"# {n} replica(s): synced in {r['sync_s']:.1f} s, leaders {r['leaders']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    objs = results[0]["objects"] if results else 0
    print(f"\nobjects per cluster: {objs} ({args.services} Services, as many EndpointSlices, "
          f"{args.services * args.pods} Pods, namespaces, a gateway), 2 clusters")
    print("totals over both API servers; 'per replica' = total / replicas\n")
    hdr = ("replicas", "sync s", "lists", "MB listed", "open watches", "MB/replica", "idle req/min",
           "watch renewals/min", "lease req/min", "status writes/min", "watch B/change", "B/change/replica",
           "CPU s/replica", "RSS MiB/replica")
    print(" | ".join(hdr))
    for r in results:
        n = r["n"]
        lists, lbytes = sums(r["init"], lambda k: k.startswith("list "))
        _, wb = sums(r["init"], lambda k: k.startswith("watch "))
        iq, _ = sums(r["idle"], lambda k: True)
        wq, _ = sums(r["idle"], lambda k: k.startswith("watch "))
        lq, _ = sums(r["idle"], lambda k: k.endswith(" leases"))
        sq, _ = sums(r["idle"], lambda k: k.endswith("/status"))
        _, cb = sums(r["changes"], lambda k: k.startswith("watch "))
        per_min = 60.0 / args.idle
        cpu = sum(c[0] for c in r["costs"]) / n
        rss = sum(c[1] for c in r["costs"]) / n
        print(" | ".join(str(x) for x in (
            n, f"{r['sync_s']:.1f}", lists, f"{lbytes / 1e6:.2f}", r["watches_open"],
            f"{(lbytes + wb) / 1e6 / n:.2f}", f"{iq * per_min:.0f}", f"{wq * per_min:.0f}", f"{lq * per_min:.0f}",
            f"{sq * per_min:.0f}", f"{cb / args.changes:.0f}", f"{cb / args.changes / n:.0f}",
            f"{cpu:.2f}", f"{rss:.0f}")))
    if results:
        last = results[-1]
        print(f"\nwith {last['n']} replicas, each replica's requests per minute to east while idle "
              "(leader marked *):")
        for (name, st), lead in zip(last["per_token"].items(), last["leaders"]):
            ks = sorted((k, v) for k, v in st["requests"].items() if v)
            print(f"  {name}{' *' if lead == 1 else ''}: " +
                  ", ".join(f"{k} {v * 60.0 / args.idle:.0f}" for k, v in ks))


if __name__ == "__main__":
    main()
