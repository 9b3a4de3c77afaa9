#!/usr/bin/python3
"""End to end for meshfed's CA (docs/ca.md): the real binary with TLS and
--xds-auth jwt against a fake API server, CreateCertificate called with
grpcio as ztunnel calls it, certificates checked with the openssl CLI.

Covers: a workload's own certificate (the URI SAN is its token's identity,
not its CSR's), the chain verifying up to the cacerts root; a ztunnel
impersonating a workload on its node (allowed), on another node or by a
caller that is not a node agent (PERMISSION_DENIED); bad or missing token
(UNAUTHENTICATED); a malformed CSR and a TTL above the maximum
(INVALID_ARGUMENT); meshfed_ca_requests_total; the cacerts directory
rotated to a new intermediate of the same root while an xDS stream stays
up: new certificates chain to it and the stream was not dropped; the
istio-ca-root-cert ConfigMaps (created, updated keeping other keys,
re-created, skipped in kube-public, following a new root); without
--cacerts-dir the self-signed root kept in istio-ca-secret (as istiod lays
it out), read back after a restart, and a Secret whose key is not its
certificate's refused at start.
Usage: e2e_ca.py MESHFED_BINARY SOURCE_DIR
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ztunnel  # noqa: E402
from e2elib import (FAILURES, check, fake_get, get, kubeconfig, log_ports, make_certs, metrics,  # noqa: E402
                    ns, post, start_fake, stop, summary, waiter)

wait_for = waiter(20.0)
TD = "cluster.local"


def run(*a, **kw):
    return subprocess.run(a, capture_output=True, text=True, **kw)


def citadel(src, out):
    """grpcio modules of xds/proto/citadel.proto."""
    os.makedirs(out, exist_ok=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(src, "xds/proto"),
                    "-I", "/usr/include", "--python_out", out, "--grpc_python_out", out,
                    "citadel.proto"], check=True)
    sys.path.insert(0, out)
    import citadel_pb2  # noqa: E402
    import citadel_pb2_grpc  # noqa: E402
    return citadel_pb2, citadel_pb2_grpc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sa(n, name):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": n}}


def pod(n, name, sa_name, node, uid, ip):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": n, "uid": uid, "labels": {"app": name}},
            "spec": {"nodeName": node, "serviceAccountName": sa_name},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def configmap(n, data, name="istio-ca-root-cert"):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": n, "labels": {"owner": "someone"}}, "data": data}


def new_intermediate(cadir, out, name):
    """An Istio cacerts in out: a new EC intermediate under cadir's root."""
    os.makedirs(out, exist_ok=True)
    key, csr, crt = (os.path.join(out, f) for f in ("ca-key.pem", "ca.csr", "ca-cert.pem"))
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/O=meshfed-test/CN={name}", check=True)
    run("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(cadir, "root.pem"),
        "-CAkey", os.path.join(cadir, "root.key"), "-set_serial", "0x" + os.urandom(8).hex(),
        "-days", "30", "-extfile", os.path.join(cadir, "ext.cnf"), "-extensions", "ca", "-out", crt,
        check=True)
    root = open(os.path.join(cadir, "root.pem")).read()
    open(os.path.join(out, "cert-chain.pem"), "w").write(open(crt).read() + root)
    open(os.path.join(out, "root-cert.pem"), "w").write(root)


