#!/usr/bin/python3
"""fakekube.py - a fake Kubernetes API server for meshfed's client tests.

Serves several clusters at once, one HTTPS port each, with the list/watch
wire behaviour of the real API server: bearer tokens (401/403), paginated
lists (limit/continue, 410 for expired continue tokens), a per-cluster
resourceVersion counter, chunked newline-delimited watch streams from a
resourceVersion (410 Gone when it is older than the retained history),
BOOKMARK events and timeoutSeconds.

Usage: fakekube.py --cert server.pem --key server.key [--token T] [--client-ca CA]
                   --cluster ID[=PORT] [--cluster ...] [--bookmark-interval S]
Prints "READY id=port id=port ..." on stdout once listening.

Control API (no auth, same port), all POST with a JSON body:
  /fake/apply      an object (or an array): create or replace it (ADDED/MODIFIED)
  /fake/delete     {"kind", "namespace", "name"}: delete it (DELETED)
  /fake/compact    forget history: watches from older rvs get 410
                   ({"disconnect": true} also drops open watches)
  /fake/disconnect abruptly close every open watch stream
  /fake/recreate   {"objects": [obj, ...]}: the cluster is recreated (a fresh etcd
                   replaying the same writes, a restore): every object keeps its
                   resourceVersion and gets a new uid, the given ones (matched by
                   kind, namespace and name) also take their new content; watch
                   history is gone and open watches drop, so clients relist
  /fake/malformed  {"line": "..."} or {"size": N}: send a garbage line on watches; with
                   "plural": on the first watch of that resource, even one opened later
  /fake/bookmark   send a BOOKMARK on every watch that allows them
  /fake/token      {"token": "...", "forbidden": ["..."]}: rotate accepted tokens
                   (TokenRequests with spec.boundObjectRef of kind Pod are
                   reviewed with user.extra pod-name and pod-uid, as upstream)
                   ({"tokens": [...]} accepts several at once; {"rbac": {token:
                   role}} also accepts tokens bound to ROLES, "chart" being
                   the chart's ClusterRole and Roles: they get 403 for what
                   those do not grant, before any 404, as with RBAC)
  /fake/pause      {"on": bool}: hold back watch events (to let clients miss them)
  /fake/config     {"gone": "event"|"http"}: how an old watch rv is refused;
                   {"expire_continue": N}: the next N continue tokens get 410;
                   {"throttle": N, "retry_after": S}: the next N lists and watches
                   get 429 TooManyRequests with Retry-After: S (API Priority
                   and Fairness);
                   {"empty_watches_s": S}: for S seconds every watch is answered
                   with an immediate, empty 200 (a misbehaving proxy);
                   {"endless": [plural, ...]}: lists of these never stop
                   paginating (every page brings new filler objects and a
                   continue token);
                   {"raw": {"plural": P, "items": [text, ...]}}: lists of P
                   (their last page) carry these texts verbatim as extra items,
                   JSON Python cannot write (duplicate keys, 1e400);
                   {"absent": [plural, ...]}: these APIs are not served (404,
                   as without their CRD; authorization still comes first)
  GET /fake/state  {"rv", "watches" (open), "watch_total", "lists", and what the
                   API paths cost: "requests" and "bytes" (response bytes, headers
                   and bodies before TLS) by "verb resource" ("watch pods",
                   "update leases", "patch servicescopes/status"), and both per
                   bearer token under "tokens" (give each client its own token
                   to tell them apart)}

Writes behave like the API server's: GET of one object; POST creates (201,
409 AlreadyExists; 403 with cause NamespaceTerminating in a Namespace that
has a metadata.deletionTimestamp); PUT replaces with optimistic concurrency (409 Conflict
when metadata.resourceVersion is set and stale, 404 when absent); PATCH
with application/merge-patch+json (415 for other patch types); DELETE (200
with the object; preconditions.resourceVersion honoured). ServiceScopes have
a status subresource: PUT/PATCH .../NAME/status change only .status, the main
resource ignores .status. Every write bumps the resourceVersion and shows on
watches. Errors are Status objects. Leases live under
/apis/coordination.k8s.io/v1/namespaces/NS/leases.
"""
import argparse
import base64
import datetime
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = {
    "ServiceAccount": ("serviceaccounts", "v1"),
    "Gateway": ("gateways", "gateway.networking.k8s.io/v1"),
    "Namespace": ("namespaces", "v1"),
    "Service": ("services", "v1"),
    "EndpointSlice": ("endpointslices", "discovery.k8s.io/v1"),
    "Pod": ("pods", "v1"),
    "Node": ("nodes", "v1"),
    "ServiceScope": ("servicescopes", "meshfed.io/v1alpha1"),
    "Secret": ("secrets", "v1"),
    "ConfigMap": ("configmaps", "v1"),
    "Lease": ("leases", "coordination.k8s.io/v1"),
    "AuthorizationPolicy": ("authorizationpolicies", "security.istio.io/v1"),
    "PeerAuthentication": ("peerauthentications", "security.istio.io/v1"),
}
CLUSTER_SCOPED = {"namespaces", "nodes", "servicescopes"}
STATUS_SUBRESOURCE = {"servicescopes", "authorizationpolicies"}
PLURALS = {p: (k, gv) for k, (p, gv) in KINDS.items()}
HISTORY = 1000

