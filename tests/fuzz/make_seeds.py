#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ (run from anywhere).

Text seeds come from tests/data/decode/ and examples/; xDS request seeds are
encoded here by hand (a minimal protobuf writer: no generated python code
needed) in the framing fuzz_xds_request.c reads: a flags byte, then
messages with 2-byte big-endian lengths.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CORPUS = os.path.join(HERE, "corpus")
DATA = os.path.join(ROOT, "tests", "data", "decode")
EX = os.path.join(ROOT, "examples")


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(p):
    with open(p, "rb") as f:
        return f.read()


# ---- fuzz_decode: kind byte + JSON ----
KINDS = {"namespace.json": 0, "service.json": 1, "service-headless.json": 1,
         "service-eastwest.json": 1, "endpointslice.json": 2, "pod.json": 3,
         "pod-terminating.json": 3, "node.json": 4}
for f, k in KINDS.items():
    put("fuzz_decode", f, bytes([k]) + read(os.path.join(DATA, f)))
SCOPE = (b'{"apiVersion":"meshfed.io/v1alpha1","kind":"ServiceScope","metadata":{"name":"default"},'
         b'"spec":{"rules":[{"namespaceSelector":{"matchLabels":{"mesh":"global"}},'
         b'"servicesSelector":{"matchExpressions":[{"key":"tier","operator":"In","values":["frontend","api"]}]},'
         b'"scope":"GLOBAL"},{"servicesSelector":{"matchLabels":{"exported":"true"}},"scope":"GLOBAL"},'
         b'{"namespaceSelector":{"matchExpressions":[{"key":"gone","operator":"DoesNotExist"}]},"scope":"LOCAL"}]}}')
put("fuzz_decode", "servicescope.json", b"\x05" + SCOPE)
put("fuzz_decode", "meshconfig.json", b"\x06" + b'{"serviceScopeConfigs":[{"servicesSelector":'
    b'{"matchExpressions":[{"key":"istio.io/global","operator":"In","values":["true"]}]},"scope":"GLOBAL"},'
    b'{"namespaceSelector":{"matchLabels":{"team":"payments"}},"scope":"LOCAL"}]}')

# ---- fuzz_manifest: YAML/JSON text ----
for f in ("multi.yaml", "malformed.yaml", "servicescope.yaml", "service.json", "pod.json"):
    put("fuzz_manifest", f, read(os.path.join(DATA, f)))
for c in sorted(os.listdir(EX)):
    for f in sorted(os.listdir(os.path.join(EX, c))):
        put("fuzz_manifest", c + "-" + f, read(os.path.join(EX, c, f)))

# ---- fuzz_kubeconfig ----
KC = """apiVersion: v1
kind: Config
current-context: east
clusters:
- name: east-cluster
  cluster:
    server: https://east.example:6443
    certificate-authority-data: aGVsbG8gY2E=
    tls-server-name: kube.test
- name: west-cluster
  cluster:
    server: https://west.example
    insecure-skip-tls-verify: true
users:
- name: east-user
  user:
    token: s3cret
- name: west-user
  user:
    tokenFile: /var/run/token
    client-certificate-data: Y2VydA==
    client-key: /k.pem
- name: exec-user
  user:
    exec:
      command: aws
contexts:
- name: east
  context: {cluster: east-cluster, user: east-user}
- name: west
  context: {cluster: west-cluster, user: west-user}
- name: ex
  context: {cluster: west-cluster, user: exec-user}
"""
put("fuzz_kubeconfig", "good", KC)
put("fuzz_kubeconfig", "west", "#west\n" + KC)
put("fuzz_kubeconfig", "exec", "#ex\n" + KC)
put("fuzz_kubeconfig", "json", '{"apiVersion":"v1","kind":"Config","current-context":"a",'
    '"clusters":[{"name":"c","cluster":{"server":"https://1.2.3.4","certificate-authority-data":"Zm9vYmFy"}}],'
    '"users":[{"name":"u","user":{"client-certificate-data":"Y2VydA==","client-key-data":"a2V5"}}],'
    '"contexts":[{"name":"a","context":{"cluster":"c","user":"u"}}]}')

# ---- fuzz_selector: see the format in fuzz_selector.c ----
def s(x):
    x = x.encode()
    return bytes([len(x)]) + x
put("fuzz_selector", "label", bytes([1, 0]) + s("app") + s("web") + bytes([1]) + s("app") + s("web"))
put("fuzz_selector", "in", bytes([2, 1]) + s("tier") + bytes([2]) + s("frontend") + s("api")
    + bytes([0]) + s("istio.io/global") + s("true") + bytes([2]) + s("tier") + s("api")
    + s("istio.io/global") + s("true"))
put("fuzz_selector", "exists", bytes([3, 3]) + s("gone") + bytes([0, 1]) + bytes([2]) + s("env")
    + bytes([1]) + s("prod") + bytes([4]) + s("x.io/y") + bytes([0, 0]) + bytes([1]) + s("env") + s("dev"))
put("fuzz_selector", "bad", bytes([2, 0]) + s("-bad key") + s("v") + bytes([1]) + s("k") + bytes([0])
    + bytes([0]))

