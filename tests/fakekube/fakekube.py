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
  /fake/malformed  {"line": "..."} or {"size": N}: send a garbage line on watches
  /fake/bookmark   send a BOOKMARK on every watch that allows them
  /fake/token      {"token": "...", "forbidden": ["..."]}: rotate accepted tokens
  /fake/pause      {"on": bool}: hold back watch events (to let clients miss them)
  /fake/config     {"gone": "event"|"http"}: how an old watch rv is refused;
                   {"expire_continue": N}: the next N continue tokens get 410
  GET /fake/state  {"rv", "watches", "lists"}
"""
import argparse
import base64
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = {
    "Namespace": ("namespaces", "v1"),
    "Service": ("services", "v1"),
    "EndpointSlice": ("endpointslices", "discovery.k8s.io/v1"),
    "Pod": ("pods", "v1"),
    "Node": ("nodes", "v1"),
    "ServiceScope": ("servicescopes", "meshfed.io/v1alpha1"),
    "Secret": ("secrets", "v1"),
    "ConfigMap": ("configmaps", "v1"),
}
PLURALS = {p: (k, gv) for k, (p, gv) in KINDS.items()}
HISTORY = 1000


class Cluster:
    def __init__(self, cid, token):
        self.id = cid
        self.cond = threading.Condition()
        self.rv = 1
        self.objects = {}  # (plural, ns, name) -> obj
        self.history = []  # (rv, plural, type, obj)
        self.compacted = 0  # watches need rv >= compacted
        self.tokens = {token}
        self.forbidden = set()
        self.paused = False
        self.gone = "event"
        self.expire_continue = 0  # the next N continue tokens are "too old"
        self.disconnects = 0
        self.malformed = []  # (seq, line)
        self.bookmarks = 0
        self.watches = 0
        self.lists = 0

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    @property
    def cl(self):
        return self.server.cluster

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # ---------- control ----------

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        path = urllib.parse.urlparse(self.path).path
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
            elif path == "/fake/malformed":
                line = body.get("line") or "x" * int(body.get("size", 0)) or "{not json"
                cl.malformed.append((len(cl.malformed) + 1, line))
            elif path == "/fake/bookmark":
                cl.bookmarks += 1
            elif path == "/fake/token":
                cl.tokens = {body["token"]}
                cl.forbidden = set(body.get("forbidden", []))
            elif path == "/fake/pause":
                cl.paused = bool(body.get("on"))
            elif path == "/fake/config":
                cl.gone = body.get("gone", cl.gone)
                cl.expire_continue = int(body.get("expire_continue", cl.expire_continue))
            else:
                return self.send_json(404, status(404, "NotFound", "no such control"))
            cl.cond.notify_all()
            self.send_json(200, {"rv": cl.rv})

    def apply(self, obj):
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
        return True

    def do_GET(self):
        if self.path.startswith("/fake/state"):
            cl = self.cl
            with cl.cond:
                return self.send_json(200, {"rv": cl.rv, "watches": cl.watches,
                                            "lists": cl.lists})
        r = self.route()
        if r is None:
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                              "the requested resource"))
        if not self.auth():
            return
        plural, ns, q = r
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
        for it in items:  # like the real server: list items lack kind/apiVersion
            it.pop("kind", None)
            it.pop("apiVersion", None)
        md = {"resourceVersion": str(rv)}
        if more:
            last = "%s/%s" % (keys[-1][1], keys[-1][2])
            md["continue"] = base64.b64encode(json.dumps(
                {"rv": rv, "start": last}).encode()).decode()
        self.send_json(200, {"kind": kind + "List", "apiVersion": gv, "metadata": md,
                             "items": items})

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
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
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
    args = ap.parse_args()
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
