#!/usr/bin/python3
"""End to end: the real meshfed binary on a copy of the embedded demo.

Starts `meshfed --demo DIR` on ephemeral ports, checks the debug endpoint's
answers, edits a manifest and waits for the scope change to show, checks bad
queries, then stops it with SIGTERM and expects a clean exit.
Usage: e2e_demo.py MESHFED_BINARY EXAMPLES_DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import FAILURES, TrickleFlood, check, get, log_ports, metrics, probe, summary, waiter  # noqa: E402

wait_for = waiter(15.0)


def scope_of(port, key):
    st, body = get(port, f"/debug/servicescopez?service={key}")
    return json.loads(body).get("scope") if st == 200 else None


def debug_token(binary, demo, work):
    """A debug endpoint reachable from outside needs a token for /debug and
    /metrics; the probes' pages stay open."""
    r = subprocess.run([binary, "--demo", demo, "--debug-listen", "0.0.0.0:0",
                        "--xds-listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=20)
    check(r.returncode != 0 and "debug-token-file" in r.stderr,
          "a non-loopback debug-listen without a token is refused at start")
    tok = os.path.join(work, "token")
    open(tok, "w").write("s3cret\n")
    log = open(os.path.join(work, "token.log"), "a+")
    p = subprocess.Popen([binary, "--demo", demo, "--debug-listen", "0.0.0.0:0",
                          "--debug-token-file", tok, "--xds-listen", "127.0.0.1:0",
                          "--probe-listen", "127.0.0.1:0"],
                         stdout=log, stderr=log)
    try:
        def port():
            log.seek(0)
            m = re.search(r"debug on port (\d+)", log.read())
            return m and int(m.group(1))
        dport = wait_for(port)

        def code(path, token=None):
            req = urllib.request.Request(f"http://127.0.0.1:{dport}{path}",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status
            except urllib.error.HTTPError as e:
                return e.code
        check(bool(dport) and code("/debug/clusterz") == 401 and code("/metrics", "wrong") == 401,
              "without the token /debug and /metrics answer 401")
        check(code("/debug/clusterz", "s3cret") == 200 and code("/healthz") == 200,
              "with it they answer; /healthz needs none")
        pport = probe_port(log)
        st, _ = get(pport, "/metrics") if pport else (0, "")
        check(st == 200 and get(pport, "/debug/clusterz")[0] == 404,
              "the probe listener serves /metrics without the token (scraping by annotation), "
              "never /debug")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)


def error_json(dport, path):
    """(status, the error message) of path; the message None when the body is
    not valid UTF-8 JSON with an "error" string."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{dport}{path}", timeout=10) as r:
            st, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        st, raw = e.code, e.read()
    try:
        msg = json.loads(raw.decode("utf-8", errors="strict"))["error"]
        return st, msg if isinstance(msg, str) else None
    except (ValueError, KeyError, TypeError):
        return st, None


def error_bodies(dport):
    """Issue 14 item 13: invalid UTF-8 and long multi-byte queries still get
    the {"error": ...} JSON, cut only between characters."""
    for path, want in [("/debug/servicez?service=%ff/x", 404), ("/debug/servicescopez?service=%ff/x", 404),
                       ("/debug/endpointz?service=%ff/x", 404), ("/debug/config_dump?proxy=%ff", 404),
                       ("/debug/config_dump?cluster=%ff%fe", 404), ("/debug/%ff%c3", 404),
                       ("/debug/servicez?service=%ff", 400)]:
        st, msg = error_json(dport, path)
        check(st == want and msg is not None and "\\xff" in msg,
              f"{path} answers {want} with the error JSON, the bad byte escaped ({st}, {msg!r})")
    st, msg = error_json(dport, "/debug/config_dump?cluster=nowhere")
    check(st == 404 and msg and "nowhere" in msg, f"config_dump of an unknown cluster is 404 ({st}, {msg!r})")
    st, _ = error_json(dport, "/debug/config_dump?cluster=east&network=network-east")
    check(st == 200, "config_dump of a known cluster is 200")
    long = "%C3%A9" * 1500  # é, two bytes each
    for path in (f"/debug/{long}", f"/debug/servicez?service={long}", f"/debug/endpointz?service=a/{long}"):
        st, msg = error_json(dport, path)
        check(st in (400, 404) and msg is not None and len(msg.encode()) <= 1024
              and (msg.endswith("\u2026") or len(msg) < 600),
              f"a long multi-byte query gets a whole-character error ({path[:30]}...: {st}, "
              f"{len(msg.encode()) if msg else None} bytes)")


def fifo_in_demo(dport, demo, log):
    """Issue 14 item 9: a FIFO among the manifests is refused with a clear
    error; reloads go on (the SIGTERM at the end runs with it still there)."""
    os.mkfifo(os.path.join(demo, "east", "pipe.yaml"))
    open(os.path.join(demo, "east", "extra.yaml"), "w").write(
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop}\n"
        "spec: {clusterIP: 10.96.9.9, ports: [{port: 80}]}\n")
    check(wait_for(lambda: get(dport, "/debug/servicez?service=shop/extra")[0] == 200),
          "with a FIFO in east's directory, a new manifest next to it is still loaded")

    def said():
        log.seek(0)
        return "pipe.yaml: not a regular file (a FIFO)" in log.read()
    check(wait_for(said), "the log names the FIFO and says why it is not read")
    check(get(dport, "/ready")[0] == 200, "still ready")


def east_objects(dport):
    st, body = get(dport, "/debug/clusterz")
    east = {c["id"]: c for c in json.loads(body)}.get("east", {}) if st == 200 else {}
    return sum(east.get("objects", {}).values()), east


def bad_edits(dport, demo, log):
    """Issue 14 item 8: a manifest that stops parsing keeps its last good
    objects; a file caught half-written is not published."""
    path = os.path.join(demo, "east", "cluster.yaml")
    good = open(path).read()
    before, _ = east_objects(dport)
    m0 = metrics(dport).get("meshfed_demo_reloads_total", 0)
    open(path, "w").write("kind: [unclosed\n---\n" + good)  # nothing before the error parses

    def said():
        log.seek(0)
        return "keeps this file's last good state" in log.read()
    check(wait_for(said), "a YAML error in east/cluster.yaml is logged, saying its last good state is kept")
    n, east = east_objects(dport)
    errs = {e["file"]: e for e in east.get("fileErrors", [])}
    check(n == before and get(dport, "/debug/servicez?service=shop/ledger")[0] == 200,
          f"east keeps every object of the broken file ({n} of {before})")
    check("cluster.yaml" in errs and errs["cluster.yaml"]["keptLastGood"],
          f"clusterz shows the file's error for east ({errs.get('cluster.yaml')})")
    check(metrics(dport).get("meshfed_demo_file_errors_total", 0) >= 1, "the file error is counted")
    # rewritten non-atomically: the first half, then (0.2 s later) the rest
    edited = good.replace("    tier: backend\n", "    tier: backend\n    edited: 'yes'\n", 1)
    half = edited[: len(edited) // 2]
    half = half[: half.rfind("\n---")] if "\n---" in half else half
    seen = []
    open(path, "w").write(half)
    time.sleep(0.2)
    open(path, "w").write(edited)
    end = time.time() + 3
    while time.time() < end:
        seen.append(east_objects(dport)[0])
        time.sleep(0.05)
    m1 = metrics(dport).get("meshfed_demo_reloads_total", 0)
    check(min(seen) == before, f"a file caught half-written is never published (east's objects: min {min(seen)}, "
          f"want {before}; reloads {m1 - m0:.0f})")
    _, east = east_objects(dport)
    check("cluster.yaml" not in {e["file"] for e in east.get("fileErrors", [])},
          "once the file parses again its error is gone from clusterz")


def invalid_object_flood(dport, demo, log):
    """Issue 14 item 10: 3,000 invalid objects give one line, not 3,000; the
    counter counts them all."""
    m0 = metrics(dport).get('meshfed_errors_total{kind="decode"}', 0)
    docs = [f"apiVersion: v1\nkind: Service\nmetadata: {{name: bad{i}, namespace: shop}}\n"
            f"spec: {{clusterIP: 10.96.1.1, ports: [{{port: 999999}}]}}\n" for i in range(3000)]
    open(os.path.join(demo, "east", "bad.yaml"), "w").write("---\n".join(docs))
    check(wait_for(lambda: metrics(dport).get('meshfed_errors_total{kind="decode"}', 0) - m0 >= 3000),
          "3000 invalid Services are counted")
    log.seek(0)
    lines = [x for x in log.read().splitlines() if "bad.yaml: Service shop/bad" in x]
    check(1 <= len(lines) <= 2, f"and logged once, not 3000 times ({len(lines)} lines)")


def probe_port(log):
    log.seek(0)
    m = re.search(r"probes \(/healthz, /ready\) also on port (\d+)", log.read())
    return m and int(m.group(1))


def probes_under_flood(dport, log):
    """Issue 14 item 5: 300 slow clients must not lock the probes out."""
    # from another address: the per-address limit keeps a slot free for probes
    flood = TrickleFlood(dport, n=300, seconds=25, source="127.0.0.2")
    flood.start()
    time.sleep(2)
    results = []
    end = time.time() + 14
    while time.time() < end:
        results.append(probe(dport, "/healthz"))
        results.append(probe(dport, "/ready"))
        time.sleep(0.3)
    flood.stop()
    ok = sum(1 for r in results if r == 200)
    check(ok == len(results), f"/healthz and /ready answer every probe while 300 connections from "
          f"another address trickle ({ok}/{len(results)}; flood opened {flood.opened}, cut {flood.cut})")
    # from the probes' own address, not reconnecting: each is cut at its deadline
    flood = TrickleFlood(dport, n=300, seconds=30, source="127.0.0.1", reconnect=False)
    flood.start()
    time.sleep(1)
    t0 = time.time()
    first = wait_for(lambda: probe(dport, "/healthz") == 200 and time.time(), 20)
    flood.stop()
    check(bool(first) and first - t0 <= 12,
          f"from the same address, probes answer again within the 10 s request deadline "
          f"({(first - t0) if first else None:.1f} s)" if first else "probes never answered again")
    # from ten addresses, 30 each: under the per-address limit, over the table
    floods = [TrickleFlood(dport, n=30, seconds=30, source=f"127.0.0.{i}", reconnect=False) for i in range(2, 12)]
    for f in floods:
        f.start()
    time.sleep(1)
    pport = probe_port(log)
    own = [probe(pport, "/ready") for _ in range(10)] if pport else []
    check(own == [200] * 10, f"meanwhile the probe listener (--probe-listen) answers every probe at once ({own})")
    t0 = time.time()
    first = wait_for(lambda: probe(dport, "/ready") == 200 and time.time(), 20)
    for f in floods:
        f.stop()
    check(bool(first) and first - t0 <= 12,
          f"with the whole table taken by slow clients, probes answer again within the deadline "
          f"({(first - t0):.1f} s)" if first else "probes never answered again after the table filled")
    m = metrics(dport)
    full = m.get('meshfed_errors_total{kind="http_table_full"}', 0)
    per_ip = m.get('meshfed_errors_total{kind="http_per_ip_limit"}', 0)
    slow = m.get('meshfed_errors_total{kind="http_slow_client"}', 0)
    check(per_ip > 0 and full > 0 and slow > 0, f"refusals and cut slow clients are counted (per-address {per_ip}, "
          f"table full {full}, slow {slow})")
    log.seek(0)
    text = log.read()
    check("already holds 32 connections" in text and "no complete request within 10 s" in text
          and "connection table full" in text,
          "the log says why connections were refused and cut")


def documented_curls(dport, examples):
    """Every `curl` of the README and docs/ that reads the debug endpoint of
    the demo, run as written (only the port is this test's): it answers 200,
    and with ?pretty its JSON is indented."""
    root = os.path.dirname(os.path.abspath(examples))
    files = [os.path.join(root, "README.md")] + [
        os.path.join(root, "docs", f) for f in sorted(os.listdir(os.path.join(root, "docs")))]
    urls = set()
    for f in files:
        for m in re.finditer(r"curl -s '?(?:http://)?localhost:15014(/debug/[^'\s]*)'?", open(f).read()):
            urls.add(m.group(1))
    check(len(urls) >= 3, f"the docs show debug curls ({len(urls)})")
    for u in sorted(urls):
        st, body = get(dport, u.replace("<proxy id>", "x"))
        indented = "\n  " in body
        ok = st == 200 and ("pretty" not in u or indented)
        if "proxy=" in u:  # a proxy id the reader substitutes: 404 without one connected
            ok = st in (200, 404)
        check(ok, f"documented: curl {u} ({st}{', indented' if indented else ''})")


def metrics_lint(dport):
    """/metrics as promtool's `check metrics` lints it: every family has one
    HELP and one TYPE, its samples together; counters end in _total; base
    units (seconds, bytes); plus the process_* and build-info families."""
    st, body = get(dport, "/metrics")
    helps, types, order, problems = set(), {}, [], []
    for line in body.splitlines():
        if line.startswith("# HELP "):
            n = line.split()[2]
            problems += [f"second HELP for {n}"] if n in helps else []
            helps.add(n)
        elif line.startswith("# TYPE "):
            n, t = line.split()[2:4]
            problems += [f"second TYPE for {n}"] if n in types else []
            types[n] = t
        elif line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            fam = name if name in types else re.sub(r"_(bucket|sum|count)$", "", name)
            if fam not in types or fam not in helps:
                problems.append(f"{name}: no HELP or TYPE")
            if order and order[-1] != fam and fam in order:
                problems.append(f"{fam}: samples not together")
            if not order or order[-1] != fam:
                order.append(fam)
            if types.get(fam) == "counter" and not name.endswith("_total"):
                problems.append(f"counter {name} without _total")
            if re.search(r"_(micro|milli)seconds|_kilobytes|_megabytes", name):
                problems.append(f"{name}: not in base units")
    check(st == 200 and not problems, f"/metrics passes the exposition-format lint ({problems[:5]})")
    promtool = shutil.which("promtool")
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True,
                       timeout=30) if promtool else None
    check(r is not None and r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          "promtool check metrics accepts /metrics" if r else
          "promtool check metrics (promtool missing: scripts/install-deps.sh installs it)")
    if r and (r.returncode or r.stdout.strip() or r.stderr.strip()):
        print(r.stdout + r.stderr)
    check(all(f in types for f in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                                   "process_start_time_seconds", "meshfed_build_info")),
          "process_* and build-info families are exported")


def json_logs_stay_json(binary, demo, work):
    """With --log-format json every line meshfed writes is a JSON object
    (no demo banner in between), each with time, level and msg."""
    log = open(os.path.join(work, "json.log"), "a+")
    p = subprocess.Popen([binary, "--demo", demo, "--log-format", "json", "--xds-listen",
                          "127.0.0.1:0", "--debug-listen", "127.0.0.1:0"], stdout=log, stderr=log)
    try:
        wait_for(lambda: "serving xDS" in (log.seek(0) or log.read()))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    log.seek(0)
    lines = [ln for ln in log.read().splitlines() if ln.strip()]
    bad = []
    for ln in lines:
        try:
            o = json.loads(ln)
            if not all(k in o for k in ("time", "level", "msg")):
                bad.append(ln)
        except ValueError:
            bad.append(ln)
    check(len(lines) >= 3 and not bad, f"--log-format json: every line is JSON ({bad[:2]})")
    loaded = [json.loads(ln) for ln in lines if "loaded from" in ln and ln.startswith("{")]
    check(any(o.get("cluster") == "east" for o in loaded),
          "a line about a cluster carries it as a field (\"cluster\": \"east\")")


def main():
    binary, examples = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="meshfed-e2e-")
    demo = os.path.join(work, "examples")
    shutil.copytree(examples, demo)
    log = open(os.path.join(work, "meshfed.log"), "a+")
    conf = os.path.join(work, "meshfed.yaml")
    open(conf, "w").write("log-level: info\n")
    proc = subprocess.Popen([binary, "--demo", demo, "--xds-listen", "127.0.0.1:0",
                             "--debug-listen", "127.0.0.1:0", "--debounce-ms", "20",
                             "--probe-listen", "127.0.0.1:0",
                             "--config", conf],
                            stdout=log, stderr=log)
    try:
        p = wait_for(lambda: log_ports(log))
        check(bool(p), "meshfed starts and prints its ports")
        if not p:
            return
        _, dport = p

        st, body = get(dport, "/healthz")
        check(st == 200 and body.strip() == "ok", "/healthz answers ok")
        check(wait_for(lambda: get(dport, "/ready")[0] == 200), "/ready once both clusters synced")

        st, body = get(dport, "/debug/clusterz")
        clusters = {c["id"]: c for c in json.loads(body)}
        check(set(clusters) == {"east", "west"}, "clusterz lists east and west")
        check(clusters["west"]["network"] == "network-west", "west's network from the namespace label")
        check(clusters["east"]["gateway"] == "192.0.2.10", "east's gateway from the labelled Service")
        check(clusters["west"]["gateway"] == "198.51.100.10",
              "west's gateway from its Gateway of class istio-east-west")
        check(clusters["east"]["state"] == "synced", "east is synced")

        st, body = get(dport, "/debug/servicescopez")
        doc = json.loads(body)
        check(len(doc["rules"]) == 2, "servicescopez shows the two rules")
        check(any("east/shop/checkout" == m for m in doc["rules"][1]["matches"]),
              "rule 1 (namespace AND service selector) selects shop/checkout")
        check(scope_of(dport, "bookinfo/reviews") == "GLOBAL", "reviews is GLOBAL (label rule)")
        check(scope_of(dport, "shop/checkout") == "GLOBAL", "checkout is GLOBAL (AND rule)")
        check(scope_of(dport, "shop/ledger") == "LOCAL", "ledger is LOCAL (tier=backend)")
        check(scope_of(dport, "bookinfo/ratings") == "LOCAL", "ratings is LOCAL")

        st, body = get(dport, "/debug/endpointz?service=bookinfo/reviews")
        eps = json.loads(body)["clusters"]
        check(len(eps["west"]["endpoints"]) == 3 and len(eps["east"]["endpoints"]) == 2,
              "endpointz shows endpoints by cluster")

        st, body = get(dport, "/debug/config_dump?cluster=east&network=network-east")
        res = json.loads(body)["resources"]
        authz = json.loads(body)["authorizations"]
        check(authz.get("bookinfo/reviews-viewers", {}).get("scope") == "WORKLOAD_SELECTOR"
              and res.get("east//Pod/bookinfo/reviews-7d9f8-a0x", {}).get("workload", {})
              .get("authorizationPolicies") == ["bookinfo/reviews-viewers"],
              "east's AuthorizationPolicy is sent to east and named by the reviews pods it selects")
        sh = [k for k in res if "/SplitHorizonWorkload/" in k and k.endswith("/reviews.bookinfo.svc.cluster.local")]
        check(len(sh) == 1 and res[sh[0]]["workload"]["capacity"] == 2,
              "east reaches west's reviews through the gateway, capacity 2 (ready endpoints)")
        check(not any(k.startswith("west//Pod/") for k in res), "east never gets west's pod IPs")
        check("bookinfo/ratings.bookinfo.svc.cluster.local" in res
              and res["bookinfo/ratings.bookinfo.svc.cluster.local"]["service"]["addresses"][0]["network"] == "network-east",
              "east sees only its own local ratings")

        # Make ledger global by labelling it, as a user would, and watch it flip.
        path = os.path.join(demo, "east", "cluster.yaml")
        text = open(path).read()
        text = text.replace("    tier: backend\n", "    tier: backend\n    istio.io/global: 'true'\n", 1)
        open(path, "w").write(text)
        check(wait_for(lambda: scope_of(dport, "shop/ledger") == "GLOBAL"),
              "labelling ledger istio.io/global=true makes it GLOBAL")
        st, body = get(dport, "/debug/config_dump?cluster=west&network=network-west")
        check("shop/ledger.shop.svc.cluster.local" in json.loads(body)["resources"],
              "west now sees ledger")

        st, body = get(dport, "/metrics")
        check(st == 200 and 'meshfed_objects{cluster="east",kind="Pod"}' in body,
              "/metrics has objects per cluster and kind")
        check("meshfed_demo_reloads_total 1" in body, "/metrics counts the reload")

        check(get(dport, "/debug/endpointz")[0] == 400, "endpointz without a service is 400")
        check(get(dport, "/debug/servicescopez?service=nonsense")[0] == 400, "a malformed service is 400")
        check(get(dport, "/debug/servicez?service=a/b")[0] == 404, "an unknown service is 404")
        check(get(dport, "/debug/nothing")[0] == 404, "an unknown page is 404")
        check(get(dport, "/debug/config_dump?proxy=nobody")[0] == 404, "an unknown proxy is 404")
        st, body = get(dport, "/metrics")
        check('meshfed_errors_total{kind="http"} 2' in body, "bad queries are counted")
        error_bodies(dport)
        documented_curls(dport, examples)
        metrics_lint(dport)
        pport = probe_port(log)
        check(bool(pport) and probe(pport, "/healthz") == 200 and probe(pport, "/ready") == 200
              and get(pport, "/debug/clusterz")[0] == 404 and get(pport, "/debug/syncz")[0] == 404,
              "the probe listener serves /healthz and /ready, never /debug")
        st, body = get(pport, "/metrics")
        check(st == 200 and "meshfed_build_info" in body,
              "and /metrics without a token, for annotation-based scraping")
        fifo_in_demo(dport, demo, log)
        bad_edits(dport, demo, log)
        invalid_object_flood(dport, demo, log)

        probes_under_flood(dport, log)

        open(conf, "w").write("log-level: debug\ndebounce-ms: 5\n")
        proc.send_signal(signal.SIGHUP)

        def reloaded():
            log.seek(0)
            return "SIGHUP: reloaded (log level 0, debounce 20 ms)" in log.read()
        check(wait_for(reloaded), "SIGHUP re-reads the config file (flags still win)")
        open(conf, "w").write("log-level: [broken\n")
        proc.send_signal(signal.SIGHUP)

        def refused():
            log.seek(0)
            return "SIGHUP: configuration not reloaded" in log.read()
        check(wait_for(refused) and proc.poll() is None, "a broken config on SIGHUP is refused, meshfed runs on")

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        check(rc == 0, f"SIGTERM exits cleanly (rc={rc})")
        log.seek(0)
        check("bad.yaml: invalid Service objects: 2999 more like this" in log.read(),
              "what was suppressed is said when the window ends (here: at exit)")
        json_logs_stay_json(binary, demo, work)
        debug_token(binary, demo, work)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if FAILURES:
            log.seek(0)
            print("--- meshfed log ---\n" + log.read())
        shutil.rmtree(work, ignore_errors=True)
    summary()


if __name__ == "__main__":
    main()
    sys.exit(1 if FAILURES else 0)
