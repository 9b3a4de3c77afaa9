#!/usr/bin/python3
"""End to end: the ambient authorization a ztunnel of each cluster receives.

Starts the real meshfed on tests/data/authz (clusters east and west, each
with its own AuthorizationPolicies; east with PeerAuthentications too),
connects as a ztunnel of each cluster subscribed to both
istio.workload.Address and istio.security.Authorization on one Delta stream,
decodes with modules generated from xds/proto (tests/ztunnel.py), and
compares with what istiod (pilot/pkg/serviceregistry/ambient) sends for the
same objects, written out below:
  - each cluster's ztunnel gets its own cluster's policies only (a policy
    of the same name in the other cluster is not merged);
  - istiod's translation: scopes, dropped named ports, string matches, the
    static strict policy while a PeerAuthentication exists and a converted
    one for port-level mTLS, nothing for AUDIT and targetRef policies;
  - Workload.authorization_policies: selector policies sorted, then the
    PeerAuthentication keys;
  - live edits: a policy's new rules re-send that policy and no workload; a
    new selector re-sends the workloads whose list changed; a deleted
    policy is removed;
  - /debug/authorizationz and /debug/config_dump show the same;
  - fail closed: a DENY holding a value istio's webhook refuses becomes a
    DENY of every connection it selects, an ALLOW that does not decode one
    that matches nothing, both counted; a policy of another istio.io/rev
    is ignored.
Usage: e2e_authz.py MESHFED_BINARY SOURCE_DIR
"""
import base64
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import FAILURES, check, get, get_json, log_ports, stop, summary, waiter  # noqa: E402
from ztunnel import Ztunnel  # noqa: E402

wait_for = waiter(20.0)
NETWORKS = {"east": "network-east", "west": "network-west"}
STATIC = "istio-system/istio_converted_static_strict"
NP_PRESENCE = {"matches": [{"not_principals": [{"presence": {}}]}]}

WANT_AUTHZ = {
    "east": {
        "istio-system/deny-foo": {
            "name": "deny-foo", "namespace": "istio-system", "action": "DENY",
            "rules": [{"clauses": [{"matches": [{"namespaces": [{"exact": "foo"}]}]}]}]},
        "shop/catalog-allow": {
            "name": "catalog-allow", "namespace": "shop", "scope": "WORKLOAD_SELECTOR",
            "rules": [{"clauses": [
                {"matches": [{"destination_ports": [8080]}]},
                {"matches": [{"principals": [{"exact": "cluster.local/ns/shop/sa/frontend"},
                                             {"suffix": "-suffix"}]}]}]}]},
        STATIC: {
            "name": "istio_converted_static_strict", "namespace": "istio-system",
            "scope": "WORKLOAD_SELECTOR", "action": "DENY",
            "rules": [{"clauses": [NP_PRESENCE]}]},
        "shop/converted_peer_authentication_ledger-ports": {
            "name": "converted_peer_authentication_ledger-ports", "namespace": "shop",
            "scope": "WORKLOAD_SELECTOR", "action": "DENY",
            "rules": [{"clauses": [{"matches": [{"not_destination_ports": [9090]}]}, NP_PRESENCE]}]},
    },
    "west": {
        "shop/catalog-allow": {
            "name": "catalog-allow", "namespace": "shop", "scope": "WORKLOAD_SELECTOR",
            "action": "DENY",
            "rules": [{"clauses": [{"matches": [{"not_namespaces": [{"exact": "shop"}],
                                                 "source_ips": [{"address": "192.0.2.0",
                                                                 "length": 24}]}]}]}]},
    },
}

WANT_POLICIES = {
    "east": {
        "east//Pod/shop/catalog-1": ["shop/catalog-allow", STATIC],
        "east//Pod/shop/ledger-1": ["shop/converted_peer_authentication_ledger-ports"],
        # no labels: every selector of its namespace takes it (istiod quirk Q3)
        "east//Pod/shop/bare-1": ["shop/catalog-allow",
                                  "shop/converted_peer_authentication_ledger-ports"],
        # app=catalog, but in another namespace than the policy
        "east//Pod/other/catalog-9": [STATIC],
    },
    "west": {"west//Pod/shop/catalog-1": ["shop/catalog-allow"]},
}


