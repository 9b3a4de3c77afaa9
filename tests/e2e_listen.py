#!/usr/bin/python3
"""End to end: an xDS listener that grpc core gave up on is noticed.

grpc core 1.51 stops accepting on a port for good once accept4() fails with
EMFILE. Two meshfed --demo processes are flooded with the same 300 raw TCP
connections to their xDS port: one runs with a file limit of 96 (soft and
hard, so it cannot raise it), the other with the machine's limit. The first
must say so within its stall time (15 s of a never-empty accept queue):
/ready and /healthz answer 503 naming the port, the gauge
meshfed_xds_listeners_stalled is 1 and the log has the reason. The second,
flooded the same way, must stay ready and healthy and keep serving xDS: the
check does not fire on a listener that is merely busy.
Usage: e2e_listen.py MESHFED_BINARY SOURCE_DIR
"""
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import FAILURES, check, get, log_ports, metric, stop, summary, waiter  # noqa: E402
import ztunnel  # noqa: E402

wait_for = waiter(30.0)
LOW_LIMIT = 96
FLOOD = 300


def start(binary, src, work, name, limit):
    log = open(os.path.join(work, f"{name}.log"), "a+")

    def lower():
        if limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    proc = subprocess.Popen([binary, "--demo", os.path.join(src, "examples"), "--xds-listen",
                             "127.0.0.1:0", "--debug-listen", "127.0.0.1:0", "--cluster-id",
                             "east"], stdout=log, stderr=log, preexec_fn=lower)
    return proc, log


def flood(port):
    """FLOOD connections to port, held open a moment, then closed."""
    socks = []
    for _ in range(FLOOD):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    time.sleep(2)
    for s in socks:
        s.close()


def main():
    binary, src = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-listen-")
    low, low_log = start(binary, src, work, "low", LOW_LIMIT)
    ok, ok_log = start(binary, src, work, "ok", 0)
    try:
        pl, po = wait_for(lambda: log_ports(low_log)), wait_for(lambda: log_ports(ok_log))
        if not check(bool(pl) and bool(po), "both meshfed processes start"):
            return
        for p in (pl, po):
            check(wait_for(lambda: get(p[1], "/ready")[0] == 200), f"meshfed on {p[0]} is ready")
        flood(pl[0])
        flood(po[0])
        low_log.seek(0)
        check("Too many open files" in low_log.read(),
              f"the flood ran meshfed with {LOW_LIMIT} files out of them (grpc's accept4 error)")

        def unready():
            st, body = get(pl[1], "/ready")
            return st == 503 and "stopped taking connections" in body and body
        body = wait_for(unready, timeout=45.0)
        check(bool(body), f"/ready of the starved meshfed fails naming the listener: {body!r}")
        st, body = get(pl[1], "/healthz")
        check(st == 503 and f"port {pl[0]}" in body, f"/healthz fails too, so it is restarted: {body!r}")
        check(metric(pl[1], "meshfed_xds_listeners_stalled") == 1.0,
              "meshfed_xds_listeners_stalled is 1")
        low_log.seek(0)
        check("takes no connections" in low_log.read(), "the log says why")
        # the other one, flooded alike and past its stall time, is fine
        check(get(po[1], "/ready")[0] == 200 and get(po[1], "/healthz")[0] == 200,
              "the meshfed with enough files stays ready and healthy after the same flood")
        check(metric(po[1], "meshfed_xds_listeners_stalled") == 0.0,
              "its meshfed_xds_listeners_stalled is 0")
        zt = ztunnel.Ztunnel(src, po[0], "east", "network-east")
        try:
            check(zt.wait(lambda s: len(s) > 5, 20), "and still serves a ztunnel its view")
        finally:
            zt.close()
    finally:
        stop(low, 10)
        stop(ok, 10)
        for name, f in (("low", low_log), ("ok", ok_log)):
            f.seek(0)
            text = f.read()
            if "AddressSanitizer" in text or "runtime error" in text:
                check(False, f"{name}: no sanitizer report")
                print(text[-3000:])
    summary()
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
