#!/usr/bin/python3
"""Conformance with istiod's ambient index: upstream's test cases, run on meshfed.

Each directory under cases/ is one upstream test case (istio/istio
pilot/pkg/serviceregistry/ambient/*_test.go): Kubernetes manifests per
cluster, and expect.yaml with what a ztunnel of the viewing cluster must
receive, taken from upstream's expectation. For every case the real meshfed
runs in --demo mode on a copy of the manifests, one ztunnel-like Delta ADS
client per viewer (tests/ztunnel.py, decoding with modules generated from
xds/proto) collects the Address and Authorization resources, and each
resource the case names is compared field by field (tests/e2e_dataplane.py
readable/diff); names under `absent` and `policies_absent` must not be sent,
a policy's status is read from /debug/authorizationz, and meshfed must log no
warning about the inputs (but those the case's allow_warnings name). Cases with `steps` edit the manifests between expectations while the
same clients stay connected.

Prints one line per case (PASS, FAIL, PENDING) and a summary; exits nonzero
on any FAIL. A pending case is run too: it never fails the suite, and is
marked when it passes (its status can be flipped).

Usage: run.py MESHFED_BINARY SOURCE_DIR [-k SUBSTRING] [-j JOBS] [-v]
       run.py --readme > README.md     (README.md, generated from the case data)
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from e2e_dataplane import diff, ip_text, readable  # noqa: E402
from e2elib import get, get_json, log_ports, stop, wait_for  # noqa: E402
import ztunnel  # noqa: E402

CASES = os.path.join(HERE, "cases")
OUT_OF_SCOPE = os.path.join(HERE, "out_of_scope.yaml")
FLAGS = {"trust_domain": "--trust-domain", "domain_suffix": "--domain-suffix",
         "cluster_id": "--cluster-id", "root_namespace": "--root-namespace", "revision": "--revision"}
SETTLE = 1.2  # the demo rereads its files every 0.5 s; later pushes must show


def load_cases(pattern=None):
    out = []
    for name in sorted(os.listdir(CASES)):
        path = os.path.join(CASES, name)
        if not os.path.isfile(os.path.join(path, "expect.yaml")) or (pattern and pattern not in name):
            continue
        with open(os.path.join(path, "expect.yaml")) as f:
            case = yaml.safe_load(f)
        case["dir"], case["name"] = path, name
        out.append(case)
    return out


def steps(case):
    """[(directory of cluster dirs or None, expectation)] in order: a step
    without `clusters` changes no file. A case without steps is one step
    whose manifests are in clusters/."""
    if "steps" in case:
        return [(s.get("clusters") and os.path.join(case["dir"], s["clusters"]), s) for s in case["steps"]]
    return [(os.path.join(case["dir"], "clusters"), case)]


def apply_step(src, demo):
    """Each cluster directory of src replaces the demo's copy; others stay."""
    for cluster in sorted(os.listdir(src)):
        dst = os.path.join(demo, cluster)
        if os.path.isdir(dst):
            for f in os.listdir(dst):
                if not os.path.exists(os.path.join(src, cluster, f)):
                    os.unlink(os.path.join(dst, f))
        # copyfile, not copy2: a fresh mtime, so the demo's change signature always moves
        shutil.copytree(os.path.join(src, cluster), dst, dirs_exist_ok=True, copy_function=shutil.copyfile)


def network_of(demo, cluster):
    """The viewer's network: its system namespace's topology.istio.io/network."""
    d = os.path.join(demo, cluster)
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f)) as fh:
            for doc in yaml.safe_load_all(fh):
                if (doc or {}).get("kind") == "Namespace" and doc["metadata"]["name"] == "istio-system":
                    return (doc["metadata"].get("labels") or {}).get("topology.istio.io/network", "")
    return ""


def readable_authz(msg):
    """MessageToDict of an Authorization (proto field names), its IP
    addresses as text, as `policies_present` writes them."""
    from google.protobuf.json_format import MessageToDict
    d = MessageToDict(msg, preserving_proto_field_name=True)
    for rule in d.get("rules", []):
        for clause in rule.get("clauses", []):
            for m in clause.get("matches", []):
                for k in ("source_ips", "not_source_ips", "destination_ips", "not_destination_ips"):
                    for a in m.get(k, []):
                        if "address" in a:
                            a["address"] = ip_text(a["address"])
    return d


