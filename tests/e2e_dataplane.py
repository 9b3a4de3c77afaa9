#!/usr/bin/python3
"""End to end: what a ztunnel of each network receives, against golden files.

Starts the real meshfed on tests/data/dataplane (two clusters on two networks,
trust domain example.org), connects as a ztunnel of cluster east and of
cluster west, decodes every istio.workload.Address with modules generated
from the .proto files (tests/ztunnel.py), not with meshfed's own structs, and
compares them field by field with tests/data/dataplane/golden_<cluster>.json.
The golden values are istiod's (tests/data/dataplane/README.md says where each
comes from). Then a copy where west's Gateway has no status address yet:
east keeps being served and the problem is logged, counted and shown.
Usage: e2e_dataplane.py MESHFED_BINARY SOURCE_DIR
"""
import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import FAILURES, check, get, get_json, log_ports, metrics, stop, summary, waiter  # noqa: E402
from ztunnel import Ztunnel  # noqa: E402

wait_for = waiter(20.0)
NETWORKS = {"east": "network-east", "west": "network-west"}


def ip_text(b64):
    """An address field (base64 in JSON) as the IP it holds."""
    raw = base64.b64decode(b64)
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return "invalid:" + raw.hex()


def readable(addr):
    """MessageToDict of an Address (proto field names), with its address bytes
    shown as IP text so the golden files read like a config dump."""
    from google.protobuf.json_format import MessageToDict
    d = MessageToDict(addr, preserving_proto_field_name=True)
    known = type(addr)()
    known.CopyFrom(addr)
    known.DiscardUnknownFields()
    if known.ByteSize() != addr.ByteSize():
        # a field xds/proto does not define would otherwise vanish unseen
        d["unknown_field_bytes"] = addr.ByteSize() - known.ByteSize()
    w = d.get("workload")
    if w:
        if "addresses" in w:
            w["addresses"] = [ip_text(a) for a in w["addresses"]]
        for gw in ("network_gateway", "waypoint"):
            na = w.get(gw, {}).get("address")
            if na and "address" in na:
                na["address"] = ip_text(na["address"])
    for na in d.get("service", {}).get("addresses", []):
        if "address" in na:
            na["address"] = ip_text(na["address"])
    na = d.get("service", {}).get("waypoint", {}).get("address")
    if na and "address" in na:
        na["address"] = ip_text(na["address"])
    return d


