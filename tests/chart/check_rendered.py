#!/usr/bin/python3
"""Checks one `helm template --include-crds` rendering of charts/meshfed.

usage: check_rendered.py SRC_DIR RENDERED_YAML RELEASE_NS OUT_DIR [VALUES_YAML]

Compares the rendered objects with what the chart promises for the merged
values (chart defaults + VALUES_YAML): container flags exist in
controller/config.c's settings table and carry the values, security context,
probes, RBAC verbs exactly, Secrets only through namespaced Roles, PDB iff
there are always two replicas or more, the HorizontalPodAutoscaler iff
autoscaling, Service ports, ServiceMonitor, the ServiceScope, and that the
CRD is structural. Prints "PASS name" / "FAIL name: why" lines. Writes
OUT_DIR/objects.json (rendered objects plus charts/meshfed/examples) and
OUT_DIR/crds.json for the OpenAPI validation in schema_validate.mjs.
"""
import copy
import json
import os
import re
import sys

import yaml

SRC, RENDERED, RELEASE_NS, OUT = sys.argv[1:5]
VALUES_FILE = sys.argv[5] if len(sys.argv) > 5 else None
CHART = os.path.join(SRC, "charts", "meshfed")
results = []


def check(name, cond, why=""):
    results.append((name, bool(cond), why))
    return bool(cond)


def merge(a, b):
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


with open(os.path.join(CHART, "values.yaml")) as f:
    values = yaml.safe_load(f)
if VALUES_FILE:
    with open(VALUES_FILE) as f:
        values = merge(values, yaml.safe_load(f))
sys_ns = values.get("systemNamespace") or RELEASE_NS
replicas = int(values["replicaCount"])
autoscaling = values["autoscaling"]
hpa_on = bool(autoscaling["enabled"])
least_replicas = int(autoscaling["minReplicas"]) if hpa_on else replicas
tls = bool(values["tls"]["enabled"])
plain = bool(values["xds"]["plaintextExposed"])
probe_port = int(values["probe"]["port"])
debug_port = int(values["debug"]["port"])
debug_exposed = bool(values["debug"]["exposed"] or values["serviceMonitor"]["enabled"])