def compare(exp, zt):
    """Readable difference lines between one expectation and a ztunnel's
    state (Address and Authorization resources)."""
    state, authz = zt.state, zt.authz
    want = exp.get("present") or {}
    got = {n: readable(state[n]) for n in want if n in state}
    lines = diff(want, got)
    lines += [f"  sent     {n} (expected absent)" for n in exp.get("absent") or [] if n in state]
    want = exp.get("policies_present") or {}
    lines += [f"  missing  {n}" for n, w in want.items() if w is None and n not in authz]
    want = {n: w for n, w in want.items() if w is not None}
    got = {n: readable_authz(authz[n]) for n in want if n in authz}
    lines += diff(want, got)
    lines += [f"  sent     {n} (expected absent)" for n in exp.get("policies_absent") or [] if n in authz]
    for n, want_list in (exp.get("workload_policies") or {}).items():
        if n not in state:
            lines.append(f"  missing  {n}")
            continue
        got_list = list(state[n].workload.authorization_policies)
        if got_list != (want_list or []):
            lines.append(f"  differs  {n}")
            lines.append(f"    workload.authorization_policies: want {want_list or []}, got {got_list}")
    return lines


def compare_status(exp, dport, cluster):
    """Difference lines between `policy_status` and the status meshfed
    shows for the cluster's policies in /debug/authorizationz."""
    want = exp.get("policy_status") or {}
    if not want:
        return []
    az = ((get_json(dport, "/debug/authorizationz") or {}).get("clusters") or {}).get(cluster) or {}
    lines = []
    for n, w in want.items():
        if n not in az:
            lines.append(f"  missing  {n} in /debug/authorizationz")
            continue
        got = az[n].get("status")
        if got != w:
            lines.append(f"  differs  {n} status: want {w}, got {got}")
    return lines


def log_warnings(log):
    """meshfed's warning and error lines so far (at most 10)."""
    log.seek(0)
    return ["    " + ln for ln in log.read().splitlines() if " warn " in ln or " error " in ln][:10]


def viewers(case, exp):
    v = exp.get("viewer", case.get("viewer"))
    return v if isinstance(v, list) else [v]


def run_case(binary, src, case, work):
    """(ok, [detail lines]) of one case."""
    demo = os.path.join(work, "demo")
    os.makedirs(demo)
    plan = steps(case)
    apply_step(plan[0][0], demo)
    args = [binary, "--demo", demo, "--xds-listen", "127.0.0.1:0", "--debug-listen", "127.0.0.1:0",
            "--debounce-ms", "20"]
    for k, v in (case.get("flags") or {}).items():
        args += [FLAGS[k], str(v)] if k in FLAGS else ["--" + k.replace("_", "-")]
    log = open(os.path.join(work, "meshfed.log"), "a+")
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    clients = {}
    try:
        ports = wait_for(lambda: proc.poll() is None and log_ports(log), timeout=15)
        if not ports:
            log.seek(0)
            return False, ["  meshfed did not start:"] + ["    " + line for line in log.read().splitlines()[-10:]]
        xport, dport = ports
        if not wait_for(lambda: get(dport, "/ready")[0] == 200, timeout=15):
            return False, ["  meshfed never became ready"]
        for i, (d, exp) in enumerate(plan):
            with_sends = {v: dict(zt.sends) for v, zt in clients.items()}
            if i and d:
                apply_step(d, demo)
            lines = []
            for v in viewers(case, exp):
                if v not in clients:
                    clients[v] = ztunnel.Ztunnel(src, xport, v, network_of(demo, v), reconnect=True,
                                                 authz=True)
                zt = clients[v]
                ok = lambda _: not compare(exp, zt)  # noqa: E731
                zt.wait(ok, timeout=10)
                wait_for(lambda: not compare_status(exp, dport, v), timeout=5)
                time.sleep(SETTLE)
                with zt.cond:
                    bad = compare(exp, zt)
                bad += compare_status(exp, dport, v)
                before = with_sends.get(v, {})
                bad += [f"  sent again {n} (expected no push of it in this step)"
                        for n in exp.get("not_resent") or [] if zt.sends.get(n, 0) != before.get(n, 0)]
                if zt.error is not None:
                    bad.append(f"  the Delta ADS stream ended: {zt.error}")
                if bad:
                    tag = f"step {i + 1} ({exp.get('do', '')}), " if len(plan) > 1 else ""
                    lines += [f"  {tag}viewer {v}:"] + bad
            if lines:
                return False, lines + log_warnings(log)
        allowed = case.get("allow_warnings") or []
        warned = [w for w in log_warnings(log) if not any(a in w for a in allowed)]
        if warned:
            # an input meshfed could not read would make `absent` pass for the wrong reason
            return False, ["  meshfed warned about the inputs:"] + warned
        return True, []
    finally:
        for zt in clients.values():
            zt.close()
        stop(proc, 10)
        log.close()


