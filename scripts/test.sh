#!/bin/sh
# Builds meshfed and runs every test: first the end-to-end test under
# valgrind (on a build without sanitizers: valgrind cannot run ASan
# binaries), then the whole suite built with ASan+UBSan through ctest.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-test}
JOBS=$(nproc)

cmake -S . -B "$BUILD-valgrind" -DMESHFED_SANITIZE=OFF -DMESHFED_JEMALLOC=OFF >/dev/null
cmake --build "$BUILD-valgrind" -j"$JOBS" --target meshfed
ctest --test-dir "$BUILD-valgrind" -R '^e2e_valgrind$' --output-on-failure

cmake -S . -B "$BUILD" -DMESHFED_SANITIZE="${MESHFED_SANITIZE:-ON}" >/dev/null
cmake --build "$BUILD" -j"$JOBS"
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS"