# The chart's RBAC (charts/meshfed/templates/clusterrole.yaml and role.yaml),
# as (apiGroup, resource, verbs): cluster-wide, and namespaced in the system
# namespace (Secrets, the istio ConfigMap) and the release namespace
# (Leases), both istio-system here. tests/chart/check_rendered.py checks
# that the rendered chart grants exactly these, so the tests that give
# meshfed a token bound to them see what a real API server with the chart
# installed would answer.
SYSTEM_NAMESPACE = "istio-system"
READ = ("get", "list", "watch")
CHART_RBAC = {
    "cluster": [("", "namespaces", READ), ("", "services", READ), ("", "pods", READ),
                ("", "nodes", READ), ("discovery.k8s.io", "endpointslices", READ),
                ("meshfed.io", "servicescopes", READ),
                ("meshfed.io", "servicescopes/status", ("update", "patch")),
                ("gateway.networking.k8s.io", "gateways", READ),
                ("security.istio.io", "authorizationpolicies", READ),
                ("security.istio.io", "peerauthentications", READ),
                ("security.istio.io", "authorizationpolicies/status", ("update", "patch")),
                ("authentication.k8s.io", "tokenreviews", ("create",))],
    "system": [("", "secrets", READ), ("", "configmaps", READ)],
    "release": [("coordination.k8s.io", "leases", ("get", "create", "update"))],
    # with ca.enabled (the default): istio-ca-root-cert in every namespace,
    # the self-signed root's istio-ca-secret in the system namespace
    "ca_cluster": [("", "configmaps", READ + ("create", "update"))],
    "ca_system": [("", "secrets", ("create",))],
}
# The chart before it granted Gateways (what a real cluster answered 403 to).
ROLES = {
    "chart": CHART_RBAC,
    "chart-without-gateways": dict(CHART_RBAC, cluster=[
        r for r in CHART_RBAC["cluster"] if r[1] != "gateways"]),
    "chart-without-ca": dict(CHART_RBAC, ca_cluster=[], ca_system=[]),
}


def rbac_allows(rules, group, resource, verb, ns):
    """Whether RBAC rules (a CHART_RBAC-shaped dict) allow verb on
    group/resource (with "/subresource") in namespace ns (None: cluster)."""
    scopes = ["cluster", "ca_cluster"]
    if ns == SYSTEM_NAMESPACE:
        scopes += ["system", "release", "ca_system"]
    return any(g == group and r == resource and verb in verbs
               for sc in scopes for g, r, verbs in rules.get(sc, []))