def run_all(binary, src, cases, jobs, verbose):
    ztunnel.protos(src)  # generate once, before the threads
    work = tempfile.mkdtemp(prefix="meshfed-conformance-")
    fails = passes = pending = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            futs = [pool.submit(run_case, binary, src, c, os.path.join(work, c["name"])) for c in cases]
            for case, fut in zip(cases, futs):
                try:
                    ok, lines = fut.result()
                except Exception as e:  # a broken case must not hide the others
                    ok, lines = False, [f"  runner error: {e!r}"]
                if case.get("status", "pass") == "pending":
                    pending += 1
                    note = "passes now: flip status to pass" if ok else case.get("reason", "")
                    print(f"PENDING {case['name']}  ({note})")
                    if verbose and not ok:
                        print("\n".join(lines))
                elif ok:
                    passes += 1
                    print(f"PASS    {case['name']}")
                else:
                    fails += 1
                    print(f"FAIL    {case['name']}")
                    print("\n".join(lines))
                sys.stdout.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(OUT_OF_SCOPE) as f:
        out = len(yaml.safe_load(f))
    print(f"conformance: {passes} passed, {fails} failed, {pending} pending, "
          f"{out} upstream cases out of scope (README.md)")
    return fails == 0


README_HEAD = """\
# Conformance with istiod's ambient index

Generated by `tests/conformance/run.py --readme` from the case data; do not edit by hand
(the `conformance` test fails when this file is stale).

What a ztunnel receives from meshfed, compared with what istiod's ambient index
(istio/istio `pilot/pkg/serviceregistry/ambient/`, master @86c9f01) gives for the same
objects, one directory per upstream test case (plus the cases of helpers the index uses:
`pilot/pkg/model/service_test.go` TestGetTrafficDistribution, seen as the Service's
`load_balancing`; `pkg/kube/util_test.go` TestCronJobMetadata / TestDeployMeta, seen as a
pod's `workload_name` and `canonical_name`; `pkg/kube/labels/labels_test.go`
TestCanonicalService, seen as its `canonical_name` and `canonical_revision`;
`pkg/config/kube/conversion_test.go` TestConvertProtocol, seen as a Service port's
`app_protocol`), and what it receives as `istio.security.Authorization` for the same
AuthorizationPolicies and PeerAuthentications (`authorization_test.go`, the
`TestRBACConvert` goldens of `testdata/`, the policy tests of `ambientindex_test.go`):

- `cases/<upstream_test>__<case>/clusters/<cluster>/*.yaml`: the Kubernetes objects of
  each cluster, as a real API server returns them (defaults such as `targetPort`,
  `ipFamilies`, `serviceAccountName` filled in; upstream's unit tests often use fake
  objects without them, and each case's note says what that changes), plus the
  EndpointSlices the controller would write, since meshfed ties pods to services
  through slices (docs/dataplane.md). The config cluster is `cluster0`; its `istio`
  ConfigMap holds `serviceScopeConfigs` where a case needs rules.
- `cases/<case>/expect.yaml`: `upstream` (file, test, case), `viewer` (the cluster
  whose ztunnel is compared, istiod's own cluster), `flags` (meshfed's
  `--cluster-id`, `--domain-suffix`, `--trust-domain`, `--root-namespace`,
  `--revision`), `status` (`pass` or `pending` with a `reason`), `note`,
  `allow_warnings` (text of warnings meshfed rightly logs about the inputs, such as
  clusters that disagree on a global service, which do not fail the case), and the
  expectation, any of:
  - `present` (resource name -> the Address, in `MessageToDict` form with proto field
    names, addresses as IP text, fields at their default value left out) and `absent`
    (Address names that must not be sent);
  - `policies_present` (resource name `<namespace>/<name>` -> the
    `istio.security.Authorization`, in the same form: xds/proto's field names `rules`,
    `clauses`, `matches`, which are ztunnel's for istio's `groups`, `rules`,
    `matches`; IPs as text with their `length`) and `policies_absent` (Authorization
    names that must not be sent); a name mapped to `null` must be sent, its fields
    not compared (where upstream asserts only that the policy exists);
  - `workload_policies` (Address name -> its Workload's `authorization_policies`, in
    order; `[]` for none), where upstream asserts only that field;
  - `not_resent` (Address or Authorization names that must not be sent again during
    the step, where upstream asserts that no event happens);
  - `policy_status` (policy `<namespace>/<name>` -> the status meshfed writes as the
    `ZtunnelAccepted` condition's `reason` and `message`, or `null` when the
    translation has no warning and the condition says `Accepted`), read from
    `/debug/authorizationz` of the viewer's cluster.

  The ztunnel client subscribes to both types on one Delta stream, as ztunnel does.
  The `note` says how the inputs differ from upstream's fake objects and why. A case
  compares only the resources it names, each field by field. A case with `steps`
  holds one expectation per step (`do` says what the step changes); a step's
  `clusters` directory replaces those clusters' files while the same ztunnel stays
  connected, as live edits would.
- `out_of_scope.yaml`: upstream cases not run, with the reason (ServiceEntry and
  WorkloadEntry are not implemented, nor status conditions; a few test only istiod
  internals, such as what it serves to waypoint proxies, which meshfed does not serve,
  or the status of policies only waypoints enforce).

`run.py MESHFED SOURCE_DIR [-k SUBSTRING] [-j JOBS] [-v]` starts the real meshfed with
`--demo` on a copy of each case (cases in parallel), connects a Delta ADS client per
viewer (`tests/ztunnel.py` with `authz=True`, which decodes with modules generated
from `xds/proto`), and compares with `tests/e2e_dataplane.py`'s `readable`/`diff`. It
prints PASS, FAIL or PENDING per case (a pending case that now passes says so) and
exits nonzero on any FAIL. A case also fails when meshfed logs a warning or error about
its inputs: an object meshfed could not read would otherwise make `absent` pass for the
wrong reason. ctest runs it as `conformance`.

Upstream runs most `ambientindex_test.go` tests twice, "base" and "multicluster
(enabled but unused)"; meshfed has only the multicluster path, so one case covers
both. Deliberate differences (docs/dataplane.md) are not pending: capacity counts
ready endpoints (the cases' pods are ready), SANs are sorted, pods are matched through
EndpointSlices. A ztunnel gets its own cluster's policies only (docs/limits.md); the
policy cases have one cluster, where that is all of them, as with istiod.

"""


def cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def readme():
    """README.md: the text above and every case, in scope or not, with its status."""
    cases = load_cases()
    with open(OUT_OF_SCOPE) as f:
        out = yaml.safe_load(f)
    npass = sum(c.get("status", "pass") == "pass" for c in cases)
    rows = [f"{len(cases)} cases: {npass} pass, {len(cases) - npass} pending; "
            f"{len(out)} upstream cases out of scope.", "",
            "| case | upstream test / case | status | reason (pending) |", "|---|---|---|---|"]
    for c in cases:
        up = c["upstream"]
        status = c.get("status", "pass")
        why = c.get("reason", "") if status == "pending" else ""
        rows.append(f"| `{c['name']}` | `{os.path.basename(up['file'])}` {up['test']} / {cell(up['case'])} "
                    f"| {status} | {cell(why)} |")
    for o in out:
        rows.append(f"| (out of scope) | `{os.path.basename(o['file'])}` {o['test']} / {cell(o['case'])} "
                    f"| pending | {cell(o['reason'])} |")
    return README_HEAD + "\n".join(rows) + "\n"


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--readme":
        sys.stdout.write(readme())
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("src")
    p.add_argument("-k", dest="pattern")
    p.add_argument("-j", dest="jobs", type=int, default=6)
    p.add_argument("-v", dest="verbose", action="store_true", help="show differences of pending cases")
    a = p.parse_args()
    ok = run_all(a.binary, a.src, load_cases(a.pattern), a.jobs, a.verbose)
    with open(os.path.join(HERE, "README.md")) as f:
        if f.read() != readme():
            ok = False
            print("FAIL    README.md is stale: tests/conformance/run.py --readme > tests/conformance/README.md")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
