#!/bin/sh
# Installs everything meshfed needs to build, test and run on Debian 12.
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    build-essential cmake pkg-config \
    libcurl4-openssl-dev libjansson-dev libyaml-dev \
    libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
    libgrpc-dev check libmicrohttpd-dev libjemalloc-dev \
    python3 python3-grpcio python3-protobuf python3-grpc-tools python3-yaml \
    curl ca-certificates openssl \
    valgrind clang libclang-rt-14-dev