def readable(msg):
    """MessageToDict (proto field names), address bytes as IP text."""
    from google.protobuf.json_format import MessageToDict
    d = MessageToDict(msg, preserving_proto_field_name=True)
    for rule in d.get("rules", []):
        for clause in rule.get("clauses", []):
            for m in clause.get("matches", []):
                for k in ("source_ips", "not_source_ips", "destination_ips", "not_destination_ips"):
                    for a in m.get(k, []):
                        a["address"] = str(ipaddress.ip_address(base64.b64decode(a["address"])))
    return d


def policies(zt, uid):
    a = zt.state.get(uid)
    return list(a.workload.authorization_policies) if a is not None else None


def edit(path, old, new):
    text = open(path).read()
    check(old in text, f"the demo file has {old.strip()!r} to edit")
    open(path, "w").write(text.replace(old, new, 1))


def static_view(src, xport, dport):
    zts = {c: Ztunnel(src, xport, c, NETWORKS[c], authz=True) for c in NETWORKS}
    try:
        for c, zt in zts.items():
            zt.wait(lambda s: set(WANT_POLICIES[c]) <= set(s)
                    and set(WANT_AUTHZ[c]) <= set(zt.authz), timeout=20)
            zt.wait(lambda s: False, timeout=1.0)  # anything sent after
            check(zt.error is None, f"{c}: the Delta ADS stream (Address + Authorization) stays up")
            got = {n: readable(a) for n, a in zt.authz.items()}
            for name in sorted(set(got) | set(WANT_AUTHZ[c])):
                same = got.get(name) == WANT_AUTHZ[c].get(name)
                check(same, f"{c}: Authorization {name} as istiod sends it"
                      + ("" if same else f" (got {got.get(name)}, want {WANT_AUTHZ[c].get(name)})"))
            for uid, want in WANT_POLICIES[c].items():
                got_p = policies(zt, uid)
                check(got_p == want, f"{c}: {uid} authorization_policies {got_p} == {want}")
        check("shop/audit" not in zts["east"].authz and "shop/for-waypoint" not in zts["east"].authz,
              "AUDIT and targetRef policies are not sent")
        check(STATIC not in zts["west"].authz, "west has no PeerAuthentication: no static strict policy")

        az = get_json(dport, "/debug/authorizationz") or {}
        east = az.get("clusters", {}).get("east", {})
        audit = east.get("shop/audit", {})
        check(audit.get("sent") is False and audit.get("status", {}).get("message")
              == "ztunnel does not support the AUDIT action",
              f"authorizationz: the AUDIT policy's status message ({audit.get('status')})")
        check(east.get("shop/catalog-allow", {}).get("selects") == ["shop/bare-1", "shop/catalog-1"],
              f"authorizationz: what catalog-allow selects ({east.get('shop/catalog-allow', {}).get('selects')})")
        check(east.get("shop/for-waypoint", {}).get("sent") is False
              and "status" not in east.get("shop/for-waypoint", {}),
              "authorizationz: a targetRef policy is not sent and has no status")
        check(len(east.get("istio-system/deny-foo", {}).get("selects", [])) == 4,
              "authorizationz: a GLOBAL policy applies to every workload of its cluster")
        check(az.get("rootNamespace") == "istio-system", "authorizationz names the root namespace")
        dump = get_json(dport, "/debug/config_dump?cluster=west&network=network-west") or {}
        check(set(dump.get("authorizations", {})) == set(WANT_AUTHZ["west"]),
              "config_dump of west lists west's Authorizations")
    finally:
        for zt in zts.values():
            zt.close()


# Appended to east: a DENY whose CIDR istio's webhook refuses, an ALLOW that
# does not decode, and two policies labelled with a revision (meshfed runs
# with --revision stable).
FAIL_CLOSED_DOCS = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: broken-deny
  namespace: shop
spec:
  action: DENY
  selector:
    matchLabels:
      app: ledger
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/33"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: broken-allow
  namespace: shop
spec:
  action: ALLOW
  rules:
  - to:
    - operation:
        ports: [8080]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: canary-only
  namespace: shop
  labels:
    istio.io/rev: canary
spec:
  action: DENY
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: stable-only
  namespace: shop
  labels:
    istio.io/rev: stable
spec:
  action: DENY
