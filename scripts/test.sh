#!/bin/sh
# Builds meshfed (with ASan+UBSan unless MESHFED_SANITIZE=OFF) and runs every test.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build-test}
cmake -S . -B "$BUILD" -DMESHFED_SANITIZE="${MESHFED_SANITIZE:-ON}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)"
