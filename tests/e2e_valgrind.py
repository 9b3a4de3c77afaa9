#!/usr/bin/python3
"""End to end under valgrind: the real meshfed binary (built without
sanitizers) on the embedded demo, with a ztunnel-like client connected while
a manifest changes, the debug pages read, then SIGTERM. valgrind must report
no errors and no definite or indirect leaks (its exit code says so).
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
from e2elib import FAILURES, check, get, log_ports, summary, waiter  # noqa: E402

wait_for = waiter(60.0, interval=0.2)  # everything is slower under valgrind


def main():
    binary, src = sys.argv[1], sys.argv[2]
    if not shutil.which("valgrind"):
        print("SKIP: valgrind is not installed")
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="meshfed-vg-")
    demo = os.path.join(work, "examples")
    shutil.copytree(os.path.join(src, "examples"), demo)
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen(["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                             "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
                             "--num-callers=30", binary, "--demo", demo, "--xds-listen",
                             "127.0.0.1:0", "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20"],
                            stdout=log, stderr=log)
    zt = None
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts under valgrind")
        if not p:
            return
        xport, dport = p
        zt = ztunnel.Ztunnel(src, xport, "east", "network-east")
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