def request_attributes(method, path, query):
    """(group, resource[/sub], namespace, verb) of an API request, as the
    API server's authorizer sees it: known resource or not, so that
    authorization comes before the 404 of a resource that does not exist.
    None for paths outside /api and /apis."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        ns, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "get" if named else ("watch" if query.get("watch") in ("1", "true") else "list")
    return group, resource, ns, verb


class Cluster:
    def __init__(self, cid, token):
        self.id = cid
        self.cond = threading.Condition()
        self.rv = 1
        self.objects = {}  # (plural, ns, name) -> obj
        self.history = []  # (rv, plural, type, obj)
        self.compacted = 0  # watches need rv >= compacted
        self.tokens = {token}
        self.sa_tokens = {}  # TokenRequest tokens -> (namespace, name, audiences)
        self.sa_bound = {}  # of those, the ones bound to a pod -> (pod name, pod uid)
        self.forbidden = set()
        self.rbac = {}  # token -> ROLES name: authorized by those rules only
        self.absent = set()  # plurals whose API this cluster does not serve (404)
        self.paused = False
        self.gone = "event"
        self.expire_continue = 0  # the next N continue tokens are "too old"
        self.throttle = 0  # the next N lists/watches get 429 (API Priority and Fairness)
        self.retry_after = 1
        self.disconnects = 0
        self.malformed = []  # (seq, line)
        self.targeted = []  # [plural, line]: for the next watch of plural
        self.bookmarks = 0
        self.watches = 0
        self.watch_total = 0  # watch requests ever served
        self.lists = 0
        self.empty_watch_until = 0.0  # until then, watches get an immediate empty 200
        self.endless = set()  # plurals whose lists never stop paginating
        self.raw = {}  # plural -> raw JSON texts listed after its objects
        self.stats_lock = threading.Lock()  # what API requests cost, by verb and resource
        self.stats = {"requests": {}, "bytes": {}, "tokens": {}}

    def count(self, token, key, requests, nbytes):
        """Adds a request or response bytes to key ("verb resource"), in all
        and for token."""
        with self.stats_lock:
            t = self.stats["tokens"].setdefault(token or "", {"requests": {}, "bytes": {}})
            for d in (self.stats, t):
                d["requests"][key] = d["requests"].get(key, 0) + requests
                d["bytes"][key] = d["bytes"].get(key, 0) + nbytes

    def record(self, plural, typ, obj):
        self.history.append((self.rv, plural, typ, json.loads(json.dumps(obj))))
        if len(self.history) > HISTORY:
            self.compacted = self.history[0][0]
            del self.history[0]
        self.cond.notify_all()


def status(code, reason, msg):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": msg, "reason": reason, "code": code}


def matches(obj, ns, labelsel, fieldsel):
    md = obj.get("metadata", {})
    if ns is not None and md.get("namespace") != ns:
        return False
    for term in filter(None, (labelsel or "").split(",")):
        k, _, v = term.partition("=")
        if md.get("labels", {}).get(k) != v:
            return False
    for term in filter(None, (fieldsel or "").split(",")):
        k, _, v = term.partition("=")
        field = {"metadata.name": md.get("name"), "metadata.namespace": md.get("namespace")}
        if field.get(k) != v:
            return False
    return True


class _CountingWriter:
    """The connection's writer, adding every byte sent for an API request to
    that request's verb and resource (the control paths are not counted)."""

    def __init__(self, inner, handler):
        self.inner, self.handler = inner, handler

    def write(self, data):
        n = self.inner.write(data)
        acct = getattr(self.handler, "acct", None)
        if acct:
            self.handler.cl.count(acct[0], acct[1], 0, len(data))
        return n

    def __getattr__(self, name):
        return getattr(self.inner, name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        self.wfile = _CountingWriter(self.wfile, self)

    def parse_request(self):
        """Also notes which token and "verb resource" this request counts
        for (None for the control paths and what is not an API path)."""
        self.acct = None
        if not super().parse_request():
            return False
        u = urllib.parse.urlparse(self.path)
        attrs = None if u.path.startswith("/fake/") else request_attributes(
            self.command, u.path, {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()})
        if attrs:
            h = self.headers.get("Authorization", "")
            self.acct = (h[7:] if h.startswith("Bearer ") else "", "%s %s" % (attrs[3], attrs[1]))
            self.cl.count(self.acct[0], self.acct[1], 1, 0)
        return True

    @property
    def cl(self):
        return self.server.cluster

    def send_json(self, code, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # ---------- control ----------

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        path = urllib.parse.urlparse(self.path).path
        if path == "/apis/authentication.k8s.io/v1/tokenreviews":
            return self.token_review(raw)
        if not path.startswith("/fake/"):
            return self.write("POST", raw)
        body = json.loads(raw or b"{}")
        cl = self.cl
        with cl.cond:
            if path == "/fake/apply" and isinstance(body, list):
                return self.send_json(200, [self.apply(o) for o in body])
            if path == "/fake/apply":
                return self.send_json(200, self.apply(body))
            if path == "/fake/delete":
                return self.send_json(200, self.delete(body))
            if path == "/fake/compact":
                cl.compacted = cl.rv
                cl.history = []
                if body.get("disconnect"):
                    cl.disconnects += 1
            elif path == "/fake/disconnect":
                cl.disconnects += 1
            elif path == "/fake/recreate":
                self.recreate(body.get("objects", []))
            elif path == "/fake/malformed":
                line = body.get("line") or "x" * int(body.get("size", 0)) or "{not json"
                if body.get("plural"):
                    cl.targeted.append([body["plural"], line])
                else:
                    cl.malformed.append((len(cl.malformed) + 1, line))
            elif path == "/fake/bookmark":
                cl.bookmarks += 1
            elif path == "/fake/token":
                cl.tokens = set(body.get("tokens", []))
                if "token" in body:
                    cl.tokens.add(body["token"])
                cl.forbidden = set(body.get("forbidden", []))
                cl.rbac = dict(body.get("rbac", {}))
                cl.tokens |= set(cl.rbac)
            elif path == "/fake/pause":
                cl.paused = bool(body.get("on"))
            elif path == "/fake/config":
                cl.gone = body.get("gone", cl.gone)
                cl.expire_continue = int(body.get("expire_continue", cl.expire_continue))
                cl.throttle = int(body.get("throttle", cl.throttle))
                cl.retry_after = int(body.get("retry_after", cl.retry_after))
                if "empty_watches_s" in body:
                    cl.empty_watch_until = time.monotonic() + float(body["empty_watches_s"])
                if "endless" in body:
                    cl.endless = set(body["endless"])
                if "absent" in body:
                    cl.absent = set(body["absent"])
                if "raw" in body:
                    cl.raw[body["raw"]["plural"]] = list(body["raw"]["items"])
            else:
                return self.send_json(404, status(404, "NotFound", "no such control"))
            cl.cond.notify_all()
            self.send_json(200, {"rv": cl.rv})

    @staticmethod
    def normalize(obj):
        """What the API server does on write: a Secret's stringData is merged
        into data, base64-encoded."""
        if obj.get("kind") == "Secret" and isinstance(obj.get("stringData"), dict):
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()

    def apply(self, obj):
        self.normalize(obj)
        cl = self.cl
        plural, gv = KINDS[obj["kind"]]
        obj.setdefault("apiVersion", gv)
        md = obj.setdefault("metadata", {})
        key = (plural, md.get("namespace"), md["name"])
        cl.rv += 1
        md["resourceVersion"] = str(cl.rv)
        md.setdefault("uid", "uid-%s-%d" % (cl.id, cl.rv))
        typ = "MODIFIED" if key in cl.objects else "ADDED"
        cl.objects[key] = obj
        cl.record(plural, typ, obj)
        return obj

    def recreate(self, objs):
        cl = self.cl
        cl.recreations = getattr(cl, "recreations", 0) + 1
        for o in objs:
            self.normalize(o)
            plural = KINDS[o["kind"]][0]
            md = o.setdefault("metadata", {})
            key = (plural, md.get("namespace"), md["name"])
            o.setdefault("apiVersion", KINDS[o["kind"]][1])
            md["resourceVersion"] = cl.objects[key]["metadata"]["resourceVersion"]
            cl.objects[key] = o
        for (plural, ns, name), o in cl.objects.items():
            md = o["metadata"]
            md["uid"] = "uid-%s-r%d-%s" % (cl.id, cl.recreations, md["resourceVersion"])
        cl.rv += 1  # every watch, even one from the newest rv, gets 410
        cl.compacted = cl.rv
        cl.history = []
        cl.disconnects += 1

    def delete(self, body):
        cl = self.cl
        plural = KINDS[body["kind"]][0]
        key = (plural, body.get("namespace"), body["name"])
        obj = cl.objects.pop(key, None)
        if obj is None:
            return status(404, "NotFound", "not found")
        cl.rv += 1
        obj["metadata"]["resourceVersion"] = str(cl.rv)
        cl.record(plural, "DELETED", obj)
        return obj

    # ---------- the API ----------

    def route(self):
        u = urllib.parse.urlparse(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
        parts = [p for p in u.path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            gv, rest = parts[1] + "/" + parts[2], parts[3:]
        else:
            return None
        if len(rest) == 1:
            ns, plural = None, rest[0]
        elif len(rest) == 3 and rest[0] == "namespaces":
            ns, plural = rest[1], rest[2]
        else:
            return None
        if plural not in PLURALS or PLURALS[plural][1] != gv:
            return None
        return plural, ns, q

    def client_cert(self):
        try:
            return self.connection.getpeercert()  # {} or None without a verified cert
        except (AttributeError, ValueError):
            return None

    def auth(self):
        h = self.headers.get("Authorization", "")
        tok = h[7:] if h.startswith("Bearer ") else None
        if tok in self.cl.forbidden:
            self.send_json(403, status(403, "Forbidden",
                                      'forbidden: User "test" cannot list resource'))
            return False
        if tok not in self.cl.tokens and not (tok is None and self.client_cert()):
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return False
        role = self.cl.rbac.get(tok)
        u = urllib.parse.urlparse(self.path)
        attrs = request_attributes(self.command, u.path, {
            k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()})
        if role is not None and attrs is not None:
            group, resource, ns, verb = attrs
            if not rbac_allows(ROLES[role], group, resource, verb, ns):
                where = ' in the namespace "%s"' % ns if ns else " at the cluster scope"
                self.send_json(403, status(
                    403, "Forbidden", '%s%s is forbidden: User "system:serviceaccount:%s:meshfed" '
                    'cannot %s resource "%s" in API group "%s"%s' % (
                        resource, "." + group if group else "", SYSTEM_NAMESPACE, verb,
                        resource, group, where)))
                return False
        return True

    def do_GET(self):
        if self.path.startswith("/fake/state"):
            cl = self.cl
            with cl.cond:
                with cl.stats_lock:
                    stats = json.loads(json.dumps(cl.stats))
                return self.send_json(200, dict(stats, rv=cl.rv, watches=cl.watches,
                                                watch_total=cl.watch_total, lists=cl.lists))
        # authentication, then authorization, then routing: a 403 comes
        # before the 404 of an API that is not installed, as in a real server
        if not self.auth():
            return
        r = self.route()
        if r is not None and r[0] in self.cl.absent:
            r = None
        elif r is None and self.route_object():
            return self.write("GET", b"")
        if r is None:
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                              "the requested resource"))
        plural, ns, q = r
        with self.cl.cond:
            throttled = self.cl.throttle > 0
            self.cl.throttle = max(0, self.cl.throttle - 1)
        if throttled:
            ra = self.cl.retry_after
            st = status(429, "TooManyRequests", "Too many requests, please try again later.")
            st["details"] = {"retryAfterSeconds": ra}
            return self.send_json(429, st, [("Retry-After", str(ra))])
        if q.get("watch") in ("1", "true"):
            return self.watch(plural, ns, q)
        return self.list(plural, ns, q)

    def list(self, plural, ns, q):
        cl = self.cl
        kind, gv = PLURALS[plural]
        limit = int(q.get("limit", "0") or 0)
        with cl.cond:
            cl.lists += 1
            rv, start = cl.rv, None
            if q.get("continue"):
                tok = json.loads(base64.b64decode(q["continue"]))
                rv, start = tok["rv"], tok["start"]
                if rv < cl.compacted or cl.expire_continue > 0:
                    cl.expire_continue = max(0, cl.expire_continue - 1)
                    return self.send_json(410, status(
                        410, "Expired", "The provided continue parameter is too old to "
                        "display a consistent list result. You can start a new list "
                        "without the continue parameter."))
            keys = sorted(k for k, o in cl.objects.items() if k[0] == plural and
                          matches(o, ns, q.get("labelSelector"), q.get("fieldSelector")))
            keys = [k for k in keys if start is None or "%s/%s" % (k[1], k[2]) > start]
            more = limit and len(keys) > limit
            if more:
                keys = keys[:limit]
            items = [json.loads(json.dumps(cl.objects[k])) for k in keys]
        if plural in cl.endless:
            page = tok.get("page", 0) + 1 if q.get("continue") else 0
            for i in range(limit or 500):
                items.append({"metadata": {"name": "endless-%d-%d" % (page, i),
                                           "namespace": "default",
                                           "resourceVersion": str(rv)}})
            more, keys = True, [(plural, "~", "~")]
        for it in items:  # like the real server: list items lack kind/apiVersion
            it.pop("kind", None)
            it.pop("apiVersion", None)
        md = {"resourceVersion": str(rv)}
        if plural in cl.endless:
            md["continue"] = base64.b64encode(json.dumps(
                {"rv": rv, "start": "~/~", "page": page}).encode()).decode()
        elif more:
            last = "%s/%s" % (keys[-1][1], keys[-1][2])
            md["continue"] = base64.b64encode(json.dumps(
                {"rv": rv, "start": last}).encode()).decode()
        raw = [] if more else cl.raw.get(plural, [])
        body = {"kind": kind + "List", "apiVersion": gv, "metadata": md, "items": "@ITEMS@"}
        text = "[" + ", ".join([json.dumps(it) for it in items] + raw) + "]"
        data = json.dumps(body).replace('"@ITEMS@"', text).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def watch(self, plural, ns, q):
        cl = self.cl
        kind, gv = PLURALS[plural]
        try:
            rv = int(q.get("resourceVersion") or 0)
        except ValueError:
            return self.send_json(400, status(400, "BadRequest", "bad resourceVersion"))
        deadline = time.monotonic() + int(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        sel = (ns, q.get("labelSelector"), q.get("fieldSelector"))
        with cl.cond:
            cl.watch_total += 1
            empty = time.monotonic() < cl.empty_watch_until
        if empty:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with cl.cond:
            too_old = rv < cl.compacted
            if too_old and cl.gone == "http":
                return self.send_json(410, status(410, "Expired", "too old resource version"))
            cl.watches += 1
            seen = (cl.disconnects, len(cl.malformed), cl.bookmarks)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if too_old:
                st = status(410, "Expired", "too old resource version: %d (%d)" %
                            (rv, cl.compacted))
                self.chunk(json.dumps({"type": "ERROR", "object": st}).encode() + b"\n")
            else:
                self.stream(plural, kind, gv, rv, sel, deadline, bookmarks, seen)
            self.wfile.write(b"0\r\n\r\n")
        except _Disconnect:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except OSError:
            self.close_connection = True
        finally:
            with cl.cond:
                cl.watches -= 1

    def stream(self, plural, kind, gv, rv, sel, deadline, bookmarks, seen):
        cl = self.cl
        disc, mal, bm = seen
        interval = self.server.bookmark_interval
        next_bm = time.monotonic() + interval if interval else None
        while True:
            out = []
            with cl.cond:
                now = time.monotonic()
                if now >= deadline:
                    return
                if cl.disconnects != disc:
                    raise _Disconnect()
                if not cl.paused:
                    for erv, p, typ, obj in cl.history:
                        if erv > rv and p == plural and matches(obj, *sel):
                            out.append({"type": typ, "object": obj})
                    if cl.history and cl.history[-1][0] > rv:
                        rv = max(rv, cl.history[-1][0])
                for seq, line in cl.malformed[mal:]:
                    out.append(line)
                mal = len(cl.malformed)
                for t in [t for t in cl.targeted if t[0] == plural]:
                    out.append(t[1])
                    cl.targeted.remove(t)
                want_bm = cl.bookmarks != bm or (next_bm and now >= next_bm)
                bm = cl.bookmarks
                if want_bm and bookmarks and not cl.paused:
                    rv = max(rv, cl.rv)
                    out.append({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": gv,
                        "metadata": {"resourceVersion": str(rv)}}})
                    next_bm = now + interval if interval else None
                if not out:
                    cl.cond.wait(min(0.2, max(0.0, deadline - now)))
                    continue
            for ev in out:
                data = ev if isinstance(ev, str) else json.dumps(ev)
                self.chunk(data.encode() + b"\n")


    # ---------- writes ----------

    def do_PUT(self):
        self.write("PUT", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def do_PATCH(self):
        self.write("PATCH", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def do_DELETE(self):
        self.write("DELETE", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def route_object(self):
        """(plural, ns, name, subresource) for API paths of a collection
        (name None) or one object, else None."""
        parts = [p for p in urllib.parse.urlparse(self.path).path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            gv, rest = parts[1] + "/" + parts[2], parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in PLURALS:
            ns, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 3 or rest[0] not in PLURALS or PLURALS[rest[0]][1] != gv:
            return None
        plural = rest[0]
        if (ns is None) != (plural in CLUSTER_SCOPED):
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub == "token" and plural == "serviceaccounts":
            return plural, ns, name, sub
        if sub is not None and (sub != "status" or plural not in STATUS_SUBRESOURCE):
            return None
        return plural, ns, name, sub

    def write(self, method, raw):
        if not self.auth():
            return
        r = self.route_object()
        if r is None or r[0] in self.cl.absent:
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                              "the requested resource"))
        plural, ns, name, sub = r
        if sub == "token" and method == "POST":
            return self.token_request(ns, name, raw)
        if (name is None) != (method == "POST") or (sub and method not in ("GET", "PUT",
                                                                          "PATCH")):
            return self.send_json(405, status(405, "MethodNotAllowed",
                                              "the server does not allow this method on "
                                              "the requested resource"))
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as e:
                return self.send_json(400, status(400, "BadRequest", "invalid JSON: %s" % e))
        if method in ("POST", "PUT", "PATCH") and not isinstance(body, dict):
            return self.send_json(400, status(400, "BadRequest", "the body must be an object"))
        with self.cl.cond:
            code, out = getattr(self, "w_" + method.lower())(plural, ns, name, sub, body)
        self.send_json(code, out)

    def token_request(self, ns, name, raw):
        """TokenRequest for a ServiceAccount: a new bearer token this cluster
        accepts from now on (as the API server's token issuer would)."""
        cl = self.cl
        with cl.cond:
            if ("serviceaccounts", ns, name) not in cl.objects:
                return self.send_json(*self.not_found("serviceaccounts", name))
            try:
                spec = (json.loads(raw or b"{}").get("spec") or {})
            except ValueError:
                spec = {}
            cl.rv += 1
            token = "sa.%s.%s.%d" % (ns, name, cl.rv)
            cl.tokens.add(token)
            cl.sa_tokens[token] = (ns, name, list(spec.get("audiences") or []))
            ref = spec.get("boundObjectRef") or {}
            if ref.get("kind") == "Pod":  # a token bound to a pod, as the kubelet mounts
                cl.sa_bound[token] = (ref.get("name", ""), ref.get("uid", ""))
        exp = int(spec.get("expirationSeconds") or 3600)
        self.send_json(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "metadata": {"name": name, "namespace": ns},
                             "spec": {"expirationSeconds": exp},
                             "status": {"token": token, "expirationTimestamp":
                                        time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(time.time() + exp))}})

    def token_review(self, raw):
        """TokenReview (authentication.k8s.io/v1): authenticated for tokens
        this cluster's TokenRequest minted, with the service account as the
        user and status.audiences the intersection with the token's (all
        requested ones when it was minted without). The reviewer must
        present an accepted token itself."""
        if not self.auth():
            return
        try:
            spec = json.loads(raw or b"{}").get("spec") or {}
        except (ValueError, AttributeError):
            return self.send_json(400, status(400, "BadRequest", "invalid TokenReview"))
        want = list(spec.get("audiences") or [])
        with self.cl.cond:
            sa = self.cl.sa_tokens.get(spec.get("token"))
            bound = self.cl.sa_bound.get(spec.get("token"))
        st = {"authenticated": False, "error": "[invalid bearer token]"}
        if sa:
            ns, name, have = sa
            got = [a for a in want if not have or a in have] if want else have
            if want and not got:
                st = {"authenticated": False, "error": "[invalid bearer token, token audiences "
                      "%s is invalid for the target audiences %s]" % (have, want)}
            else:
                st = {"authenticated": True, "audiences": got,
                      "user": {"username": "system:serviceaccount:%s:%s" % (ns, name),
                               "uid": "uid-sa-%s-%s" % (ns, name),
                               "groups": ["system:serviceaccounts",
                                          "system:serviceaccounts:" + ns,
                                          "system:authenticated"]}}
                if bound:  # what the API server adds for a pod-bound token
                    st["user"]["extra"] = {"authentication.kubernetes.io/pod-name": [bound[0]],
                                           "authentication.kubernetes.io/pod-uid": [bound[1]]}
        self.send_json(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                             "metadata": {}, "spec": spec, "status": st})

    def err(self, code, reason, plural, name, msg):
        st = status(code, reason, msg)
        group = PLURALS[plural][1].rpartition("/")[0]
        st["details"] = {"name": name, "group": group, "kind": plural}
        return code, st

    def qual(self, plural):
        group = PLURALS[plural][1].rpartition("/")[0]
        return plural + ("." + group if group else "")

    def not_found(self, plural, name):
        return self.err(404, "NotFound", plural, name,
                        '%s "%s" not found' % (self.qual(plural), name))

    def conflict(self, plural, name):
        return self.err(409, "Conflict", plural, name,
                        'Operation cannot be fulfilled on %s "%s": the object has been '
                        'modified; please apply your changes to the latest version and '
                        'try again' % (self.qual(plural), name))

    def check_body(self, plural, ns, name, obj):
        """A 400 (code, Status) when obj does not fit the path, else None;
        fills in kind, apiVersion and metadata.namespace."""
        kind, gv = PLURALS[plural]
        self.normalize(obj)
        if obj.setdefault("kind", kind) != kind or obj.setdefault("apiVersion", gv) != gv:
            return self.err(400, "BadRequest", plural, name, "the kind or apiVersion of the "
                            "object does not match the request path")
        md = obj.get("metadata")
        if not isinstance(md, dict) or not md.get("name"):
            return self.err(400, "BadRequest", plural, name, "metadata.name: Required value")
        if name is not None and md["name"] != name:
            return self.err(400, "BadRequest", plural, name,
                            "the name of the object (%s) does not match the name on the URL "
                            "(%s)" % (md["name"], name))
        if md.setdefault("namespace", ns) != ns:
            return self.err(400, "BadRequest", plural, name, "the namespace of the provided "
                            "object does not match the namespace sent on the request")
        if ns is None:
            md.pop("namespace")
        return None

    def store(self, plural, key, obj, typ):
        cl = self.cl
        cl.rv += 1
        obj["metadata"]["resourceVersion"] = str(cl.rv)
        if typ != "DELETED":
            cl.objects[key] = obj
        cl.record(plural, typ, obj)
        return json.loads(json.dumps(obj))

    def w_get(self, plural, ns, name, sub, body):
        obj = self.cl.objects.get((plural, ns, name))
        if obj is None:
            return self.not_found(plural, name)
        return 200, obj

    def w_post(self, plural, ns, name, sub, obj):
        bad = self.check_body(plural, ns, None, obj)
        if bad:
            return bad
        md = obj["metadata"]
        key = (plural, ns, md["name"])
        nso = self.cl.objects.get(("namespaces", None, ns)) if ns else None
        if nso and nso["metadata"].get("deletionTimestamp"):  # NamespaceLifecycle admission
            code, st = self.err(403, "Forbidden", plural, md["name"],
                                '%s "%s" is forbidden: unable to create new content in namespace '
                                '%s because it is being terminated' % (self.qual(plural), md["name"], ns))
            st["details"]["causes"] = [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                        "message": "namespace %s is being terminated" % ns}]
            return code, st
        if key in self.cl.objects:
            return self.err(409, "AlreadyExists", plural, md["name"], '%s "%s" already exists'
                            % (self.qual(plural), md["name"]))
        for f in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            md.pop(f, None)
        if plural in STATUS_SUBRESOURCE:
            obj.pop("status", None)
        md["uid"] = "uid-%s-%d" % (self.cl.id, self.cl.rv + 1)
        md["creationTimestamp"] = datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        md["generation"] = 1
        return 201, self.store(plural, key, obj, "ADDED")

    def replace(self, plural, key, old, new, sub):
        """Stores new in place of old, as the main resource or its status."""
        if sub == "status":  # only .status moves
            obj = json.loads(json.dumps(old))
            if "status" in new:
                obj["status"] = new["status"]
            else:
                obj.pop("status", None)
            new = obj
        else:
            if plural in STATUS_SUBRESOURCE:  # the main resource ignores .status
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            md, omd = new["metadata"], old["metadata"]
            for f in ("uid", "creationTimestamp", "generation"):
                if f in omd:
                    md[f] = omd[f]
            spec = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            ospec = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            if spec != ospec:
                md["generation"] = omd.get("generation", 0) + 1
        if new == old:  # a no-op write keeps the resourceVersion, as the real server
            return 200, json.loads(json.dumps(old))
        return 200, self.store(plural, key, new, "MODIFIED")

    def w_put(self, plural, ns, name, sub, obj):
        bad = self.check_body(plural, ns, name, obj)
        if bad:
            return bad
        key = (plural, ns, name)
        old = self.cl.objects.get(key)
        if old is None:
            return self.not_found(plural, name)
        rv = obj["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            return self.conflict(plural, name)
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.replace(plural, key, old, obj, sub)

    def w_patch(self, plural, ns, name, sub, patch):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/merge-patch+json":
            return self.err(415, "UnsupportedMediaType", plural, name,
                            "the body of the request was in an unknown format - accepted "
                            "media types include: application/merge-patch+json")
        key = (plural, ns, name)
        old = self.cl.objects.get(key)
        if old is None:
            return self.not_found(plural, name)
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            return self.conflict(plural, name)
        new = merge_patch(json.loads(json.dumps(old)), patch)
        bad = self.check_body(plural, ns, name, new)
        if bad:
            return bad
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.replace(plural, key, old, new, sub)

    def w_delete(self, plural, ns, name, sub, opts):
        key = (plural, ns, name)
        old = self.cl.objects.get(key)
        if old is None:
            return self.not_found(plural, name)
        pre = (opts or {}).get("preconditions") or {}
        if pre.get("resourceVersion") and pre["resourceVersion"] != \
                old["metadata"]["resourceVersion"]:
            return self.conflict(plural, name)
        del self.cl.objects[key]
        return 200, self.store(plural, key, old, "DELETED")


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


class _Disconnect(Exception):
    pass


def serve(spec, args, ctx):
    cid, _, port = spec.partition("=")  # "ID" or "ID=PORT" (to come back on the same port)
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", int(port or 0)), Handler)
    srv.daemon_threads = True
    srv.cluster = Cluster(cid, args.token)
    # a restarted API server keeps counting where it was (etcd does), with
    # its watch history gone: clients get 410 and relist
    srv.cluster.rv = srv.cluster.compacted = args.initial_rv
    srv.bookmark_interval = args.bookmark_interval
    # the TLS handshake happens in each connection's own thread (on its first
    # read), as a real API server handshakes connections concurrently: done in
    # accept(), one client slow to send its ClientHello would stall every other
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token", default="test-token")
    ap.add_argument("--client-ca")
    ap.add_argument("--cluster", action="append", required=True)
    ap.add_argument("--bookmark-interval", type=float, default=0)
    ap.add_argument("--initial-rv", type=int, default=1)
    ap.add_argument("--absent", action="append", default=[],
                    help="a resource plural whose API is not installed (404, as without its CRD)")
    args = ap.parse_args()
    for plural in args.absent:
        kind = PLURALS.pop(plural)[0]
        KINDS.pop(kind)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:  # client certificates authenticate like tokens
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(args.client_ca)
    ports = ["%s=%d" % (c.partition("=")[0], serve(c, args, ctx)) for c in args.cluster]
    print("READY " + " ".join(ports), flush=True)
    try:
        sys.stdin.read()  # exit when the parent closes our stdin (or dies)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