def main():
    binary, src = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-e2e-ca-")
    ca_pem = make_certs(work)
    pb, pb_grpc = citadel(src, os.path.join(work, "py"))
    grpc = ztunnel.protos(src)[0]
    cadir = os.path.join(work, "cacerts-src")
    run("sh", os.path.join(src, "tests/make_cacerts.sh"), cadir, check=True)
    mounted = os.path.join(work, "cacerts")
    shutil.copytree(os.path.join(cadir, "good"), mounted)

    fake, ports = start_fake(work, ["east"])
    east = ports["east"]
    dying = ns("dying")
    dying["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    dying["status"] = {"phase": "Terminating"}
    post(east, "/fake/apply", [ns("istio-system"), ns("bookinfo"), ns("kube-system"), ns("kube-public"), dying,
                               ns("pre"), configmap("pre", {"root-cert.pem": "stale\n", "extra": "kept"}),
                               sa("istio-system", "ztunnel"), sa("istio-system", "other"),
                               sa("bookinfo", "reviews"), sa("bookinfo", "ratings"),
                               pod("istio-system", "ztunnel-a", "ztunnel", "node-1", "uid-zt-a", "10.0.0.2"),
                               pod("istio-system", "ztunnel-b", "ztunnel", "node-2", "uid-zt-b", "10.0.1.2"),
                               pod("istio-system", "other-0", "other", "node-1", "uid-other", "10.0.0.3"),
                               pod("bookinfo", "reviews-0", "reviews", "node-1", "uid-rev", "10.0.0.4"),
                               pod("bookinfo", "ratings-0", "ratings", "node-2", "uid-rat", "10.0.1.4")])

    def mint(n, name, pod_name=None, uid=None):
        spec = {"audiences": ["istio-ca"], "expirationSeconds": 3600}
        if pod_name:
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod_name, "uid": uid}
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        return json.loads(post(east, f"/api/v1/namespaces/{n}/serviceaccounts/{name}/token", body,
                               token="test-token"))["status"]["token"]
    zt_a = mint("istio-system", "ztunnel", "ztunnel-a", "uid-zt-a")
    other = mint("istio-system", "other", "other-0", "uid-other")
    reviews = mint("bookinfo", "reviews")

    kc = os.path.join(work, "east.kubeconfig")
    open(kc, "w").write(kubeconfig(east))
    tls_port = free_port()
    log = open(os.path.join(work, "meshfed.log"), "a+")

    def args(port, own_tls=True):
        tls = ["--tls-cert", os.path.join(work, "server.pem"),
               "--tls-key", os.path.join(work, "server.key")] if own_tls else []
        return [binary, "--kubeconfig", kc, "--cluster-id", "east",
                "--xds-listen", "127.0.0.1:0", "--xds-tls-listen", f"127.0.0.1:{port}", *tls,
                "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20",
                "--xds-auth", "jwt", "--xds-allowed-identities", "istio-system/ztunnel",
                "--ca-max-ttl", "12h", "--ca-default-ttl", "1h"]
    proc = subprocess.Popen(args(tls_port) + ["--cacerts-dir", mounted], stdout=log, stderr=log)
    zt = None
    channel = None
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts with --cacerts-dir, TLS and jwt")
        if not p:
            return
        xport, dport = p
        creds = grpc.ssl_channel_credentials(root_certificates=open(ca_pem, "rb").read())
        channel = grpc.secure_channel(f"127.0.0.1:{tls_port}", creds)
        stub = pb_grpc.IstioCertificateServiceStub(channel)

        key = os.path.join(work, "wl.key")
        csr_path = os.path.join(work, "wl.csr")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr_path, "-subj", "/CN=evil",
            "-addext", "subjectAltName=URI:spiffe://cluster.local/ns/evil/sa/evil", check=True)
        csr = open(csr_path).read()

        def call(token, impersonate=None, csr_text=csr, ttl=3600):
            req = pb.IstioCertificateRequest(csr=csr_text, validity_duration=ttl)
            if impersonate:
                req.metadata.fields["ImpersonatedIdentity"].string_value = impersonate
            md = [("clusterid", "east")]
            if token:
                md.append(("authorization", "Bearer " + token))
            try:
                return stub.CreateCertificate(req, metadata=md, timeout=10).cert_chain, None
            except grpc.RpcError as e:
                return None, e

        def verify(chain, name):
            """(openssl verify ok, URI SANs of the leaf, issuer of the leaf)"""
            leaf, inter, root = (os.path.join(work, f"{name}.{s}") for s in ("leaf", "inter", "root"))
            open(leaf, "w").write(chain[0])
            open(inter, "w").write("".join(chain[1:-1]))
            open(root, "w").write(chain[-1])
            untrusted = ["-untrusted", inter] if len(chain) > 2 else []
            v = run("openssl", "verify", "-CAfile", root, *untrusted, leaf)
            san = run("openssl", "x509", "-in", leaf, "-noout", "-ext", "subjectAltName").stdout
            issuer = run("openssl", "x509", "-in", leaf, "-noout", "-issuer").stdout
            return v.returncode == 0, [w.strip().rstrip(",")[4:] for w in san.split() if w.startswith("URI:")], issuer

        # istio-ca-root-cert: the cacerts root in every namespace but kube-public
        root_pem = open(os.path.join(mounted, "root-cert.pem")).read()

        def root_cm(n):
            cm = fake_get(east, f"/api/v1/namespaces/{n}/configmaps/istio-ca-root-cert")
            return cm if cm and cm.get("data", {}).get("root-cert.pem") == root_pem else None
        cm = wait_for(lambda: root_cm("bookinfo"))
        check(bool(cm) and cm["metadata"].get("labels") == {"istio.io/config": "true"},
              "istio-ca-root-cert is created with the cacerts root, labelled istio.io/config=true")
        check(all(wait_for(lambda: root_cm(n), 5) for n in ("istio-system", "kube-system")),
              "and in istio-system and kube-system")
        cm = wait_for(lambda: root_cm("pre"), 5)
        check(bool(cm) and cm["data"].get("extra") == "kept" and cm["metadata"]["labels"] == {"owner": "someone"},
              "an existing one with another root is updated, its other keys and labels kept")
        check(fake_get(east, "/api/v1/namespaces/kube-public/configmaps/istio-ca-root-cert") is None,
              "kube-public is skipped, as istiod skips it")
        check(fake_get(east, "/api/v1/namespaces/dying/configmaps/istio-ca-root-cert") is None,
              "a terminating namespace gets none (403 NamespaceTerminating, skipped quietly: no error below)")
        post(east, "/fake/apply", [ns("late")])
        check(bool(wait_for(lambda: root_cm("late"), 10)), "a namespace added later gets one")
        uid = (root_cm("bookinfo") or {}).get("metadata", {}).get("uid")
        post(east, "/fake/delete", {"kind": "ConfigMap", "namespace": "bookinfo", "name": "istio-ca-root-cert"})
        cm = wait_for(lambda: (root_cm("bookinfo") or {}).get("metadata", {}).get("uid") not in (None, uid), 10)
        check(bool(cm), "a deleted one comes back")
        # 3 created, "pre" updated, "late" and the deleted one created: the
        # counter moves just after the API server answered
        wait_for(lambda: metrics(dport).get("meshfed_ca_root_cert_writes_total", 0) >= 6, 5)
        m = metrics(dport)
        check(m.get("meshfed_ca_root_cert_writes_total", 0) == 6 and
              m.get("meshfed_ca_root_cert_errors_total") == 0,
              "meshfed_ca_root_cert_writes_total counts them, no errors: " +
              str({k: v for k, v in m.items() if "root_cert" in k}))
        writes = m.get("meshfed_ca_root_cert_writes_total", 0)

        ready = wait_for(lambda: call(reviews)[0])
        check(bool(ready), "CreateCertificate answers a workload's own token over TLS")
        chain, _ = call(reviews)
        if chain:
            ok, uris, _ = verify(chain, "own")
            check(ok, "the chain verifies with openssl up to the cacerts root")
            check(uris == [f"spiffe://{TD}/ns/bookinfo/sa/reviews"],
                  f"the URI SAN is the token's identity, not the CSR's ({uris})")
            root_src = open(os.path.join(cadir, "root.pem")).read()
            check(chain[-1] == root_src and len(chain) == 4,
                  f"chain: leaf, intermediate, root, root-cert.pem last ({len(chain)} elements)")

        chain, e = call(zt_a, f"spiffe://{TD}/ns/bookinfo/sa/reviews")
        ok, uris, _ = verify(chain, "imp") if chain else (False, [], "")
        check(ok and uris == [f"spiffe://{TD}/ns/bookinfo/sa/reviews"],
              f"ztunnel on node-1 gets reviews' certificate (a reviews pod runs there) ({e and e.details()})")
        _, e = call(zt_a, f"spiffe://{TD}/ns/bookinfo/sa/ratings")
        check(e is not None and e.code() == grpc.StatusCode.PERMISSION_DENIED,
              f"ztunnel on node-1 may not impersonate ratings (only on node-2) ({e and e.details()})")
        _, e = call(other, f"spiffe://{TD}/ns/bookinfo/sa/reviews")
        check(e is not None and e.code() == grpc.StatusCode.PERMISSION_DENIED,
              f"a caller that is not a node agent may not impersonate ({e and e.details()})")
        _, e = call(reviews, f"spiffe://{TD}/ns/bookinfo/sa/ratings")
        check(e is not None and e.code() == grpc.StatusCode.PERMISSION_DENIED,
              "a workload may not impersonate another")
        _, e = call("not-a-token")
        check(e is not None and e.code() == grpc.StatusCode.UNAUTHENTICATED,
              f"a bad token is UNAUTHENTICATED ({e and e.details()})")
        _, e = call(None)
        check(e is not None and e.code() == grpc.StatusCode.UNAUTHENTICATED, "no token is UNAUTHENTICATED")
        _, e = call(reviews, csr_text="-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n")
        check(e is not None and e.code() == grpc.StatusCode.INVALID_ARGUMENT,
              f"a malformed CSR is INVALID_ARGUMENT ({e and e.details()})")
        _, e = call(reviews, ttl=13 * 3600)
        check(e is not None and e.code() == grpc.StatusCode.INVALID_ARGUMENT,
              f"a TTL above --ca-max-ttl is INVALID_ARGUMENT ({e and e.details()})")
        m = metrics(dport)
        name = "meshfed_ca_requests_total{result=\"%s\"}"
        check(m.get(name % "ok", 0) >= 3 and m.get(name % "denied") == 3 and
              m.get(name % "unauthenticated") == 2 and m.get(name % "invalid") == 2,
              "meshfed_ca_requests_total counts each outcome: " +
              str({k: v for k, v in m.items() if k.startswith("meshfed_ca_")}))

        # rotation: a new intermediate of the same root, an xDS stream up meanwhile
        zt = ztunnel.Ztunnel(src, xport, "east", metadata=[("authorization", "Bearer " + zt_a),
                                                           ("clusterid", "east")])
        check(bool(zt.wait(lambda s: "east//Pod/bookinfo/reviews-0" in s)), "an xDS stream is up")
        staged = os.path.join(work, "rotated")
        new_intermediate(cadir, staged, "intermediate-rotated")
        for f in ("ca-key.pem", "ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
            shutil.copy(os.path.join(staged, f), os.path.join(work, "tmp.pem"))
            os.replace(os.path.join(work, "tmp.pem"), os.path.join(mounted, f))

        def rotated():
            c, _ = call(reviews)
            return c and "intermediate-rotated" in verify(c, "rot")[2] and c
        chain = wait_for(rotated, 15)
        check(bool(chain) and verify(chain, "rot")[0],
              "after the cacerts change new certificates chain to the new intermediate")
        post(east, "/fake/apply", [pod("bookinfo", "reviews-1", "reviews", "node-1", "uid-rev1", "10.0.0.5")])
        check(bool(zt.wait(lambda s: "east//Pod/bookinfo/reviews-1" in s)) and zt.error is None
              and zt.reconnects == 0, "the xDS stream was not dropped by the reload")
        check(metrics(dport).get("meshfed_ca_reloads_total") == 2, "meshfed_ca_reloads_total is 2")

        open(os.path.join(mounted, "ca-key.pem"), "w").write("garbage\n")
        check(bool(wait_for(lambda: metrics(dport).get("meshfed_ca_reload_errors_total") == 1, 10)),
              "a broken cacerts change is counted")
        chain, _ = call(reviews)
        check(bool(chain) and "intermediate-rotated" in verify(chain, "kept")[2],
              "and the CA that loaded last keeps signing")
        check(metrics(dport).get("meshfed_ca_root_cert_writes_total") == writes,
              "an intermediate of the same root rewrites no istio-ca-root-cert")

        # a new root: every istio-ca-root-cert follows
        cadir2 = os.path.join(work, "cacerts-src2")
        run("sh", os.path.join(src, "tests/make_cacerts.sh"), cadir2, check=True)
        for f in ("ca-key.pem", "ca-cert.pem", "cert-chain.pem", "root-cert.pem"):
            shutil.copy(os.path.join(cadir2, "good", f), os.path.join(work, "tmp.pem"))
            os.replace(os.path.join(work, "tmp.pem"), os.path.join(mounted, f))
        root_pem = open(os.path.join(mounted, "root-cert.pem")).read()
        check(all(wait_for(lambda: root_cm(n), 15) for n in ("bookinfo", "istio-system", "pre", "late")),
              "after a root rotation every istio-ca-root-cert holds the new root")
        chain, _ = call(reviews)
        check(bool(chain) and chain[-1] == root_pem and verify(chain, "newroot")[0],
              "and certificates chain to it")
        log.seek(0)
        text = log.read()
        check(zt_a not in text and reviews not in text, "no token appears in meshfed's log")
        zt.close()
        zt = None
        channel.close()
        stop(proc)

        # no --cacerts-dir: istiod's self-signed root, kept in istio-ca-secret
        secret_path = "/api/v1/namespaces/istio-system/secrets/istio-ca-secret"

        def self_signed(name, trust=None):
            """A meshfed without cacerts: (process, log, stub, channel), the
            stub None when it did not start. trust: without --tls-cert, the
            root its CA-issued serving certificate is checked against."""
            lg = open(os.path.join(work, name + ".log"), "a+")
            port = free_port()
            pr = subprocess.Popen(args(port, own_tls=trust is None), stdout=lg, stderr=lg)
            if not wait_for(lambda: log_ports(lg) or pr.poll() is not None) or pr.poll() is not None:
                return pr, lg, None, None
            if trust is None:
                ch = grpc.secure_channel(f"127.0.0.1:{port}", creds)
            else:
                ch = grpc.secure_channel(
                    f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=trust.encode()),
                    options=[("grpc.ssl_target_name_override", "meshfed.istio-system.svc")])
            pr.tls_port = port
            return pr, lg, pb_grpc.IstioCertificateServiceStub(ch), ch

        def served(port, root_file):
            """(openssl verifies the TLS port's chain for meshfed.istio-system.svc, its issuer)"""
            r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                                "meshfed.istio-system.svc", "-alpn", "h2", "-CAfile", root_file,
                                "-verify_hostname", "meshfed.istio-system.svc", "-verify_return_error"],
                               input="", capture_output=True, text=True, errors="replace", timeout=10)
            issuer = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("i:")]
            return "Verify return code: 0 (ok)" in r.stdout, issuer[0] if issuer else ""

        proc, slog, stub, channel = self_signed("self1")
        check(stub is not None, "meshfed starts without --cacerts-dir")
        sec = fake_get(east, secret_path)
        data = (sec or {}).get("data", {})
        dec = {k: base64.b64decode(v).decode() for k, v in data.items()}
        check(sec is not None and sec.get("type") == "istio.io/ca-root" and
              set(data) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem", "key.pem"} and
              dec["ca-cert.pem"] == dec["root-cert.pem"] and "PRIVATE KEY" in dec["ca-key.pem"],
              f"it stores its root in Secret istio-ca-secret as istiod does ({sorted(data)})")
        self_root = dec.get("ca-cert.pem", "")
        rp = os.path.join(work, "self-root.pem")
        open(rp, "w").write(self_root)
        txt = run("openssl", "x509", "-in", rp, "-noout", "-subject", "-text").stdout
        check("O = cluster.local" in txt and "CA:TRUE" in txt and "Public-Key: (2048 bit)" in txt and
              run("openssl", "x509", "-in", rp, "-noout", "-checkend", str(9 * 365 * 86400)).returncode == 0,
              "the root: O=<trust domain>, CA, RSA 2048, valid 10 years")
        chain = wait_for(lambda: call(reviews)[0]) if stub else None
        check(bool(chain) and len(chain) == 2 and chain[-1] == self_root and verify(chain, "self")[0],
              "certificates chain to that root (leaf, root)")
        root_pem = self_root
        check(bool(wait_for(lambda: root_cm("bookinfo"), 10)), "istio-ca-root-cert follows the new root")
        slog.seek(0)
        check("SELF-SIGNED" in slog.read(), "meshfed warns loudly that no other cluster trusts it")
        rv = sec and sec["metadata"]["resourceVersion"]
        channel.close()
        stop(proc)

        proc, slog, stub, channel = self_signed("self2")
        chain = wait_for(lambda: call(reviews)[0]) if stub else None
        check(bool(chain) and chain[-1] == self_root and
              fake_get(east, secret_path)["metadata"]["resourceVersion"] == rv,
              "a restart signs with the same root, read back from the Secret")
        channel.close()
        stop(proc)

        other = os.path.join(work, "other.key")
        run("openssl", "genrsa", "-out", other, "2048", check=True)
        bad = dict(sec)
        bad["data"] = dict(data, **{"ca-key.pem": base64.b64encode(open(other, "rb").read()).decode()})
        post(east, "/fake/apply", [bad])
        proc, slog, stub, channel = self_signed("self3")
        proc.wait(timeout=20)
        slog.seek(0)
        text = slog.read()
        check(stub is None and proc.returncode == 2 and "istio-ca-secret" in text and
              "does not match" in text,
              "an istio-ca-secret whose key is not its certificate's stops the start with a clear error: " +
              (text.strip().splitlines() or [""])[-1])

        # the cacerts Secret, read through the API (no --cacerts-dir) and reloaded
        def cacerts_secret(d, **override):
            data = {f: base64.b64encode(open(os.path.join(d, f), "rb").read()).decode()
                    for f in ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")}
            data.update(override)
            return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "cacerts", "namespace": "istio-system"}, "data": data}
        post(east, "/fake/apply", [cacerts_secret(os.path.join(cadir, "good"))])
        first_root = open(os.path.join(cadir, "root.pem")).read()
        proc, slog, stub, channel = self_signed("secret1", trust=first_root)
        chain = wait_for(lambda: call(reviews)[0]) if stub else None
        ok, issuer = served(proc.tls_port, os.path.join(cadir, "root.pem")) if stub else (False, "")
        check(ok and "intermediate" in issuer,
              f"without --tls-cert the TLS port serves a certificate for meshfed.istio-system.svc "
              f"issued by the CA, verified by openssl s_client ({issuer})")
        check(bool(chain) and len(chain) == 4 and chain[-1] == first_root and verify(chain, "sec")[0],
              "with a cacerts Secret (and no --cacerts-dir) certificates chain to its root")
        root_pem = first_root
        check(bool(wait_for(lambda: root_cm("bookinfo"), 10)), "and istio-ca-root-cert follows it")
        dport = log_ports(slog)[1] if stub else 0
        post(east, "/fake/apply", [cacerts_secret(staged)])

        def rotated_secret():
            c, _ = call(reviews)
            return c and "intermediate-rotated" in verify(c, "secrot")[2] and c
        chain = wait_for(rotated_secret, 15) if stub else None
        check(bool(chain) and verify(chain, "secrot")[0],
              "a change of the Secret is loaded: new certificates chain to the new intermediate")
        ok, issuer = served(proc.tls_port, os.path.join(cadir, "root.pem")) if stub else (False, "")
        check(ok and "intermediate-rotated" in issuer,
              f"and the serving certificate is issued again by it ({issuer})")
        m = metrics(dport) if stub else {}
        check(m.get("meshfed_ca_reloads_total") == 2, f"meshfed_ca_reloads_total is 2 ({m.get('meshfed_ca_reloads_total')})")
        wrong = base64.b64encode(open(other, "rb").read()).decode()
        post(east, "/fake/apply", [cacerts_secret(staged, **{"ca-key.pem": wrong})])
        check(bool(wait_for(lambda: metrics(dport).get("meshfed_ca_reload_errors_total") == 1, 15)) if stub else False,
              "a cacerts Secret whose key is not its certificate's is counted")
        post(east, "/fake/apply", [cacerts_secret(staged, **{"root-cert.pem": "!!not base64"})])
        check(bool(wait_for(lambda: metrics(dport).get("meshfed_ca_reload_errors_total") == 2, 15)) if stub else False,
              "and one that is not base64")
        chain, _ = call(reviews)
        check(bool(chain) and "intermediate-rotated" in verify(chain, "seckept")[2] and proc.poll() is None,
              "meshfed keeps running and the CA that loaded last keeps signing")
        slog.seek(0)
        text = slog.read()
        check("is not the private key of ca-cert.pem" in text and "Secret istio-system/cacerts" in text,
              "the log says which Secret and why")
        b64 = lambda path: base64.b64encode(open(path, "rb").read()).decode()  # noqa: E731
        post(east, "/fake/apply", [{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                                    "metadata": {"name": "cacerts", "namespace": "istio-system"},
                                    "data": {"tls.crt": b64(os.path.join(cadir, "good", "ca-cert.pem")),
                                             "tls.key": b64(os.path.join(cadir, "good", "ca-key.pem")),
                                             "ca.crt": b64(os.path.join(cadir, "root.pem"))}}])

        def tls_layout():
            c, _ = call(reviews)
            return c and "intermediate-good" in verify(c, "tlsl")[2] and c
        chain = wait_for(tls_layout, 15) if stub else None
        check(bool(chain) and verify(chain, "tlsl")[0] and chain[-1] == first_root,
              "a cacerts Secret in the kubernetes.io/tls layout (tls.crt, tls.key, ca.crt) signs, as with istiod")
        channel.close()
        stop(proc)

        # the chart's RBAC (fakekube enforces CHART_RBAC for a token bound to
        # it): everything above is allowed; an older chart's (no CA rules)
        # gets 403s that meshfed survives
        post(east, "/fake/token", {"tokens": ["test-token", reviews, zt_a, other],
                                   "rbac": {"chart-tok": "chart", "old-tok": "chart-without-ca"}})
        for kind, n, name in (("Secret", "istio-system", "cacerts"), ("Secret", "istio-system", "istio-ca-secret"),
                              ("ConfigMap", "bookinfo", "istio-ca-root-cert")):
            post(east, "/fake/delete", {"kind": kind, "namespace": n, "name": name})
        for tok, name in (("chart-tok", "rbac-chart"), ("old-tok", "rbac-old")):
            open(kc, "w").write(kubeconfig(east, token=tok))
            proc, slog, stub, channel = self_signed(name)
            chain = wait_for(lambda: call(reviews)[0]) if stub else None
            if tok == "chart-tok":
                sec = fake_get(east, secret_path)
                root_pem = base64.b64decode(sec["data"]["ca-cert.pem"]).decode() if sec else None
                check(bool(chain) and sec is not None and chain[-1] == root_pem,
                      "with the chart's RBAC meshfed creates istio-ca-secret and signs with it")
                check(bool(wait_for(lambda: root_cm("bookinfo"), 10)),
                      "and publishes istio-ca-root-cert (configmaps list, watch, create, update)")
                m = metrics(log_ports(slog)[1]) if stub else {}
                check(m.get("meshfed_ca_root_cert_errors_total") == 0 and m.get("meshfed_kube_forbidden_total") == 0
                      and m.get("meshfed_ca_reload_errors_total") == 0,
                      "and nothing it does is forbidden: " + str({k: v for k, v in m.items() if "error" in k or "forbidden" in k}))
            else:
                post(east, "/fake/delete", {"kind": "Secret", "namespace": "istio-system", "name": "istio-ca-secret"})
                post(east, "/fake/delete", {"kind": "ConfigMap", "namespace": "bookinfo", "name": "istio-ca-root-cert"})
                channel.close()
                stop(proc)
                proc, slog, stub, channel = self_signed(name + "2")
                chain = wait_for(lambda: call(reviews)[0]) if stub else None
                dport = log_ports(slog)[1] if stub else 0
                check(bool(chain) and len(chain) == 2 and verify(chain, "old")[0],
                      "with an older chart's RBAC (no secrets create) meshfed signs with a root in memory")
                check(bool(wait_for(lambda: metrics(dport).get("meshfed_ca_root_cert_errors_total", 0) >= 1, 10)),
                      "a forbidden istio-ca-root-cert write is counted")
                slog.seek(0)
                text = slog.read()
                check("does meshfed's ClusterRole grant configmaps create" in text and
                      "does meshfed's Role grant secrets get and create" in text and "kept nowhere" in text,
                      "and the log says which grant is missing")
                check(get(dport, "/ready")[0] == 200, "meshfed is ready all the same")
            channel.close()
            stop(proc)
    finally:
        if zt:
            zt.close()
        if channel:
            channel.close()
        stop(proc)
        fake.kill()
        fake.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed log (tail) ---\n" + "".join(log.readlines()[-40:]))
        else:
            shutil.rmtree(work, ignore_errors=True)
    summary()
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
