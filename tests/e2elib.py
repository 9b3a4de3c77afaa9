"""e2elib.py - helpers shared by the end-to-end tests (tests/e2e_*.py).

Checks and their closing count, polling, HTTP to meshfed's debug endpoint and
to the fake API servers, meshfed's ports from its log, a test CA with openssl,
kubeconfig and remote Secret builders, starting tests/fakekube processes, and
the Kubernetes objects more than one test builds.
"""
import base64
import json
import os
import re
import socket
import ssl
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PASSED, FAILURES = [], []
CA = None  # the test CA's certificate, set by make_certs


# ---------- checks ----------

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    (PASSED if cond else FAILURES).append(what)
    return cond


def summary():
    print(f"checks: {len(PASSED)} passed, {len(FAILURES)} failed")


def wait_for(fn, timeout=20.0, interval=0.1):
    """fn's first true value within timeout seconds, else its last value."""
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return fn()


def waiter(default_timeout, interval=0.1):
    """wait_for with a test's own default timeout and polling interval."""
    def wait(fn, timeout=default_timeout):
        return wait_for(fn, timeout, interval)
    return wait


def log_ports(log):
    """(xDS port, debug port) from meshfed's log file object, or None. The
    file must be opened in append mode ("a+"): the child writes through the
    same open file, and seeking here would otherwise move its writes."""
    log.seek(0)
    m = re.search(r"serving xDS on port (\d+), debug on port (\d+)", log.read())
    return m and (int(m.group(1)), int(m.group(2)))


def stop(proc, timeout=20):
    """SIGTERM, then SIGKILL if the process has not exited after timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------- HTTP ----------

def get(port, path):
    """(status, body) of a plain HTTP GET on 127.0.0.1; (0, error) when unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def get_json(port, path):
    st, body = get(port, path)
    return json.loads(body) if st == 200 else None


def metrics(port):
    """meshfed's /metrics as {name: value}."""
    st, body = get(port, "/metrics")
    out = {}
    for line in body.splitlines() if st == 200 else []:
        m = re.match(r"^(\S+) (\S+)$", line)
        if m and not line.startswith("#"):
            out[m.group(1)] = float(m.group(2))
    return out


def metric(port, name):
    return metrics(port).get(name)


class TrickleFlood(threading.Thread):
    """n connections to 127.0.0.1:port from source, each sending one byte of
    a request that never ends every interval seconds (a slowloris), reopened
    when the server closes them if reconnect; for at most seconds. Bounded:
    stop() (or the time limit) closes them all. Counts opened and cut."""

    def __init__(self, port, n=300, seconds=20.0, source="127.0.0.1", reconnect=True, interval=0.5):
        super().__init__(daemon=True)
        self.port, self.n, self.seconds, self.source = port, n, seconds, source
        self.reconnect, self.interval = reconnect, interval
        self.opened = self.cut = 0
        self.halt = threading.Event()

    def _open(self):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((self.source, 0))
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        self.opened += 1
        return s

    def run(self):
        socks = [self._open() for _ in range(self.n)]
        payload = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100000
        pos = [0] * self.n
        end = time.time() + self.seconds
        while not self.halt.is_set() and time.time() < end:
            for i, s in enumerate(socks):
                if s is None:
                    if self.reconnect:
                        socks[i], pos[i] = self._open(), 0
                    continue
                try:
                    s.send(payload[pos[i]:pos[i] + 1])
                    pos[i] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    socks[i] = None
                    self.cut += 1
            self.halt.wait(self.interval)
        for s in socks:
            if s is not None:
                s.close()

    def stop(self):
        self.halt.set()
        self.join(timeout=10)


def probe(port, path="/healthz", timeout=1.0):
    """The status of GET path with a probe's short timeout; 0 when it got none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def post(port, path, body, token=None):
    """POSTs body as JSON to a fake API server (HTTPS, the test CA); the raw answer."""
    hdrs = {"Content-Type": "application/json"}
    if token:
        hdrs["Authorization"] = "Bearer " + token
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 method="POST", headers=hdrs)
    ctx = ssl.create_default_context(cafile=CA)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return r.read()


def fake_get(port, path):
    """A fake API server's JSON answer, or None on an HTTP error."""
    ctx = ssl.create_default_context(cafile=CA)
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}",
                                 headers={"Authorization": "Bearer test-token"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError:
        return None


# ---------- certificates, kubeconfig, fake API servers ----------

def make_certs(d):
    """A test CA and a server certificate for 127.0.0.1 in d; sets CA."""
    global CA
    CA = os.path.join(d, "ca.pem")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", os.path.join(d, "ca.key"), "-out", CA)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", os.path.join(d, "server.key"), "-out", os.path.join(d, "server.csr"))
    ext = os.path.join(d, "ext.cnf")
    open(ext, "w").write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", os.path.join(d, "server.csr"), "-CA", CA,
        "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", ext,
        "-out", os.path.join(d, "server.pem"))
    return CA


def kubeconfig(port, token="test-token"):
    ca = base64.b64encode(open(CA, "rb").read()).decode()
    return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                       "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                             "certificate-authority-data": ca}}],
                       "users": [{"name": "u", "user": {"token": token}}],
                       "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]})


def remote_secret(ports):
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "istio-remote-secrets", "namespace": "istio-system",
                         "labels": {"istio/multiCluster": "true"}},
            "data": {cid: base64.b64encode(kubeconfig(p).encode()).decode() for cid, p in ports.items()}}


def start_fake(d, clusters, initial_rv=1, absent=()):
    """A tests/fakekube process serving clusters with the certificate in d: (process, {cluster: port})."""
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "fakekube", "fakekube.py"),
                          "--cert", os.path.join(d, "server.pem"), "--key", os.path.join(d, "server.key"),
                          "--initial-rv", str(initial_rv)] + sum([["--cluster", c] for c in clusters], [])
                         + sum([["--absent", a] for a in absent], []),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    ports = dict(kv.split("=") for kv in line.split()[1:])
    return p, {k: int(v) for k, v in ports.items()}


# ---------- objects ----------

def ns(name, labels=None):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def svc(n, name, vip, labels=None, lb=None, port=80, pname="http"):
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": n, "labels": labels or {},
                      "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"clusterIP": vip, "clusterIPs": [vip],
                  "ports": [{"name": pname, "port": port, "targetPort": 8080 if port == 80 else port}]}}
    if lb:
        s["status"] = {"loadBalancer": {"ingress": [{"ip": lb}]}}
    return s


def gateway(net, ip):
    """The east-west gateway as a LoadBalancer Service labelled with its network."""
    return svc("istio-system", "istio-eastwest", "10.96.100.1",
               {"topology.istio.io/network": net}, lb=ip, port=15008, pname="tls-hbone")


def slice_(n, service, ips, ready=None):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service + "-1", "namespace": n,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True if ready is None else ready[i]},
                           "targetRef": {"kind": "Pod", "name": f"{service}-{i}", "namespace": n}}
                          for i, ip in enumerate(ips)]}


def pod(n, service, i, ip):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{service}-{i}", "namespace": n, "labels": {"app": service}},
            "spec": {"nodeName": "node-1", "serviceAccountName": service},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pods(n, service, ips):
    return [pod(n, service, i, ip) for i, ip in enumerate(ips)]