def flatten(v, path=""):
    """{dotted path: leaf value}; lists are indexed, so order counts."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            out.update(flatten(x, f"{path}.{k}" if path else k))
        return out or {path: {}}
    if isinstance(v, list):
        out = {}
        for i, x in enumerate(v):
            out.update(flatten(x, f"{path}[{i}]"))
        return out or {path: []}
    return {path: v}


def diff(want, got):
    """Readable lines, one per field that differs, per resource."""
    lines = []
    for name in sorted(set(want) | set(got)):
        if name not in got:
            lines.append(f"  missing  {name}")
            continue
        if name not in want:
            lines.append(f"  extra    {name}: {json.dumps(got[name], sort_keys=True)}")
            continue
        fw, fg = flatten(want[name]), flatten(got[name])
        fields = [f for f in sorted(set(fw) | set(fg)) if fw.get(f, "<unset>") != fg.get(f, "<unset>")]
        if fields:
            lines.append(f"  differs  {name}")
            lines += [f"    {f}: want {json.dumps(fw.get(f, '<unset>'))}, got {json.dumps(fg.get(f, '<unset>'))}"
                      for f in fields]
    return lines


def start(binary, demo, work, tag):
    log = open(os.path.join(work, f"{tag}.log"), "a+")
    proc = subprocess.Popen([binary, "--demo", demo, "--trust-domain", "example.org",
                             "--xds-listen", "127.0.0.1:0", "--debug-listen", "127.0.0.1:0",
                             "--debounce-ms", "20"], stdout=log, stderr=log)
    return proc, log


def view(src, xport, cluster, golden):
    """The cluster's ztunnel's state once it holds every golden name (or
    after the timeout), as readable dicts."""
    zt = Ztunnel(src, xport, cluster, NETWORKS[cluster], reconnect=True)
    try:
        zt.wait(lambda s: set(golden) <= set(s), timeout=20)
        zt.wait(lambda s: False, timeout=1.0)  # anything sent after the golden set
        check(zt.error is None, f"{cluster}: the Delta ADS stream stays up")
        return {n: readable(a) for n, a in dict(zt.state).items()}
    finally:
        zt.close()


def copy_demo(data, demo):
    for cluster in NETWORKS:
        shutil.copytree(os.path.join(data, cluster), os.path.join(demo, cluster))


def golden_case(binary, src, data, work):
    demo = os.path.join(work, "golden")
    copy_demo(data, demo)
    proc, log = start(binary, demo, work, "golden")
    try:
        ports = wait_for(lambda: log_ports(log))
        if not check(bool(ports), "meshfed starts on the dataplane demo"):
            return
        xport, dport = ports
        check(wait_for(lambda: get(dport, "/ready")[0] == 200), "/ready once both clusters synced")
        got = {}
        for cluster in ("east", "west"):
            want = json.load(open(os.path.join(data, f"golden_{cluster}.json")))
            got[cluster] = view(src, xport, cluster, want)
            lines = diff(want, got[cluster])
            if lines:
                print(f"--- {cluster}: golden_{cluster}.json vs what its ztunnel got ---")
                print("\n".join(lines))
            check(not lines, f"{cluster}: every Address equals golden_{cluster}.json, field by field")

        east, west = got["east"], got["west"]
        check(not any(n.startswith("NetworkGateway/network-east/") for n in east),
              "east does not get its own east-west gateway")
        check(not any(n.startswith("NetworkGateway/network-west/") for n in west),
              "west does not get its own east-west gateway")
        gw = east.get("NetworkGateway/network-west/198.51.100.10/0", {}).get("workload", {})
        check(gw.get("trust_domain") == "example.org" and gw.get("service_account") == "eastwest-sa",
              "west's gateway workload (seen by east): trust domain example.org, the annotated service account")
        gw = west.get("NetworkGateway/network-east/192.0.2.10/0", {}).get("workload", {})
        check(gw.get("trust_domain") == "example.org" and gw.get("service_account") == "istio-eastwest",
              "east's gateway workload (seen by west): no annotation, so the Gateway's name")
        key = "shop/catalog.shop.svc.cluster.local"
        sans = east.get(key, {}).get("service", {}).get("subject_alt_names")
        check(sans == ["spiffe://example.org/ns/shop/sa/catalog-canary",
                       "spiffe://example.org/ns/shop/sa/catalog-v2"],
              "east's catalog lists west's pods' identities (ready or not), not its own")
        sans = west.get(key, {}).get("service", {}).get("subject_alt_names")
        check(sans == ["spiffe://example.org/ns/shop/sa/catalog"], "west's catalog lists east's pod's identity")
        check("shop/ledger.shop.svc.cluster.local" not in west, "east's LOCAL ledger is not sent to west")
        check(not any(n.startswith("west//Pod/") for n in east) and not any(n.startswith("east//Pod/") for n in west),
              "no ztunnel gets another network's pods")
    finally:
        stop(proc)
        if FAILURES:
            log.seek(0)
            print("--- meshfed log (golden) ---\n" + log.read())


def no_address_case(binary, src, data, work):
    """West's Gateway without a status address: east is still served; the
    problem is logged, counted and in /debug/clusterz."""
    demo = os.path.join(work, "noaddr")
    copy_demo(data, demo)
    path = os.path.join(demo, "west", "cluster.yaml")
    text = open(path).read()
    cut = re.sub(r"status:\n  addresses:\n  - type: IPAddress\n    value: 198\.51\.100\.10\n", "", text)
    check(cut != text, "the copy's west Gateway has no status address")
    open(path, "w").write(cut)
    proc, log = start(binary, demo, work, "noaddr")
    try:
        ports = wait_for(lambda: log_ports(log))
        if not check(bool(ports), "meshfed starts with west's Gateway unaddressed"):
            return
        xport, dport = ports
        check(wait_for(lambda: get(dport, "/ready")[0] == 200), "/ready: a gateway problem does not block readiness")
        clusters = wait_for(lambda: {c["id"]: c for c in get_json(dport, "/debug/clusterz") or []})
        prob = clusters.get("west", {}).get("gatewayProblem", "")
        check("status.addresses" in prob, f"/debug/clusterz shows west's gatewayProblem ({prob!r})")
        check("gatewayProblem" not in clusters.get("east", {}), "east has no gateway problem")
        n = metrics(dport).get('meshfed_errors_total{kind="gateway"}', 0)
        check(n >= 1, f'meshfed_errors_total{{kind="gateway"}} counts it ({n})')
        log.seek(0)
        check("no IPAddress or Hostname in status.addresses" in log.read(), "the log says what is missing")

        want = json.load(open(os.path.join(data, "golden_east.json")))
        local = {k: v for k, v in want.items() if k.startswith("east//Pod/") or k == "shop/ledger.shop.svc.cluster.local"}
        got = view(src, xport, "east", local)
        lines = diff(local, {k: v for k, v in got.items() if k in local})
        print("\n".join(lines))
        check(not lines, "east is still served: its pods and its LOCAL service as in golden_east.json")
        check("shop/catalog.shop.svc.cluster.local" in got and "shop/payments.shop.svc.cluster.local" in got,
              "east still gets the global services")
        check(not any(n.startswith("network-west/") or n.startswith("NetworkGateway/network-west/") for n in got),
              "no split-horizon or gateway workload points at west's missing address")
    finally:
        stop(proc)
        if FAILURES:
            log.seek(0)
            print("--- meshfed log (no address) ---\n" + log.read())


def main():
    binary, src = sys.argv[1], sys.argv[2]
    data = os.path.join(src, "tests", "data", "dataplane")
    work = tempfile.mkdtemp(prefix="meshfed-dataplane-")
    try:
        golden_case(binary, src, data, work)
        no_address_case(binary, src, data, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary()


if __name__ == "__main__":
    main()
    sys.exit(1 if FAILURES else 0)
