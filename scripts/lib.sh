# shellcheck shell=bash
# Shared by the scripts: check the Rust toolchain, become root, install what a fresh Debian machine lacks,
# keep everything a script starts inside namespaces that end with it, and time each phase.

# Under `set -e`, a failing command would end a script without a word: name it.
trap 'echo "error: \"$BASH_COMMAND\" failed (exit $?) in $0, line $LINENO" >&2' ERR

# Set by run_contained for the command it runs, and for that only: not for whatever that command starts
# (a script that another contained script runs gets namespaces of its own).
# shellcheck disable=SC2034 # used by the scripts that source this
CONTAINED=${PROMSD_CONTAINED:-}
unset PROMSD_CONTAINED

# The minimum Rust version: the workspace's rust-version, so the check and Cargo.toml never disagree.
rust_min_version() {
    sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml" | sed -n 1p
}

# Whether version $1 >= $2, compared numerically by component (1.88 = 1.88.0).
version_at_least() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, "."); m = split(b, y, ".")
        for (i = 1; i <= (n > m ? n : m); i++) {
            if (x[i] + 0 > y[i] + 0) exit 0
            if (x[i] + 0 < y[i] + 0) exit 1
        }
        exit 0 }'
}

# One line and exit 1 when there is no Rust toolchain, or one older than the workspace's rust-version.
require_rust() {
    local min have
    min=$(rust_min_version)
    if ! command -v cargo >/dev/null 2>&1 || ! have=$(rustc --version 2>/dev/null); then
        echo "error: no Rust toolchain: install Rust $min or newer with rustup (https://rustup.rs), then run $0 again" >&2
        exit 1
    fi
    have=$(echo "$have" | awk '{print $2}')
    if ! version_at_least "${have%%-*}" "$min"; then
        echo "error: Rust $have is older than $min, the minimum for promsd: run 'rustup update stable'" >&2
        exit 1
    fi
}

# Network namespaces, port 53 and apt need root: re-run under sudo with the caller's Rust toolchain (sudo's
# secure_path and HOME would hide it). What the root run writes into target/ and the cargo registry is
# given back to the caller at the end (give_back).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then return 0; fi
    if ! command -v sudo >/dev/null 2>&1; then
        echo "error: $0 needs root (network namespaces, port 53, apt): run it as root" >&2
        exit 1
    fi
    exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
        CI="${CI:-}" PROMSD_INVOKER="$(id -u):$(id -g)" "$0" "$@"
}

# Cargo's target folder: CARGO_TARGET_DIR or a config may move it from ./target.
target_dir() {
    local dir
    dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null | jq -r .target_directory 2>/dev/null) || dir=""
    echo "${dir:-${CARGO_TARGET_DIR:-$PWD/target}}"
}

give_back() {
    if [ -z "${PROMSD_INVOKER:-}" ]; then return 0; fi
    local dir
    for dir in "$(target_dir)" "$PWD/fuzz/target" "$PWD/fuzz/artifacts" "${CARGO_HOME:-}/registry" \
        "${CARGO_HOME:-}/git" "${CARGO_HOME:-}/.package-cache"; do
        # Only what lives in a folder the caller owns: never a system-wide toolchain's files.
        if [ -e "$dir" ] && [ "$(stat -c %u "$(dirname "$dir")")" = "${PROMSD_INVOKER%%:*}" ]; then
            chown -R "$PROMSD_INVOKER" "$dir" 2>/dev/null || true
        fi
    done
}

# What building promsd needs, as "what-to-look-for:package": a command on PATH, or a file (an absolute path).
# protoc and the protobuf well-known types (libprotobuf-dev) are what etcd-client's build needs.
BUILD_PACKAGES=(cc:gcc protoc:protobuf-compiler /usr/include/google/protobuf/descriptor.proto:libprotobuf-dev)
# What the demo and the tests run, besides.
PACKAGES=(
    "${BUILD_PACKAGES[@]}" knotd:knot kdig:knot-dnsutils
    etcd:etcd-server etcdctl:etcd-client dig:bind9-dnsutils prometheus:prometheus
    prometheus-node-exporter:prometheus-node-exporter prometheus-exporter-exporter:prometheus-exporter-exporter
    curl:curl ip:iproute2 nft:nftables tinyproxy:tinyproxy unshare:util-linux
    nsenter:util-linux setpriv:util-linux script:bsdutils shellcheck:shellcheck systemd-analyze:systemd pgrep:procps ps:procps openssl:openssl jq:jq
)

# Installs what the demo and the tests need (PACKAGES) and any "what:package" pairs given.
ensure_packages() { install_missing "${PACKAGES[@]}" "$@"; }