with open(RENDERED) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
check("rendered: every object has apiVersion, kind, metadata.name",
      docs and all(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name") for d in docs),
      "some object lacks apiVersion/kind/name")


def of_kind(kind):
    return [d for d in docs if d["kind"] == kind]


def one(kind):
    objs = of_kind(kind)
    check(f"{kind}: exactly one", len(objs) == 1, f"found {len(objs)}")
    return objs[0] if objs else None


# ---------- meshfed's settings table ----------
with open(os.path.join(SRC, "controller", "config.c")) as f:
    config_c = f.read()
flags = {m[0] for m in re.findall(r'^\s*\{"([a-z-]+)", "([A-Z_]+)", T_', config_c, re.M)}
check("config.c: settings table parsed", {"cluster-id", "debug-listen", "xds-listen"} <= flags, str(flags))

# ---------- Deployment ----------
dep = one("Deployment")
if dep:
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    if hpa_on:
        check("Deployment: no replicas of its own with autoscaling (the HPA sets them)",
              "replicas" not in dep["spec"], str(dep["spec"].get("replicas")))
    else:
        check("Deployment: replicas", dep["spec"].get("replicas") == replicas, str(dep["spec"].get("replicas")))
    check("Deployment: namespace is the release namespace", dep["metadata"].get("namespace") == RELEASE_NS)
    sel = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    check("Deployment: selector matches pod labels", all(pod_labels.get(k) == v for k, v in sel.items()))
    psc = pod.get("securityContext", {})
    check("pod securityContext: runAsNonRoot, runAsUser 65532, seccomp RuntimeDefault",
          psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 and
          psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", json.dumps(psc))
    sc = c.get("securityContext", {})
    check("container securityContext: runAsNonRoot, runAsUser 65532",
          sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532, json.dumps(sc))
    check("container securityContext: readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True)
    check("container securityContext: allowPrivilegeEscalation false", sc.get("allowPrivilegeEscalation") is False)
    check("container securityContext: capabilities drop [ALL], none added",
          sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"))
    check("container securityContext: seccomp RuntimeDefault",
          sc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
        g = c.get(probe, {}).get("httpGet", {})
        port = named.get(g.get("port"), g.get("port"))
        check(f"{probe}: httpGet {path} on the probe listener {probe_port}",
              g.get("path") == path and port == probe_port, json.dumps(c.get(probe)))
    args = c.get("args", [])
    argmap = {}
    bad = []
    for a in args:
        m = re.match(r"^--([a-z-]+)=(.*)$", a)
        if not m:
            bad.append(a)
            continue
        argmap[m.group(1)] = m.group(2)
    check("args: all --flag=value", not bad, str(bad))
    unknown = sorted(set(argmap) - flags)
    check("args: every flag exists in controller/config.c", not unknown, str(unknown))
    want = {
        "cluster-id": str(values["clusterId"]),
        "system-namespace": sys_ns,
        "trust-domain": values["trustDomain"],
        "domain-suffix": values["domainSuffix"],
        "debounce-ms": str(values["debounceMs"]),
        "stale-after": str(values["staleAfter"]),
        "log-level": values["logLevel"],
        "log-format": values["logFormat"],
        # plaintext, unauthenticated xDS stays on loopback unless asked for
        "xds-listen": f"{'0.0.0.0' if plain else '127.0.0.1'}:{values['xds']['port']}",
        "xds-auth": values["xds"]["auth"],
        "xds-max-connection-age": str(values["xds"]["maxConnectionAge"]),
        "xds-max-connection-age-grace": str(values["xds"]["maxConnectionAgeGrace"]),
        "probe-listen": f"0.0.0.0:{probe_port}",
    }
    if values["xds"].get("allowedIdentities"):
        want["xds-allowed-identities"] = values["xds"]["allowedIdentities"]
    if values.get("network"):
        want["network"] = values["network"]
    for k, v in want.items():
        check(f"args: --{k}={v}", argmap.get(k) == v, f"got {argmap.get(k)!r}")
    check("args: --network only when set", ("network" in argmap) == bool(values.get("network")))
    ca = values["ca"]
    check("args: --ca", argmap.get("ca") == ("on" if ca["enabled"] else "off"), str(argmap.get("ca")))
    if ca["enabled"]:
        for k, v in (("ca-max-ttl", ca["maxTTL"]), ("ca-default-ttl", ca["defaultTTL"]),
                     ("ca-node-accounts", ca["nodeAccounts"])):
            check(f"args: --{k}={v}", argmap.get(k) == str(v), f"got {argmap.get(k)!r}")
    cmounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    cvols = {v["name"]: v for v in pod.get("volumes", [])}
    if ca["enabled"] and ca.get("cacertsSecret") and ca.get("cacertsFrom") == "mount":
        d = argmap.get("cacerts-dir", "")
        sec = cvols.get(cmounts.get(d, ""), {}).get("secret", {}).get("secretName")
        check("ca: --cacerts-dir is the mounted cacerts Secret", sec == ca["cacertsSecret"], f"{d} {sec}")
        check("ca: no --cacerts-secret with cacertsFrom mount", "cacerts-secret" not in argmap, str(argmap))
    else:
        check("ca: no --cacerts-dir unless cacertsFrom mount", "cacerts-dir" not in argmap, str(argmap))
        check("ca: no cacerts volume unless cacertsFrom mount", "cacerts" not in cvols, str(sorted(cvols)))
        if ca["enabled"]:
            check("ca: --cacerts-secret names ca.cacertsSecret (read through the API)",
                  argmap.get("cacerts-secret") == (ca.get("cacertsSecret") or ""), str(argmap.get("cacerts-secret")))
    dl = argmap.get("debug-listen", "")
    check("args: --debug-listen reachable by the kubelet on the probe port",
          dl.rsplit(":", 1)[-1] == str(debug_port) and not dl.startswith(("127.", "localhost", "[::1]")), dl)
    # meshfed refuses a non-loopback debug address without a token file
    tf = argmap.get("debug-token-file", "")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    tok_vol = vols.get(mounts.get(os.path.dirname(tf), ""), {})
    tok_secret = tok_vol.get("secret", {}).get("secretName")
    check("args: --debug-token-file from a mounted Secret", bool(tf) and bool(tok_secret), tf)
    want_secret = (values.get("debug") or {}).get("tokenSecret")
    if want_secret:
        check("debug token: the given Secret is used", tok_secret == want_secret, str(tok_secret))
    else:
        made = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == tok_secret]
        check("debug token: the chart creates the Secret with a non-empty token",
              len(made) == 1 and made[0].get("data", {}).get("token"), str(tok_secret))
    if tls and not values["tls"].get("secretName"):
        svc_name = (one("Service") or {}).get("metadata", {}).get("name")
        check("tls from the CA: no --tls-cert, --tls-dns-names the Service's name",
              "tls-cert" not in argmap and "tls-key" not in argmap and
              argmap.get("tls-dns-names") == f"{svc_name}.{RELEASE_NS}.svc", str(argmap))
        check("tls from the CA: no tls volume", "tls" not in {v["name"] for v in pod.get("volumes", [])})
        check("tls: --xds-tls-listen", argmap.get("xds-tls-listen") == f"0.0.0.0:{values['xds']['tlsPort']}")
    elif tls:
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        secret_vols = [n for n, v in vols.items() if v.get("secret", {}).get("secretName") == values["tls"]["secretName"]]
        ok = bool(secret_vols) and secret_vols[0] in mounts
        mp = mounts[secret_vols[0]]["mountPath"] if ok else ""
        check("tls: Secret mounted", ok and mounts[secret_vols[0]].get("readOnly") is True, json.dumps(vols))
        check("tls: --tls-cert/--tls-key under the Secret mount",
              argmap.get("tls-cert") == f"{mp}/tls.crt" and argmap.get("tls-key") == f"{mp}/tls.key", str(argmap))
        check("tls: --xds-tls-listen", argmap.get("xds-tls-listen") == f"0.0.0.0:{values['xds']['tlsPort']}")
    else:
        check("no tls: no TLS flags", not {"xds-tls-listen", "tls-cert", "tls-key"} & set(argmap), str(argmap))
    env = {e["name"]: e for e in c.get("env", [])}
    for n, fp in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        check(f"env {n} from the downward API",
              env.get(n, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == fp)
    pa = pod.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
    check("podAntiAffinity preferred by hostname",
          any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname" and
              t["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel for t in pa) or bool(values.get("affinity")))
    check("nodeSelector/tolerations from values",
          pod.get("nodeSelector", {}) == (values.get("nodeSelector") or {}) and
          pod.get("tolerations", []) == (values.get("tolerations") or []))
    sa_name = pod.get("serviceAccountName")
    check("ServiceAccount of the pod is rendered",
          any(d["metadata"]["name"] == sa_name for d in of_kind("ServiceAccount")), sa_name)
    cports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
else:
    pod_labels, sel, cports, sa_name = {}, {}, {}, None

# ---------- RBAC ----------
def rule_set(role):
    out = set()
    for r in role.get("rules", []):
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    out.add((g, res, v))
    return out


def expand(g, resources, verbs):
    return {(g, r, v) for r in resources for v in verbs}


# The rules fakekube enforces for tokens bound to the chart's roles
# (tests/fakekube/fakekube.py CHART_RBAC), so the C and e2e tests see what a
# real API server with this chart's RBAC answers: the rendered chart must
# grant exactly these.
sys.path.insert(0, os.path.join(SRC, "tests", "fakekube"))
from fakekube import CHART_RBAC  # noqa: E402


def of_rules(rules):
    return {(g, r, v) for g, r, verbs in rules for v in verbs}


ca_on = bool(values["ca"]["enabled"])
want_cluster = of_rules(CHART_RBAC["cluster"] + (CHART_RBAC["ca_cluster"] if ca_on else []))
want_secrets = of_rules(CHART_RBAC["system"] + (CHART_RBAC["ca_system"] if ca_on else []))
want_leases = of_rules(CHART_RBAC["release"])
check("ClusterRole grants Gateway API gateways get/list/watch (meshfed lists them)",
      expand("gateway.networking.k8s.io", ["gateways"], ["get", "list", "watch"]) <= want_cluster)
# every resource kube/informer.c lists is granted somewhere
kube_res = re.findall(r'\[KUBE_RES_\w+\] = \{"\w+", "(/apis?)/?([^"]*)",\s*"(\w+)"',
                      open(os.path.join(SRC, "kube", "informer.c")).read())
check("kube/informer.c resources found", len(kube_res) >= 9, str(kube_res))
for api, gv, plural in kube_res:
    group = "" if api == "/api" else gv.rsplit("/", 1)[0]
    granted = want_cluster | want_secrets
    check(f"chart grants list/watch on {plural} ({group or 'core'}), which kube/ lists",
          {(group, plural, "list"), (group, plural, "watch")} <= granted)
crs = of_kind("ClusterRole")
check("ClusterRole: exactly one", len(crs) == 1, str(len(crs)))
if crs:
    got = rule_set(crs[0])
    check("ClusterRole: verbs exactly as specified", got == want_cluster,
          f"extra {sorted(got - want_cluster)} missing {sorted(want_cluster - got)}")
for d in docs:
    if d["kind"] in ("ClusterRole", "Role"):
        check(f"{d['kind']} {d['metadata'].get('namespace', '')}/{d['metadata']['name']}: no wildcards",
              not any("*" in x for t in rule_set(d) for x in t))
check("no ClusterRole grants secrets", not any(t[1] == "secrets" for r in crs for t in rule_set(r)))
roles = of_kind("Role")
by_ns = {}
for r in roles:
    by_ns.setdefault(r["metadata"].get("namespace"), set()).update(rule_set(r))
check("Roles only in the release and system namespaces", set(by_ns) <= {RELEASE_NS, sys_ns}, str(set(by_ns)))
check("Role in the release namespace: leases get/create/update",
      want_leases <= by_ns.get(RELEASE_NS, set()))
check("secrets/configmaps get/list/watch in the system namespace", want_secrets <= by_ns.get(sys_ns, set()))
all_role = set().union(*by_ns.values()) if by_ns else set()
check("Roles grant exactly secrets/configmaps reads (with the CA: secrets create) and leases", all_role == want_secrets | want_leases,
      f"extra {sorted(all_role - want_secrets - want_leases)}")
secrets_ns = {ns for ns, s in by_ns.items() if any(t[1] == "secrets" for t in s)}
check("secrets readable only in the system namespace", secrets_ns == {sys_ns}, str(secrets_ns))
for b in of_kind("RoleBinding") + of_kind("ClusterRoleBinding"):
    ref = b["roleRef"]
    ns = b["metadata"].get("namespace")
    target = [r for r in docs if r["kind"] == ref["kind"] and r["metadata"]["name"] == ref["name"] and
              (ref["kind"] == "ClusterRole" or r["metadata"].get("namespace") == ns)]
    check(f"{b['kind']} {ns or ''}/{b['metadata']['name']}: role exists and subject is the pod's ServiceAccount",
          target and b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": RELEASE_NS}],
          json.dumps(b["subjects"]))
bound = {(b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace")) for b in of_kind("RoleBinding")}
check("every Role is bound", all(("Role", r["metadata"]["name"], r["metadata"].get("namespace")) in bound for r in roles))

# ---------- Service ----------
svc = one("Service")
if svc:
    names = [p["name"] for p in svc["spec"]["ports"]]
    want_names = (["grpc-xds"] if plain else []) + (["https-xds"] if tls else []) + \
        (["http-debug"] if debug_exposed else [])
    check("Service: ports " + ",".join(want_names), names == want_names, str(names))
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    check("Service: xDS ports", (not plain or ports.get("grpc-xds") == values["xds"]["port"]) and
          (not tls or ports.get("https-xds") == values["xds"]["tlsPort"]), str(ports))
    check("Service: targetPorts are container ports",
          all(p["targetPort"] in cports for p in svc["spec"]["ports"]), str(cports))
    check("Service: selector selects the pods",
          svc["spec"]["selector"] and all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()))

# ---------- PDB ----------
pdbs = of_kind("PodDisruptionBudget")
check(f"PodDisruptionBudget present iff there are always 2 replicas or more (at least {least_replicas})",
      len(pdbs) == (1 if least_replicas > 1 else 0), str(len(pdbs)))
for p in pdbs:
    check("PodDisruptionBudget: minAvailable 1 and selects the pods",
          p["spec"].get("minAvailable") == 1 and p["spec"]["selector"]["matchLabels"] == sel)

# ---------- HorizontalPodAutoscaler ----------
hpas = of_kind("HorizontalPodAutoscaler")
check("HorizontalPodAutoscaler present iff autoscaling.enabled", len(hpas) == (1 if hpa_on else 0), str(len(hpas)))
for h in hpas:
    hs = h["spec"]
    ref = hs.get("scaleTargetRef", {})
    check("HorizontalPodAutoscaler: autoscaling/v2, in the release namespace",
          h["apiVersion"] == "autoscaling/v2" and h["metadata"].get("namespace") == RELEASE_NS)
    check("HorizontalPodAutoscaler: scales the Deployment",
          bool(dep) and ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]},
          json.dumps(ref))
    check("HorizontalPodAutoscaler: min and max replicas from values",
          hs.get("minReplicas") == int(autoscaling["minReplicas"]) and
          hs.get("maxReplicas") == int(autoscaling["maxReplicas"]), f"{hs.get('minReplicas')} {hs.get('maxReplicas')}")
    want_metric = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": int(autoscaling["targetCPUUtilizationPercentage"])}}}]
    check("HorizontalPodAutoscaler: one CPU utilization target", hs.get("metrics") == want_metric,
          json.dumps(hs.get("metrics")))
    check("HorizontalPodAutoscaler: behavior from values", hs.get("behavior", {}) == (autoscaling.get("behavior") or {}),
          json.dumps(hs.get("behavior")))
    cpu_req = (((dep or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}])[0]
               .get("resources", {}).get("requests", {}).get("cpu"))
    check("HorizontalPodAutoscaler: the pods request CPU (utilization is a share of it)", bool(cpu_req))

# ---------- ServiceMonitor ----------
sms = of_kind("ServiceMonitor")
check("ServiceMonitor present iff serviceMonitor.enabled", len(sms) == (1 if values["serviceMonitor"]["enabled"] else 0))
for sm in sms:
    check("ServiceMonitor: scrapes /metrics on http-debug",
          sm["apiVersion"] == "monitoring.coreos.com/v1" and
          sm["spec"]["endpoints"][0]["port"] == "http-debug" and sm["spec"]["endpoints"][0]["path"] == "/metrics")

# ---------- CRD ----------
crd_docs = of_kind("CustomResourceDefinition")
check("CRD: exactly one (servicescopes.meshfed.io)",
      len(crd_docs) == 1 and crd_docs[0]["metadata"]["name"] == "servicescopes.meshfed.io")
schema = None
if crd_docs:
    crd = crd_docs[0]
    s = crd["spec"]
    check("CRD: meshfed.io ServiceScope, cluster-scoped",
          s["group"] == "meshfed.io" and s["names"]["kind"] == "ServiceScope" and
          s["names"]["plural"] == "servicescopes" and s["scope"] == "Cluster")
    vers = s["versions"]
    check("CRD: one served storage version v1alpha1",
          [v["name"] for v in vers] == ["v1alpha1"] and vers[0]["served"] and vers[0]["storage"])
    v = vers[0]
    check("CRD: status subresource", v.get("subresources", {}).get("status") == {})
    cols = {c["name"]: c for c in v.get("additionalPrinterColumns", [])}
    check("CRD: printer columns Accepted and Age",
          cols.get("Accepted", {}).get("jsonPath") == '.status.conditions[?(@.type=="Accepted")].status' and
          cols.get("Age", {}).get("jsonPath") == ".metadata.creationTimestamp")
    schema = v["schema"]["openAPIV3Schema"]
    problems = []

    def walk(node, p, root=False):
        if not isinstance(node, dict):
            problems.append(f"{p}: not a schema object")
            return
        if "type" not in node:
            problems.append(f"{p}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{p}: properties and additionalProperties")
        if node.get("additionalProperties") is False:
            problems.append(f"{p}: additionalProperties false")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{p}: x-kubernetes-preserve-unknown-fields")
        for bad in ("$ref", "definitions", "dependencies", "patternProperties", "uniqueItems"):
            if node.get(bad):
                problems.append(f"{p}: {bad} not allowed in a CRD schema")
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{p}: properties on type {node.get('type')}")
        if "items" in node and node.get("type") != "array":
            problems.append(f"{p}: items on type {node.get('type')}")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{p}: array without an items schema")
        for k, sub in (node.get("properties") or {}).items():
            walk(sub, f"{p}.{k}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{p}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{p}{{}}")
        for r in node.get("x-kubernetes-validations", []):
            if not r.get("rule"):
                problems.append(f"{p}: validation without a rule")

    walk(schema, "openAPIV3Schema", True)
    check("CRD: schema is structural", not problems, "; ".join(problems))
    try:
        rules = schema["properties"]["spec"]["properties"]["rules"]
        item = rules["items"]
        sel_n = dict(item["properties"]["namespaceSelector"]); sel_n.pop("description", None)
        sel_s = dict(item["properties"]["servicesSelector"]); sel_s.pop("description", None)
        me = sel_s["properties"]["matchExpressions"]["items"]
        ml = sel_s["properties"]["matchLabels"]["additionalProperties"]
        check("CRD: spec.rules maxItems 1000", rules.get("maxItems") == 1000)
        check("CRD: scope enum LOCAL/GLOBAL, required",
              item["properties"]["scope"]["enum"] == ["LOCAL", "GLOBAL"] and "scope" in item.get("required", []))
        check("CRD: namespaceSelector and servicesSelector share the LabelSelector schema", sel_n == sel_s)
        check("CRD: matchExpressions key (maxLength 317) and operator required, operator enum",
              set(me["required"]) == {"key", "operator"} and me["properties"]["key"]["maxLength"] == 317 and
              me["properties"]["operator"]["enum"] == ["In", "NotIn", "Exists", "DoesNotExist"])
        cel = " ".join(r["rule"] for r in me.get("x-kubernetes-validations", []))
        check("CRD: CEL rules for In/NotIn values and Exists/DoesNotExist without values",
              "In" in cel and "NotIn" in cel and "Exists" in cel and "DoesNotExist" in cel and "values" in cel)
        pat = re.compile(ml["pattern"])
        good = ["", "true", "a", "frontend", "v1.2_3-x", "A" * 63]
        badv = ["-a", "a-", "a b", "x/y", "_a"]
        check("CRD: label value pattern accepts valid values and rejects invalid",
              ml["maxLength"] == 63 and all(pat.fullmatch(x) for x in good) and not any(pat.fullmatch(x) for x in badv))
        st = schema["properties"]["status"]["properties"]
        cond = set(st["conditions"]["items"]["properties"])
        check("CRD: status.conditions fields", cond == {"type", "status", "reason", "message", "lastTransitionTime",
                                                        "observedGeneration"}, str(cond))
        check("CRD: status.rules {index, selectedServices}",
              set(st["rules"]["items"]["properties"]) == {"index", "selectedServices"})
    except (KeyError, TypeError) as e:
        check("CRD: expected schema layout", False, f"missing {e}")

# ---------- ServiceScope ----------
scopes = of_kind("ServiceScope")
want_rules = values.get("serviceScopes") or []
check("ServiceScope \"default\" present iff serviceScopes is non-empty",
      len(scopes) == (1 if want_rules else 0) and all(s["metadata"]["name"] == "default" for s in scopes))
for s in scopes:
    check("ServiceScope: rules are serviceScopes", s["spec"]["rules"] == want_rules)
    check("ServiceScope: cluster-scoped (no namespace)", "namespace" not in s["metadata"])

examples = []
exdir = os.path.join(CHART, "examples")
for fn in sorted(os.listdir(exdir)):
    with open(os.path.join(exdir, fn)) as f:
        examples += [d for d in yaml.safe_load_all(f) if d]
check("examples: at least 3 ServiceScopes", len([e for e in examples if e.get("kind") == "ServiceScope"]) >= 3)


def cel_problems(obj):
    out = []
    for i, r in enumerate(obj.get("spec", {}).get("rules", [])):
        for sk in ("namespaceSelector", "servicesSelector"):
            for j, e in enumerate((r.get(sk) or {}).get("matchExpressions", [])):
                vals = e.get("values") or []
                if e.get("operator") in ("In", "NotIn") and not vals:
                    out.append(f"rules[{i}].{sk}.matchExpressions[{j}]: In/NotIn without values")
                if e.get("operator") in ("Exists", "DoesNotExist") and vals:
                    out.append(f"rules[{i}].{sk}.matchExpressions[{j}]: values on Exists/DoesNotExist")
    return out


for o in scopes + examples:
    p = cel_problems(o)
    check(f"CEL rules hold for ServiceScope {o['metadata']['name']}", not p, "; ".join(p))
check("CEL emulation rejects a bad rule", cel_problems(
    {"spec": {"rules": [{"servicesSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}}))

os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "objects.json"), "w") as f:
    json.dump(docs + examples, f)
with open(os.path.join(OUT, "crds.json"), "w") as f:
    json.dump(crd_docs, f)

for name, ok, why in results:
    print(f"PASS {name}" if ok else f"FAIL {name}: {why}")
sys.exit(0 if all(ok for _, ok, _ in results) else 1)
