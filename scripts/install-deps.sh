#!/bin/sh
# Installs everything meshfed needs to build, test and run on Debian 12
# (prometheus for its promtool, which checks /metrics in the tests).
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    build-essential cmake pkg-config \
    libcurl4-openssl-dev libjansson-dev libyaml-dev \
    libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
    libgrpc-dev check libmicrohttpd-dev libjemalloc-dev libssl-dev \
    python3 python3-grpcio python3-protobuf python3-grpc-tools python3-yaml \
    curl ca-certificates openssl \
    valgrind clang libclang-rt-14-dev clang-format \
    prometheus
# Node.js and npm for the tests that use independent clients and tools
# (grpc-js-xds, the HTTP/2 API server front, helm/kubectl for the chart):
# Debian's, unless a Node.js with npm is already installed (for example
# NodeSource's, whose package would conflict with Debian's npm).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    $SUDO apt-get install -y --no-install-recommends nodejs npm
fi
