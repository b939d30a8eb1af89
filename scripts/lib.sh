# Shared by scripts/demo and scripts/test: become root, install what a fresh Debian machine lacks.

# Network namespaces (for Prometheus and dnsd on port 53) need root: re-run under sudo, keeping the Rust toolchain.
as_root() {
    if [ "$(id -u)" -ne 0 ]; then
        exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CI "$0" "$@"
    fi
}

# Installs the Debian packages whose commands are missing. Extra "command:package" pairs may be given.
ensure_packages() {
    local pairs=(
        etcd:etcd-server etcdctl:etcd-client dig:bind9-dnsutils prometheus:prometheus
        prometheus-node-exporter:prometheus-node-exporter protoc:protobuf-compiler curl:curl ip:iproute2
        unshare:util-linux nsenter:util-linux systemd-analyze:systemd pgrep:procps openssl:openssl cc:gcc "$@"
    )
    local missing=() pair
    for pair in "${pairs[@]}"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        # Keep apt from starting the packages' own services (etcd, prometheus, node exporter on the host):
        # promsd's demo and tests run their own copies inside a network namespace.
        local policy=/usr/sbin/policy-rc.d added=""
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
        if [ -n "$added" ]; then rm -f "$policy"; fi
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is missing: install Rust 1.88 or newer (https://rustup.rs), then run this again" >&2
        exit 1
    fi
}
