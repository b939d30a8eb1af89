# promsd in containers: `docker build .` (or `podman build .`) makes the promsd image: the Debian package of
# ./scripts/package installed on Debian 12 (dnsd and registrar in /usr/bin, run as the system user promsd).
# docker-compose.yml also builds the other targets here (etcd, node-exporter, prometheus): Debian's own
# packages on the same base, so that the whole system builds from two images only, the Rust one and Debian's.
#
#   docker build -t promsd .                                  # the promsd image (the last stage)
#   docker build --build-arg BASE_IMAGE=debian:bookworm ...   # another Debian 12 base
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

# Debian's etcd, node exporter and Prometheus, for docker-compose.yml. They come first: building one of them
# (--target) then needs neither the Rust image nor a compile.
FROM ${BASE_IMAGE} AS etcd
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server \
    && rm -rf /var/lib/apt/lists/*
USER etcd
ENTRYPOINT ["/usr/bin/etcd"]

FROM ${BASE_IMAGE} AS node-exporter
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    prometheus-node-exporter && rm -rf /var/lib/apt/lists/*
USER prometheus
ENTRYPOINT ["/usr/bin/prometheus-node-exporter"]

FROM ${BASE_IMAGE} AS prometheus
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/*
USER prometheus
ENTRYPOINT ["/usr/bin/prometheus"]

# The build: the Debian package, as ./scripts/package makes it for hosts, so that containers and hosts get
# the same files. etcd-client compiles etcd's gRPC API with protoc and the protobuf well-known types.
FROM ${RUST_IMAGE} AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    protobuf-compiler libprotobuf-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The context has no .git: the revision and branch that `dnsd --version` shows can be given instead.
ARG PROMSD_BUILD_REVISION
ARG PROMSD_BUILD_BRANCH
# The crates and the target folder are cached between builds; the package leaves the cache for the next stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    rm -f target/debian/promsd_*.deb && ./scripts/package && cp target/debian/promsd_*.deb /tmp/

# promsd's image: the package (dnsd and registrar in /usr/bin, the system user promsd made by its postinst).
FROM ${BASE_IMAGE} AS promsd
COPY --from=build /tmp/promsd_*.deb /tmp/
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    /tmp/promsd_*.deb && rm -rf /var/lib/apt/lists/* /tmp/promsd_*.deb
USER promsd
# dnsd serves DNS on port 53: as a non-root user that needs net.ipv4.ip_unprivileged_port_start <= 53 in the
# container (Docker sets it to 0; docker-compose.yml sets it for podman) or another --dns.listen-address.
CMD ["/usr/bin/dnsd", "--help"]
