#!/usr/bin/python3
"""End to end with an independent xDS client: @grpc/grpc-js-xds (Node.js)
resolving xds:///echo.demo.svc.cluster.local:7070 through meshfed's
LDS/RDS/CDS/EDS over ADS.

Two demo clusters: east (network-east) whose echo endpoint is server A on
127.0.0.1, and west (network-west) whose east-west gateway has the LB IP
127.0.0.2 and a "tls-hbone" port that is server B's port, so from east
"west through its gateway" is server B. echo is global with
trafficDistribution PreferClose. The client (node metadata CLUSTER_ID east)
must stay on A, fail over to B when A's endpoint is not ready, come back
when it is ready again, and without trafficDistribution reach both.
Then the same first check with python3-grpcio's xDS support, if present.
All of it twice: with the two clusters as demo files, then served by fake
API servers (tests/fakekube; east local, west declared by a remote Secret),
so that the path from list/watch to EDS is the one a real cluster takes.

Installs the npm packages of tests/grpcxds into CACHE_DIR when missing;
exits 77 (skipped) when node or the npm registry is not available.
Usage: e2e_grpcxds.py MESHFED_BINARY CACHE_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from e2elib import (FAILURES, check, kubeconfig, log_ports, make_certs, post,  # noqa: E402
                    remote_secret, start_fake, waiter)

wait_for = waiter(30.0)
HOST = "echo.demo.svc.cluster.local"
TARGET = f"xds:///{HOST}:7070"
SKIP = 77


def npm_ready(cache):
    """The test's node_modules in cache, installed if missing; False to skip."""
    if not shutil.which("node") or not shutil.which("npm"):
        print("skip: node/npm not installed")
        return False
    os.makedirs(cache, exist_ok=True)
    for f in ("package.json", "echo.proto", "server.js", "client.js"):
        shutil.copy(os.path.join(HERE, "grpcxds", f), os.path.join(cache, f))
    if os.path.isdir(os.path.join(cache, "node_modules", "@grpc", "grpc-js-xds")):
        return True
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=cache,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
    except subprocess.TimeoutExpired:
        print("skip: npm install timed out (no registry?)")
        return False
    if r.returncode != 0:
        print("skip: npm install failed:\n" + r.stdout.decode(errors="replace")[-2000:])
        return False
    return True


def cluster_yaml(network, gw_ip, gw_port, ep_ip, ep_port, ready, td):
    tdl = "  trafficDistribution: PreferClose\n" if td else ""
    return f"""apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
  labels:
    topology.istio.io/network: {network}
---
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwest
  namespace: istio-system
  labels:
    topology.istio.io/network: {network}
spec:
  type: LoadBalancer
  clusterIP: 10.96.100.1
  ports:
  - name: tls-hbone
    port: {gw_port}
    targetPort: 15008
status:
  loadBalancer:
    ingress:
    - ip: {gw_ip}
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: demo
  labels:
    istio.io/global: 'true'
  creationTimestamp: '2026-01-01T00:00:00Z'
spec:
  type: ClusterIP
  clusterIP: 10.96.0.70
  ports:
  - name: grpc
    port: 7070
    targetPort: {ep_port}
{tdl}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-x1
  namespace: demo
  labels:
    kubernetes.io/service-name: echo
addressType: IPv4
ports:
- name: grpc
  port: {ep_port}
endpoints:
- addresses:
  - {ep_ip}
  conditions:
    ready: {"true" if ready else "false"}
"""


def cluster_texts(state, pa, pb):
    """Both clusters' manifests: east's endpoint is server A (port pa), west's
    gateway forwards to server B (port pb)."""
    return {
        "east": cluster_yaml("network-east", "127.0.0.4", 15008, "127.0.0.1", pa,
                             state["east_ready"], state["td"]),
        "west": cluster_yaml("network-west", "127.0.0.2", pb, "10.20.0.1", 7070,
                             True, state["td"]),
    }


