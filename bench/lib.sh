# shellcheck shell=bash
# Shared by the benchmarks: install what they need, build promsd in release mode, start etcd and dnsd on
# loopback in a temporary directory, and clean everything up on exit.

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BIN=$(target_dir)/release
WORK=$(mktemp -d /tmp/promsd-bench.XXXXXX)
PIDS=()
ETCD_PORT=${ETCD_PORT:-27379}
DNSD_PORT=${DNSD_PORT:-27353}
DNSD_WEB_PORT=${DNSD_WEB_PORT:-27153}
ETCD=http://127.0.0.1:$ETCD_PORT
# DNSD_BIN=/path/to/dnsd benchmarks that build of dnsd instead of building the work tree's.
DNSD_BIN=${DNSD_BIN:-}
# Operations per transaction etcd accepts; `promsd-bench load --txn-ops` must not exceed it.
ETCD_MAX_TXN_OPS=${ETCD_MAX_TXN_OPS:-1024}

bench_setup() {
    as_root "$@"
    ensure_packages knotd:knot dnsperf:dnsperf hyperfine:hyperfine jq:jq
    echo "==> building promsd (release)" >&2
    if [ -n "$DNSD_BIN" ]; then
        cargo build --release --locked -p registrar -p promsd-bench >&2
        echo "==> benchmarking $DNSD_BIN" >&2
    else
        cargo build --release --locked -p dnsd -p registrar -p promsd-bench >&2
        DNSD_BIN=$BIN/dnsd
    fi
    trap bench_cleanup EXIT
}

bench_cleanup() {
    stop_started
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}

wait_for() { wait_until 30 "$WORK" "$@"; } # what, command...

# A fresh etcd with its data in $WORK/etcd, or $WORK/etcd-$ETCD_NAME when that is set (one per size or run).
# It never compacts by itself (the scale run compacts when it means to), and has room for millions of keys.
start_etcd() {
    ETCD_DATA=$WORK/etcd${ETCD_NAME:+-$ETCD_NAME}
    etcd --data-dir "$ETCD_DATA" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
        --listen-peer-urls http://127.0.0.1:$((ETCD_PORT + 1)) --quota-backend-bytes 8589934592 \
        --auto-compaction-retention 0 --max-txn-ops "$ETCD_MAX_TXN_OPS" \
        >"$ETCD_DATA.log" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    wait_for etcd env ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint health
}

# Stops the etcd start_etcd started and removes its data.
stop_etcd() {
    local pid kept=()
    [ -n "${ETCD_PID:-}" ] || return 0
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        if [ "$pid" != "$ETCD_PID" ]; then kept+=("$pid"); fi
    done
    PIDS=("${kept[@]}")
    rm -rf "$ETCD_DATA"
    ETCD_PID=""
}

start_dnsd() {
    "$DNSD_BIN" --endpoints "$ETCD" --zone prom.local --dns.listen-address "127.0.0.1:$DNSD_PORT" \
        --web.listen-address "127.0.0.1:$DNSD_WEB_PORT" >"$WORK/dnsd.log" 2>&1 &
    DNSD_PID=$!
    PIDS+=("$DNSD_PID")
    wait_for dnsd curl -sf "http://127.0.0.1:$DNSD_WEB_PORT/-/ready"
}

# median, min and max of the numbers on stdin: "median min max"
stats() {
    sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s %s %s\n", m, v[1], v[NR] }'
}
