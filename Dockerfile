# meshfed container image: build on Debian 12, run on bookworm-slim as 65532.
#   docker build -t meshfed:dev .
# Base images pinned to an exact Debian 12 snapshot (the official image's
# dated tags, bookworm-YYYYMMDD[-slim]); bump both stages together.
FROM debian:bookworm-20251229 AS build
ENV DEBIAN_FRONTEND=noninteractive
# The build packages of scripts/install-deps.sh (without the Python test tools).
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libcurl4-openssl-dev libjansson-dev libyaml-dev \
        libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
        libgrpc-dev check libmicrohttpd-dev libjemalloc-dev \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY model/ model/
COPY kube/ kube/
COPY xds/ xds/
COPY controller/ controller/
COPY tests/ tests/
COPY bench/ bench/
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DMESHFED_SANITIZE=OFF \
    && cmake --build /build -j"$(nproc)" --target meshfed \
    && install -D -m 0755 /build/meshfed /out/usr/local/bin/meshfed \
    && /build/meshfed --version

FROM debian:bookworm-20251229-slim
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries only (Debian 12 names: libgrpc-dev depends on libgrpc29).
RUN apt-get update && apt-get install -y --no-install-recommends \
        libcurl4 libjansson4 libyaml-0-2 libprotobuf-c1 libgrpc29 libmicrohttpd12 libjemalloc2 \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/meshfed /usr/local/bin/meshfed
USER 65532:65532
EXPOSE 15010 15012 15014
ENTRYPOINT ["/usr/local/bin/meshfed"]