class Demo:
    """The demo directory; rewrites a cluster's manifest atomically."""

    def __init__(self, root, pa, pb):
        self.root, self.pa, self.pb = root, pa, pb
        self.state = {"east_ready": True, "td": True}
        for c in ("east", "west"):
            os.makedirs(os.path.join(root, c))
        self.write()

    def write(self, **kw):
        self.state.update(kw)
        for c, text in cluster_texts(self.state, self.pa, self.pb).items():
            path = os.path.join(self.root, c, "cluster.yaml")
            if os.path.exists(path) and open(path).read() == text:
                continue
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)

    def args(self):
        return ["--demo", self.root]

    def close(self):
        pass


class Fake:
    """The same two clusters on fake API servers; write() applies what changed."""

    def __init__(self, work, pa, pb):
        import yaml  # Debian python3-yaml
        self.yaml = yaml
        self.pa, self.pb = pa, pb
        self.state = {"east_ready": True, "td": True}
        self.applied = {}
        make_certs(work)
        self.proc, self.ports = start_fake(work, ["east", "west"])
        self.kubeconfig = os.path.join(work, "east.kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(kubeconfig(self.ports["east"]))
        self.write()
        post(self.ports["east"], "/fake/apply", [remote_secret({"west": self.ports["west"]})])

    def write(self, **kw):
        self.state.update(kw)
        for c, text in cluster_texts(self.state, self.pa, self.pb).items():
            if self.applied.get(c) != text:
                post(self.ports[c], "/fake/apply", list(self.yaml.safe_load_all(text)))
                self.applied[c] = text

    def args(self):
        return ["--kubeconfig", self.kubeconfig, "--cluster-id", "east"]

    def close(self):
        self.proc.kill()
        self.proc.wait()


class Client:
    """The grpc-js-xds client process; its results as a growing list."""

    def __init__(self, cache, bootstrap, log):
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=bootstrap)
        self.p = subprocess.Popen(["node", "client.js", TARGET, "50"], cwd=cache, env=env,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
        self.lines = []
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.p.stdout:
            self.lines.append(line.strip())

    def last(self, n):
        return self.lines[-n:] if len(self.lines) >= n else []

    def all_from(self, name, n=10):
        tail = self.last(n)
        return bool(tail) and all(line == f"OK {name}" for line in tail)

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=10)


