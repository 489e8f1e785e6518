#!/usr/bin/env bash
# Scheduling benchmark: `skiff init` (control plane only; no root needed) on 127.0.0.83, then
# `skiff bench schedule`: N hollow nodes in the bench process, pods created through
# Deployments and directly, timed from creation to bind and to Running; prints pods bound per
# second, create-to-Running p50/p99, the creates' p99 and the control plane's RSS, next to
# upstream's scheduler_perf anchor (680 pods/s at 5,000 nodes / 10,000 pods).
# Usage: deploy/bench/schedule.sh [path/to/skiff]   (env: NODES=5000 PODS=30000)
set -euo pipefail
SKIFF=$(realpath "${1:-target/release/skiff}")
NODES=${NODES:-5000}
PODS=${PODS:-30000}
IP=${IP:-127.0.0.83}
work=$(mktemp -d /var/tmp/skiff-bench-schedule.XXXXXX)
init_pid=
cleanup() {
    [ -n "$init_pid" ] && kill -9 "$init_pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

SKIFF_LOG=${SKIFF_LOG:-warn} "$SKIFF" init --data-dir "$work/data" --store-listen "$IP:2379" \
    --store-peer-listen "$IP:2380" --apiserver-listen "$IP:6443" --node-name bench-init \
    >"$work/init.log" 2>&1 &
init_pid=$!
for _ in $(seq 1 150); do
    [ -f "$work/data/admin.conf" ] && break
    sleep 0.2
done
[ -f "$work/data/admin.conf" ] || { echo "skiff init did not start:"; cat "$work/init.log"; exit 1; }

SKIFF_LOG=${SKIFF_LOG:-warn} "$SKIFF" bench schedule --server "$IP:6443" --data-dir "$work/data" \
    --init-pid "$init_pid" --nodes "$NODES" --pods "$PODS" "${@:2}"
