#!/usr/bin/env bash
# Pod start benchmark: `skiff init` on 127.0.0.82 plus a standalone `skiff agent` for node
# `bench-node` (so its memory is its own), a busybox image imported into that agent's store,
# then `skiff bench pods`: N pods created bound to the node, each timed from creation to the
# watch event showing it Running (p50/p99; goals 150 ms / 500 ms), and the agent's RSS with
# all of them running (goal <= 40 MB). Needs root and busybox-static.
# Usage: deploy/bench/pods.sh [path/to/skiff]   (env: PODS)
set -euo pipefail
SKIFF=$(realpath "${1:-target/release/skiff}")
PODS=${PODS:-100}
IP=127.0.0.82
NODE=bench-node
if [ "$(id -u)" -ne 0 ]; then
    echo "pods.sh: must run as root" >&2
    exit 1
fi
work=$(mktemp -d /var/tmp/skiff-bench-pods.XXXXXX)
init_pid= agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill -9 "$agent_pid" 2>/dev/null
    [ -n "$init_pid" ] && kill -9 "$init_pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work" "/run/skiff/$NODE-bench"
}
trap cleanup EXIT

# A one-layer `docker save` archive of busybox-static.
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
mkdir -p "$work/rootfs/bin" "$work/image/layer"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh sleep true echo; do ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/image/layer/layer.tar" .
diff_id=$(sha256sum "$work/image/layer/layer.tar" | cut -d' ' -f1)
config="{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]}}"
config_id=$(printf %s "$config" | sha256sum | cut -d' ' -f1)
printf %s "$config" >"$work/image/$config_id.json"
printf '[{"Config":"%s.json","RepoTags":["skiff.bench/busybox:1"],"Layers":["layer/layer.tar"]}]' \
    "$config_id" >"$work/image/manifest.json"
tar -C "$work/image" -cf "$work/busybox.tar" .
"$SKIFF" image import --root "$work/agent/images" "$work/busybox.tar" >/dev/null

SKIFF_LOG=${SKIFF_LOG:-warn} "$SKIFF" init --data-dir "$work/data" --store-listen "$IP:2379" \
    --store-peer-listen "$IP:2380" --apiserver-listen "$IP:6443" --node-name "$NODE-init" \
    --agent-listen "$IP:0" >"$work/init.log" 2>&1 &
init_pid=$!
for _ in $(seq 1 150); do
    [ -f "$work/data/admin.conf" ] && break
    sleep 0.2
done
[ -f "$work/data/admin.conf" ] || { echo "skiff init did not start:"; cat "$work/init.log"; exit 1; }
SKIFF_LOG=${SKIFF_LOG:-warn} "$SKIFF" agent --kubeconfig "$work/data/admin.conf" --node-name "$NODE" \
    --node-ip "$IP" --listen "$IP:0" --root-dir "$work/agent" --run-dir "/run/skiff/$NODE-bench" \
    --log-dir "$work/logs" --cgroup-root "/skiff/$NODE" >"$work/agent.log" 2>&1 &
agent_pid=$!

"$SKIFF" bench pods --kubeconfig "$work/data/admin.conf" --node "$NODE" --pods "$PODS" \
    --image skiff.bench/busybox:1 --agent-pid "$agent_pid"
# Let the agent remove the containers before it goes.
for _ in $(seq 1 300); do
    [ -z "$(ls -A "/run/skiff/$NODE-bench/runtime/bundles" 2>/dev/null)" ] && break
    sleep 0.2
done