def bootstrap_file(work, xds_port):
    b = {
        "xds_servers": [{"server_uri": f"127.0.0.1:{xds_port}",
                         "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": {"id": "sidecar~127.0.0.1~echo-client.demo~demo.svc.cluster.local",
                 "metadata": {"CLUSTER_ID": "east", "NETWORK": "network-east"},
                 "locality": {}},  # grpc-js-xds requires the field
    }
    path = os.path.join(work, "bootstrap.json")
    with open(path, "w") as f:
        json.dump(b, f)
    return path


def python_grpcio_check(work, bootstrap):
    """python3-grpcio's xDS resolver (grpc core) against meshfed, if any."""
    code = f"""
import os, sys
import grpc
ch = grpc.insecure_channel({TARGET!r})
try:
    grpc.channel_ready_future(ch).result(timeout=15)
except Exception as e:
    print("NOTREADY", type(e).__name__, e)
    sys.exit(3)
# Who with an empty request: the reply's field 1 is the cluster name
who = ch.unary_unary("/meshfed.test.Echo/Who", request_serializer=lambda b: b,
                     response_deserializer=lambda b: b)
names = set()
for _ in range(10):
    r = who(b"", timeout=5)
    names.add(r[2:2 + r[1]].decode())
print("NAMES", ",".join(sorted(names)))
"""
    env = dict(os.environ, GRPC_XDS_BOOTSTRAP=bootstrap)
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", code], cwd=work, env=env, timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired:
        print("note: python3-grpcio xDS check timed out")
        return
    if "No module named 'grpc'" in r.stdout:
        print("note: python3-grpcio not installed, its xDS check skipped")
        return
    m = re.search(r"NAMES (\S+)", r.stdout)
    check(bool(m) and m.group(1) == "east",
          "python3-grpcio (grpc core xDS resolver) reaches only east: " + r.stdout[-600:])


def run(binary, cache, work, mode):
    print(f"--- clusters from {mode} ---")
    srv_log = open(os.path.join(work, "servers.log"), "a+")
    servers = subprocess.Popen(["node", "server.js", "127.0.0.1:0=east", "127.0.0.2:0=west"],
                               cwd=cache, stdout=subprocess.PIPE, stderr=srv_log, text=True)
    procs, closers = [servers], []
    try:
        line = servers.stdout.readline()
        if not check(line.startswith("{"), "test gRPC servers start"):
            return
        ports = json.loads(line)
        if mode == "demo":
            demo = Demo(os.path.join(work, "demo"), ports["east"], ports["west"])
        else:
            demo = Fake(work, ports["east"], ports["west"])
        closers.append(demo.close)
        log = open(os.path.join(work, "meshfed.log"), "a+")
        mf = subprocess.Popen([binary] + demo.args() + ["--xds-listen", "127.0.0.1:0",
                                                        "--debug-listen", "127.0.0.1:0",
                                                        "--debounce-ms", "20"],
                              stdout=log, stderr=log)
        procs.append(mf)

        port = wait_for(lambda: (log_ports(log) or (None,))[0], 15)
        if not check(bool(port), "meshfed starts and prints its ports"):
            return
        boot = bootstrap_file(work, port)
        python_grpcio_check(work, boot)
        clog = open(os.path.join(work, "client.log"), "a+")
        client = Client(cache, boot, clog)
        procs.append(client.p)
        try:
            scenario(client, demo)
        finally:
            client.stop()
            procs.remove(client.p)
            tail = client.lines[-5:]
            print("client's last results:", tail)
        mf.send_signal(signal.SIGTERM)
        check(mf.wait(timeout=20) == 0, "meshfed exits cleanly")
        procs.remove(mf)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for close in closers:
            close()
        if FAILURES:
            for name in ("meshfed.log", "client.log", "servers.log"):
                path = os.path.join(work, name)
                if os.path.exists(path):
                    print(f"--- {name} ---\n" + open(path).read()[-6000:])


def scenario(client, demo):
    check(wait_for(lambda: client.all_from("east", 20), 30),
          "PreferClose: the client reaches east's own endpoint only")
    n = len(client.lines)
    time.sleep(1.5)
    check(all(line == "OK east" for line in client.lines[n:]) and len(client.lines) > n + 5,
          "and stays local")
    demo.write(east_ready=False)
    check(wait_for(lambda: client.all_from("west", 10), 30),
          "east not ready: fails over to west through its gateway")
    demo.write(east_ready=True)
    check(wait_for(lambda: client.all_from("east", 10), 30),
          "east ready again: comes back to east")
    demo.write(td=False)

    def both():
        tail = client.last(40)
        return "OK east" in tail and "OK west" in tail
    ok = wait_for(both, 30)
    time.sleep(2)
    tail = client.last(100)
    east, west = tail.count("OK east"), tail.count("OK west")
    check(ok and east >= 10 and west >= 10,
          f"without trafficDistribution: both clusters keep getting RPCs "
          f"(last {len(tail)}: east {east}, west {west})")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary, cache = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if not npm_ready(cache):
        return SKIP
    work = tempfile.mkdtemp(prefix="meshfed-grpcxds-")
    try:
        for mode in ("demo", "fake API servers"):
            wd = os.path.join(work, mode.split()[0])
            os.makedirs(wd)
            run(binary, cache, wd, mode)
    finally:
        if not FAILURES:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'FAILED' if FAILURES else 'PASSED'}: {len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
