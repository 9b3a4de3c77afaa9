#!/usr/bin/python3
"""End to end under valgrind: the real meshfed binary (built without
sanitizers) on the embedded demo, with a ztunnel-like client connected while
a manifest changes, the debug pages read, then SIGTERM. Then against fake API
servers (a local cluster and a remote one from a Secret, with a ServiceScope
and a Gateway): lists, watches, a 410 relist, a malformed watch line, the
leader's status writes. valgrind must report no errors and no definite or
indirect leaks (its exit code says so).
Usage: e2e_valgrind.py MESHFED_BINARY SOURCE_DIR
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztunnel  # noqa: E402
from e2elib import (FAILURES, check, fake_get, gateway, get, kubeconfig, log_ports, make_certs,  # noqa: E402
                    ns, pods, post, remote_secret, slice_, start_fake, summary, svc, waiter)

wait_for = waiter(60.0, interval=0.2)  # everything is slower under valgrind


VALGRIND = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99", "--num-callers=30"]


def kube_phase(binary, src, work):
    """The watcher, the JSON parser and the decoders under valgrind."""
    make_certs(work)
    local, lp = start_fake(work, ["east"])
    remote, rp = start_fake(work, ["west"])
    east, west = lp["east"], rp["west"]
    scope = {"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceScope", "metadata": {"name": "s"},
             "spec": {"rules": [{"servicesSelector": {"matchLabels": {"istio.io/global": "true"}},
                                 "scope": "GLOBAL"}]}}
    post(east, "/fake/apply", [ns("istio-system", {"topology.istio.io/network": "net-east"}), ns("app"),
                               gateway("net-east", "192.0.2.1"), scope, remote_secret({"west": west}),
                               svc("app", "web", "10.96.0.10", {"istio.io/global": "true"}),
                               slice_("app", "web", ["10.1.0.1"])] + pods("app", "web", ["10.1.0.1"]))
    post(west, "/fake/apply", [ns("istio-system", {"topology.istio.io/network": "net-west"}), ns("app"),
                               gateway("net-west", "198.51.100.1"),
                               svc("app", "web", "10.96.0.10", {"istio.io/global": "true"}),
                               slice_("app", "web", ["10.2.0.1", "10.2.0.2"])]
         + pods("app", "web", ["10.2.0.1", "10.2.0.2"]))
    kc = os.path.join(work, "east.kubeconfig")
    open(kc, "w").write(kubeconfig(east))
    log = open(os.path.join(work, "meshfed-kube.log"), "a+")
    proc = subprocess.Popen(VALGRIND + [binary, "--kubeconfig", kc, "--cluster-id", "east", "--xds-listen",
                                        "127.0.0.1:0", "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20"],
                            stdout=log, stderr=log)
    zt = None
    sh = "net-west/SplitHorizonWorkload/istio-system/istio-eastwest/198.51.100.1/app/web.app.svc.cluster.local"
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "kube: meshfed starts under valgrind against the fake API servers")
        if not p:
            return
        zt = ztunnel.Ztunnel(src, p[0], "east", "net-east", reconnect=True)
        check(bool(zt.wait(lambda s: sh in s and s[sh].workload.capacity.value == 2, 90)),
              "kube: east's ztunnel reaches west's web through the gateway (capacity 2)")
        post(west, "/fake/malformed", {"line": "{not json"})
        post(west, "/fake/compact", {"disconnect": True})
        post(west, "/fake/apply", [slice_("app", "web", ["10.2.0.1"])])
        check(bool(zt.wait(lambda s: sh in s and s[sh].workload.capacity.value == 1, 90)),
              "kube: after a malformed line and a 410 relist, west's change arrives")
        st = wait_for(lambda: ((fake_get(east, "/apis/meshfed.io/v1alpha1/servicescopes/s") or {})
                               .get("status") or {}).get("conditions"), 90)
        check(bool(st), "kube: the leader writes ServiceScope status")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        check(rc == 0, f"kube: valgrind: no errors, no leaks, clean exit (rc={rc})")
    finally:
        if zt:
            zt.close()
        for p_ in (proc, local, remote):
            if p_.poll() is None:
                p_.kill()
                p_.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed/valgrind kube log (tail) ---\n" + "".join(log.readlines()[-80:]))


def main():
    binary, src = sys.argv[1], sys.argv[2]
    if not shutil.which("valgrind"):
        print("SKIP: valgrind is not installed")
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="meshfed-vg-")
    demo = os.path.join(work, "examples")
    shutil.copytree(os.path.join(src, "examples"), demo)
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen(VALGRIND + [binary, "--demo", demo, "--xds-listen", "127.0.0.1:0",
                                        "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20"],
                            stdout=log, stderr=log)
    zt = None
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts under valgrind")
        if not p:
            return
        xport, dport = p
        zt = ztunnel.Ztunnel(src, xport, "east", "network-east", reconnect=True)
        check(bool(zt.wait(lambda s: "bookinfo/reviews.bookinfo.svc.cluster.local" in s, 60)),
              "a ztunnel client gets east's view")
        path = os.path.join(demo, "east", "cluster.yaml")
        text = open(path).read().replace("    tier: backend\n",
                                         "    tier: backend\n    istio.io/global: 'true'\n", 1)
        open(path, "w").write(text)
        check(bool(zt.wait(lambda s: any("/SplitHorizonWorkload/" in k for k in s), 60)),
              "a pushed change reaches it")
        for page in ("/metrics", "/debug/clusterz", "/debug/servicescopez",
                     "/debug/endpointz?service=bookinfo/reviews",
                     "/debug/config_dump?cluster=west&network=network-west", "/debug/syncz"):
            check(get(dport, page)[0] == 200, f"{page} answers")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        check(rc == 0, f"valgrind: no errors, no leaks, clean exit (rc={rc}; 99 = valgrind found something)")
        kube_phase(binary, src, work)
    finally:
        if zt:
            zt.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed/valgrind log (tail) ---\n" + "".join(log.readlines()[-80:]))
        shutil.rmtree(work, ignore_errors=True)
    summary()


if __name__ == "__main__":
    main()
    sys.exit(1 if FAILURES else 0)
