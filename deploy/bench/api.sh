#!/usr/bin/env bash
# API server benchmark: `skiff init` (single-member store, fsync on) on 127.0.0.81 and
# `skiff bench api` against it: pods created, updated and listed at rising concurrency, then
# writes at a fixed open-loop rate, each phase printing p50/p99 per verb and writes/s.
# Usage: deploy/bench/api.sh [path/to/skiff]   (env: DURATION CONCURRENCY RATE)
set -euo pipefail
SKIFF=${1:-target/release/skiff}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-1,8,32,64}
RATE=${RATE:-500}
IP=127.0.0.81
work=$(mktemp -d /tmp/skiff-bench-api.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$SKIFF" init --data-dir "$work/data" --store-listen "$IP:2379" --store-peer-listen "$IP:2380" \
    --apiserver-listen "$IP:6443" >"$work/init.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
    [ -f "$work/data/admin.conf" ] && break
    sleep 0.2
done
[ -f "$work/data/admin.conf" ] || { echo "skiff init did not start:"; cat "$work/init.log"; exit 1; }

echo "== skiff bench api (duration=${DURATION}s per phase, concurrency=$CONCURRENCY, rate=$RATE/s)"
"$SKIFF" bench api --server "$IP:6443" --data-dir "$work/data" --duration "$DURATION" \
    --concurrency "$CONCURRENCY" --rate "$RATE"
