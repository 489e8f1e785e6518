#!/usr/bin/env bash
# Store benchmark: a 3-member skiff store and a 3-member etcd (Debian etcd-server), both on
# 127.0.0.x with fsync on, measured in the same run with the same tools:
#   1. `skiff bench store` (clients, value size, duration below),
#   2. `etcdctl check perf --load=$LOAD` (60 s).
# Usage: deploy/bench/store-vs-etcd.sh [path/to/skiff]   (env: CLIENTS VALUE_SIZE DURATION LOAD)
set -euo pipefail
SKIFF=${1:-target/release/skiff}
CLIENTS=${CLIENTS:-200}
VALUE_SIZE=${VALUE_SIZE:-256}
DURATION=${DURATION:-15}
LOAD=${LOAD:-xl}
export ETCDCTL_API=3
work=$(mktemp -d /tmp/skiff-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_healthy() {
    for _ in $(seq 1 150); do
        etcdctl --endpoints="$1" --command-timeout=1s endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "cluster at $1 did not become healthy" >&2; return 1
}

run_load() { # name endpoints(host:port list) urls(http list)
    echo "== $1: skiff bench store (clients=$CLIENTS value=$VALUE_SIZE duration=${DURATION}s)"
    "$SKIFF" bench store --endpoints "$3" --clients "$CLIENTS" --conns 30 --value-size "$VALUE_SIZE" --duration "$DURATION"
    echo "== $1: etcdctl check perf --load=$LOAD"
    etcdctl --endpoints="$2" check perf --load="$LOAD" 2>&1 | tr '\r' '\n' | grep -E "PASS|FAIL|Slowest|writes/s|Error" || true
}

ips=(127.0.0.31 127.0.0.32 127.0.0.33)
ic=""; eps=""; urls=""
for i in 0 1 2; do ic+="s$i=http://${ips[$i]}:2380,"; eps+="${ips[$i]}:2379,"; urls+="http://${ips[$i]}:2379,"; done
ic=${ic%,}; eps=${eps%,}; urls=${urls%,}
for i in 0 1 2; do
    "$SKIFF" store --name "s$i" --data-dir "$work/s$i" --listen-client "http://${ips[$i]}:2379" \
        --listen-peer "http://${ips[$i]}:2380" --initial-cluster "$ic" 2>"$work/s$i.log" &
    pids+=($!)
done
wait_healthy "$eps"
run_load skiff "$eps" "$urls"
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; pids=()

ips=(127.0.0.41 127.0.0.42 127.0.0.43)
ic=""; eps=""; urls=""
for i in 0 1 2; do ic+="e$i=http://${ips[$i]}:2380,"; eps+="${ips[$i]}:2379,"; urls+="http://${ips[$i]}:2379,"; done
ic=${ic%,}; eps=${eps%,}; urls=${urls%,}
for i in 0 1 2; do
    etcd --name "e$i" --data-dir "$work/e$i" --listen-client-urls "http://${ips[$i]}:2379" \
        --advertise-client-urls "http://${ips[$i]}:2379" --listen-peer-urls "http://${ips[$i]}:2380" \
        --initial-advertise-peer-urls "http://${ips[$i]}:2380" --initial-cluster "$ic" \
        --initial-cluster-state new 2>"$work/e$i.log" &
    pids+=($!)
done
wait_healthy "$eps"
run_load etcd "$eps" "$urls"
