#!/bin/sh
# run.sh SRC_DIR BUILD_DIR SECONDS - build the libFuzzer harnesses of
# tests/fuzz with clang into BUILD_DIR/fuzz, replay tests/fuzz/regressions/,
# then fuzz each harness for SECONDS on a fresh copy of its seed corpus.
# Prints executions, coverage and the outcome per harness; exits 1 if any
# regression or new input crashes (the crashing input's path is printed),
# 77 when clang is not installed.
set -u
if [ $# -ne 3 ]; then
    echo "usage: $0 SRC_DIR BUILD_DIR SECONDS" >&2
    exit 2
fi
SRC=$(cd "$1" && pwd) || exit 2
BUILD=$2
SECS=$3
HERE=$SRC/tests/fuzz
HARNESSES="fuzz_decode fuzz_json fuzz_manifest fuzz_selector fuzz_kubeconfig fuzz_xds_request fuzz_model_events fuzz_ca_csr"

CLANG=${FUZZ_CC:-$(command -v clang || true)}
if [ -z "$CLANG" ] || ! [ -x "$CLANG" ]; then
    echo "fuzz: clang not found, skipping"
    exit 77
fi

OUT=$(mkdir -p "$BUILD/fuzz" && cd "$BUILD/fuzz" && pwd) || exit 2
GEN=
command -v ninja >/dev/null 2>&1 && GEN="-G Ninja"
[ -f "$OUT/CMakeCache.txt" ] && GEN=
echo "fuzz: building into $OUT"
JOBS=$(nproc 2>/dev/null || echo 4)
build() { # $1: ON/OFF for FUZZ_XDS_STREAM
    # shellcheck disable=SC2086
    cmake -S "$HERE" -B "$OUT" $GEN -DCMAKE_C_COMPILER="$CLANG" -DFUZZ_XDS_STREAM="$1" \
        >"$OUT/configure.log" 2>&1 || { cat "$OUT/configure.log"; return 1; }
    GEN=
    cmake --build "$OUT" -j"$JOBS" >"$OUT/build.log" 2>&1
}
if ! build ON; then
    # xds/ (linked only for xds_stream_on_message) may be mid-edit or lack
    # grpc: fall back to the message-only fuzz_xds_request, and say so.
    grep -aE "error" "$OUT/build.log" | head -n 10
    echo "fuzz: WARNING: build with xds/ failed; fuzz_xds_request runs without xds_stream_on_message"
    if ! build OFF; then
        tail -n 60 "$OUT/build.log"
        echo "fuzz: build failed"
        exit 1
    fi
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
FAIL=0
SUMMARY=""

# 1. regressions: every tests/fuzz/regressions/<harness>-<n> must run clean.
for h in $HARNESSES; do
    for f in "$HERE"/regressions/"$h"-*; do
        [ -f "$f" ] || continue
        log=$OUT/work/regress-$(basename "$f").log
        mkdir -p "$OUT/work"
        if "$OUT/$h" -timeout=10 -rss_limit_mb=2048 "$f" >"$log" 2>&1; then
            echo "fuzz: regression ok: $f"
        else
            echo "fuzz: REGRESSION STILL CRASHES: $h $f (log $log)"
            grep -aE "ERROR|runtime error|^  (incremental|fresh)|fuzz_[a-z_]+:|^    #[0-9]" "$log" | head -n 25
            FAIL=1
        fi
    done
done

# 2. fuzzing, one harness after another.
for h in $HARNESSES; do
    w=$OUT/work/$h
    rm -rf "$w"
    mkdir -p "$w/corpus" "$w/artifacts"
    cp "$HERE/corpus/$h"/* "$w/corpus/" 2>/dev/null
    dict=
    [ -f "$HERE/$h.dict" ] && dict="-dict=$HERE/$h.dict"
    echo "fuzz: $h for ${SECS}s"
    # shellcheck disable=SC2086
    "$OUT/$h" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$w/artifacts/" $dict "$w/corpus" >"$w/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -n 1)
    [ -n "$execs" ] || execs=$(grep -aoE '^#[0-9]+' "$w/log" | tail -n 1 | tr -d '#')
    last=$(grep -aE '^#[0-9]+.*cov:' "$w/log" | tail -n 1)
    cov=$(echo "$last" | grep -aoE 'cov: [0-9]+' | grep -aoE '[0-9]+')
    ft=$(echo "$last" | grep -aoE 'ft: [0-9]+' | grep -aoE '[0-9]+')
    corp=$(echo "$last" | grep -aoE 'corp: [0-9]+' | grep -aoE '[0-9]+')
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result=CRASH
        FAIL=1
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$w/log" | tail -n 1)
        echo "fuzz: $h CRASHED (exit $rc); input: ${art:-see log}; log: $w/log"
        grep -aE "ERROR|runtime error|SUMMARY|^  (incremental|fresh)|^    #[0-9]|fuzz_[a-z_]+:" "$w/log" | head -n 40
    fi
    line=$(printf '%-18s execs=%-9s cov=%-5s ft=%-6s corpus=%-5s %s' "$h" "${execs:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")
    echo "fuzz: $line"
    SUMMARY="$SUMMARY
$line"
done

echo "fuzz: summary (${SECS}s per harness):$SUMMARY"
exit $FAIL