# Installs, with apt, the packages of the "what:package" pairs whose command or file is missing, and says
# which. Fails at once, naming them, when apt cannot get them (no mirror, no network).
install_missing() {
    local pair need missing=() log status=0
    for pair in "$@"; do
        need=${pair%%:*}
        case $need in
            /*) [ -e "$need" ] ;;
            *) command -v "$need" >/dev/null 2>&1 ;;
        esac || missing+=("${pair#*:}")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "==> installing with apt: ${missing[*]}"
    local started=$SECONDS
    # Keep apt from starting the packages' own services (etcd, prometheus, node exporter on the host):
    # the demo and the tests run their own copies inside namespaces.
    local policy=/usr/sbin/policy-rc.d added=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    log=$(mktemp)
    local apt=(apt-get -q -y -o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o DPkg::Lock::Timeout=120)
    {
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update &&
            DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${missing[@]}"
    } >"$log" 2>&1 || status=$?
    if [ -n "$added" ]; then rm -f "$policy"; fi
    if [ "$status" -ne 0 ]; then
        echo "error: could not install ${missing[*]}: apt-get failed (exit $status); is the Debian mirror reachable? It said:" >&2
        grep -E '^(E|W|Err):' "$log" | tail -n 6 | sed 's/^/    /' >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    echo "installed in $((SECONDS - started))s"
}

# unshare's --propagation for a new mount namespace: private, as on a booted machine. In a chroot whose root is
# not a mount point (a debootstrap folder, as ../shared/tools/fresh-debian makes), unshare cannot change it;
# "unchanged" is as private there as long as the mounts in sight do not propagate (no "shared:" in mountinfo).
mount_propagation() {
    if mountpoint -q /; then
        echo private
    elif awk '{ for (i = 7; $i != "-"; i++) if ($i ~ /^shared:/) found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo "error: / is not a mount point and the mounts here propagate (shared): run in a root that is one (mount --bind ROOT ROOT)" >&2
        return 1
    else
        echo unchanged
    fi
}

# run_contained [--grace SECONDS] [UNSHARE FLAGS] -- COMMAND...
# Runs the command in its own PID and mount namespaces, plus any unshare flags (e.g. --net), and returns its
# status. Everything it starts (etcd, exporters, Prometheus, network namespaces, mounts) ends
# with it: when it finishes, fails, is interrupted, or this shell is killed (setpriv's parent-death signal,
# then unshare's --kill-child). On SIGINT/SIGTERM/SIGHUP the namespace's first process gets SIGTERM and
# --grace seconds (default 10) to clean up before everything is killed; then the status is 128+signal.
# Inside, $CONTAINED (from PROMSD_CONTAINED) names a private temporary folder (also TMPDIR), removed
# afterwards, whose file "pid" holds the first process's PID as seen from outside (for nsenter).
run_contained() {
    local flags=() grace=10
    while [ "$1" != "--" ]; do
        case $1 in
            --grace) grace=$2; shift 2 ;;
            *) flags+=("$1"); shift ;;
        esac
    done
    shift
    local tmp child init="" status=0 interrupted="" i propagation
    propagation=$(mount_propagation)
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/promsd.XXXXXX")
    # With job control on for this one job: a background job of a script would start with SIGINT ignored,
    # and that could not be undone inside. Its own process group keeps the terminal's Ctrl-C to this shell,
    # which stops it as described above.
    set -m
    PROMSD_CONTAINED=$tmp TMPDIR=$tmp setpriv --pdeathsig KILL \
        unshare --pid --fork --kill-child --mount-proc --propagation "$propagation" "${flags[@]}" -- "$@" 0<&0 &
    child=$!
    set +m
    stop_contained() {
        interrupted=$1
        if [ -n "$init" ]; then kill -TERM "$init" 2>/dev/null || true; fi
        for ((i = 0; i < grace * 10; i++)); do
            kill -0 "$child" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$child" 2>/dev/null || true
    }
    trap 'stop_contained 130' INT
    trap 'stop_contained 143' TERM
    trap 'stop_contained 129' HUP
    for ((i = 0; i < 100; i++)); do
        init=$(cat "/proc/$child/task/$child/children" 2>/dev/null || true)
        init=${init%% *}
        if [ -n "$init" ] || ! kill -0 "$child" 2>/dev/null; then break; fi
        sleep 0.01
    done
    echo "$init" >"$tmp/pid"
    while :; do
        status=0
        wait "$child" || status=$?
        kill -0 "$child" 2>/dev/null || break
    done
    trap - INT TERM HUP
    # The namespace is gone once its first process is: the kernel kills the rest before that one is reaped.
    for ((i = 0; i < 100; i++)); do
        if [ -z "$init" ] || [ ! -e "/proc/$init" ]; then break; fi
        sleep 0.1
    done
    rm -rf --one-file-system "$tmp"
    return "${interrupted:-$status}"
}

# run_contained, then exit with its status (after giving target/ back to a sudo caller).
contain() {
    local status=0
    run_contained "$@" || status=$?
    give_back
    exit "$status"
}

# Waits up to SECONDS for a command to succeed; else says what timed out, shows the last lines of the logs
# in LOG_DIR and exits 1.
wait_until() { # seconds, log dir, what, command...
    local seconds=$1 logs=$2 what=$3
    shift 3
    within "$seconds" "$@" && return 0
    echo "timed out waiting for $what; the logs' last lines (all of them are in $logs):" >&2
    tail -n 5 "$logs"/*.log >&2 || true
    exit 1
}

# Stops the processes in PIDS newest first, each waited for (exporters deregister while etcd is still up).
stop_started() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
}

# Whether a command succeeds within $1 seconds, tried every 0.1 s (its output discarded).
within() {
    local seconds=$1 i
    shift
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Phase timings: `phase NAME` starts one (and ends the previous); `phase_summary` prints them all.
PHASES=()
phase() {
    phase_end
    PHASE_NAME=$1
    PHASE_START=$SECONDS
    echo "==> $1"
}
phase_end() {
    if [ -n "${PHASE_NAME:-}" ]; then
        PHASES+=("$PHASE_NAME $((SECONDS - PHASE_START))s")
        PHASE_NAME=""
    fi
}
phase_summary() {
    phase_end
    local IFS=,
    [ "${#PHASES[@]}" -eq 0 ] || echo "==> $(basename "$0") took ${SECONDS}s: ${PHASES[*]}" | sed 's/,/, /g'
}