"""


def live_edits(src, xport, dport, demo):
    zt = Ztunnel(src, xport, "east", NETWORKS["east"], authz=True)
    path = os.path.join(demo, "east", "cluster.yaml")
    try:
        zt.wait(lambda s: set(WANT_POLICIES["east"]) <= set(s)
                and set(WANT_AUTHZ["east"]) <= set(zt.authz), timeout=20)
        zt.wait(lambda s: False, timeout=1.0)
        before = dict(zt.received)
        edit(path, '"*-suffix"]', '"*-suffix", "cluster.local/ns/shop/sa/admin"]')
        check(zt.wait(lambda s: len(zt.authz["shop/catalog-allow"].rules[0].clauses[1].matches[0].principals) == 3),
              "new rules reach east's ztunnel")
        zt.wait(lambda s: False, timeout=1.0)
        check(zt.received[zt_type("az")] - before[zt_type("az")] == 1
              and zt.received[zt_type("addr")] == before[zt_type("addr")],
              f"new rules re-send that policy alone, no workload ({before} -> {zt.received})")

        before = dict(zt.received)
        edit(path, "      app: catalog\n  rules:", "      app: ledger\n  rules:")
        check(zt.wait(lambda s: policies(zt, "east//Pod/shop/ledger-1")
                      == ["shop/catalog-allow", "shop/converted_peer_authentication_ledger-ports"]),
              f"a new selector adds the policy to ledger ({policies(zt, 'east//Pod/shop/ledger-1')})")
        check(zt.wait(lambda s: policies(zt, "east//Pod/shop/catalog-1") == [STATIC]),
              "and takes it off catalog")
        zt.wait(lambda s: False, timeout=1.0)
        sent = zt.received[zt_type("addr")] - before[zt_type("addr")]
        check(sent == 2, f"only the two workloads whose list changed are re-sent ({sent})")

        with open(path, "a") as f:
            f.write(FAIL_CLOSED_DOCS)
        check(zt.wait(lambda s: "shop/broken-deny" in zt.authz and "shop/stable-only" in zt.authz),
              "a policy istio's webhook would refuse is still sent, and so is one of our revision")
        bd = zt.authz.get("shop/broken-deny")
        check(bd is not None and bd.action == 1 and bd.scope == 2 and len(bd.rules) == 1
              and len(bd.rules[0].clauses) == 0,
              f"a DENY with a bad CIDR fails closed: a DENY of every connection it selects ({bd})")
        check("shop/canary-only" not in zt.authz, "a policy of another istio.io/rev is ignored")
        ba = zt.authz.get("shop/broken-allow")
        check(ba is not None and ba.action == 0 and len(ba.rules) == 0,
              f"an ALLOW that does not decode fails closed: it matches nothing ({ba})")
        az = get_json(dport, "/debug/authorizationz") or {}
        st = az.get("clusters", {}).get("east", {}).get("shop/broken-deny", {}).get("status", {})
        check(st.get("reason") == "InvalidPolicy" and "10.0.0.0/33" in st.get("message", "")
              and "fail closed" in st.get("message", ""),
              f"authorizationz: the stand-in's status says why ({st})")
        m = get(dport, "/metrics")[1] or ""
        check('meshfed_errors_total{kind="policy"} 2' in m,
              "the two refused policies are counted as meshfed_errors_total{kind=\"policy\"}")

        edit(path, "  name: deny-foo\n", "  name: deny-foo\n  annotations:\n    istio.io/dry-run: 'true'\n")
        check(zt.wait(lambda s: "istio-system/deny-foo" not in zt.authz),
              "a policy that is no longer sent (dry run without the flag) is removed")
        check(zt.error is None, "the stream stayed up through the edits")
    finally:
        zt.close()


def zt_type(which):
    return ("type.googleapis.com/istio.security.Authorization" if which == "az"
            else "type.googleapis.com/istio.workload.Address")


def main():
    binary, src = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-authz-")
    demo = os.path.join(work, "demo")
    shutil.copytree(os.path.join(src, "tests", "data", "authz"), demo)
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen([binary, "--demo", demo, "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20",
                             "--revision", "stable"],
                            stdout=log, stderr=log)
    try:
        ports = wait_for(lambda: log_ports(log))
        if check(bool(ports), "meshfed starts on the authorization demo"):
            xport, dport = ports
            check(wait_for(lambda: get(dport, "/ready")[0] == 200), "/ready once both clusters synced")
            static_view(src, xport, dport)
            live_edits(src, xport, dport, demo)
    finally:
        stop(proc)
        if FAILURES:
            log.seek(0)
            print("--- meshfed log ---\n" + log.read())
        shutil.rmtree(work, ignore_errors=True)
    summary()


if __name__ == "__main__":
    main()
    sys.exit(1 if FAILURES else 0)