# ---- fuzz_model_events: ops (see step() in fuzz_model_events.c) ----
put("fuzz_model_events", "basic", bytes([
    2, 0, 0, 1,          # ns upsert c1 ns, 1 label
    0,                   # label istio.io/global=true
    4, 0, 0, 0x10, 1, 0, 0, 0,  # service s0 in c1
    6, 0, 0, 0x34, 1, 2, 3,     # slice s0 in c1, 3 endpoints
    8, 0, 0, 0x51, 0,           # pod
    15, 0, 0,                   # commit
    4, 1, 0, 0x00, 1, 0, 0,     # service s0 in c2
    6, 1, 0, 0x14, 0,           # slice in c2
    10, 0, 0, 2, 4, 0x2d,       # node with region/zone
    15, 0, 0,
    12, 0, 0, 2, 1, 0x41, 1, 1, 1,  # scope rules
    15, 0, 0,
    1, 1, 0,                    # remove c2
    15, 0, 0,
    0, 2, 0, 0x1b,              # add c3
    5, 0, 0, 0,                 # delete service
    15, 0, 0]))
put("fuzz_model_events", "churn", bytes([4, 0, 0, 0x90, 1, 0, 1, 15, 0, 0, 6, 1, 2, 0x36, 0, 1, 2,
                                          15, 0, 0, 14, 0, 1, 15, 0, 0, 13, 0, 2, 7, 1, 2, 0,
                                          15, 0, 0, 12, 0, 0, 1, 15, 0, 0]))

# ---- fuzz_xds_request ----
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def fld(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload

def st(num, text):
    return fld(num, 2, text.encode())

def value_str(v):             # google.protobuf.Value{string_value=3}
    return st(3, v)

def struct(d):                # Struct{map<string,Value> fields=1}
    out = b""
    for k, v in d.items():
        out += fld(1, 2, st(1, k) + fld(2, 2, value_str(v)))
    return out

def node(nid, md):            # Node{id=1, cluster=2, metadata=3, locality=4}
    loc = st(1, "r1") + st(2, "z1")
    return st(1, nid) + st(2, "ztunnel") + fld(3, 2, struct(md)) + fld(4, 2, loc)

ADDR = "type.googleapis.com/istio.workload.Address"
AUTH = "type.googleapis.com/istio.security.Authorization"
N = node("ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local",
         {"CLUSTER_ID": "c1", "NETWORK": "n1", "NAME": "ztunnel-abc", "NAMESPACE": "istio-system"})
# DeltaDiscoveryRequest: node=1 type_url=2 sub=3 unsub=4 initial=5 nonce=6 error_detail=7
d1 = fld(1, 2, N) + st(2, ADDR) + st(3, "*")
d2 = st(2, ADDR) + st(3, "ns/web.ns.svc.cluster.local") + st(3, "c1/10.0.0.5") + st(4, "*") + st(6, "1")
d3 = st(2, AUTH) + fld(5, 2, st(1, "ns/a") + st(2, "v1")) + st(6, "2") + fld(7, 2, fld(1, 0, varint(3)) + st(2, "bad"))
d4 = st(2, ADDR) + st(4, "ns/web.ns.svc.cluster.local") + st(6, "nonce-x")
def frame(flags, msgs):
    out = bytes([flags])
    for m in msgs:
        out += struct_pack(len(m)) + m
    return out
def struct_pack(n):
    return struct_mod.pack(">H", n)
import struct as struct_mod
put("fuzz_xds_request", "delta", frame(1, [d1, d2, d3, d4]))
put("fuzz_xds_request", "delta-nometa", frame(3, [fld(1, 2, st(1, "id") + fld(3, 2, struct({"ISTIO_META_CLUSTER_ID": "c2"}))) + st(2, ADDR)]))
put("fuzz_xds_request", "delta-badtype", frame(1, [fld(1, 2, N) + st(2, "type.googleapis.com/nope")]))
# DiscoveryRequest: version_info=1 node=2 resource_names=3 type_url=4 nonce=5 error_detail=6
s1 = st(1, "") + fld(2, 2, N) + st(3, "ns/web.ns.svc.cluster.local") + st(4, ADDR)
s2 = st(1, "7") + st(4, ADDR) + st(5, "1")
s3 = st(4, AUTH) + st(5, "2") + fld(6, 2, fld(1, 0, varint(13)) + st(2, "nack"))
put("fuzz_xds_request", "sotw", frame(0, [s1, s2, s3]))
put("fuzz_xds_request", "sotw-nonode", frame(0, [st(4, ADDR)]))

# fuzz_ca_csr: a mode byte (bit 0: DER follows, else PEM; bits 1-2: TTL
# choice) then a CSR made by the openssl CLI.
import subprocess
import tempfile


def csr(args, subj="/O=fuzz", ext=None):
    with tempfile.TemporaryDirectory() as d:
        cmd = ["openssl", "req", "-new", "-nodes", "-keyout", os.path.join(d, "k"),
               "-subj", subj] + args
        if ext:
            cmd += ["-addext", ext]
        pem = subprocess.run(cmd, check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "req", "-outform", "DER"], input=pem, check=True,
                             capture_output=True).stdout
    return pem, der


for name, args, subj, ext in [
        ("ec256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "/O=fuzz", None),
        ("rsa2048-sans", ["-newkey", "rsa:2048"], "/CN=evil",
         "subjectAltName=URI:spiffe://evil/ns/a/sa/b,DNS:evil.example"),
        ("rsa1024", ["-newkey", "rsa:1024"], "/O=fuzz", None),
        ("ec384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"], "/O=fuzz", None)]:
    pem, der = csr(args, subj, ext)
    put("fuzz_ca_csr", name + "-pem", b"\x00" + pem)
    put("fuzz_ca_csr", name + "-der", b"\x01" + der)
    put("fuzz_ca_csr", name + "-der-overmax", b"\x07" + der)
