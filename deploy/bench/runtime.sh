#!/usr/bin/env bash
# Container runtime benchmark: `skiff bench runtime` runs a busybox `true` container N times
# through the node agent's runtime (overlay mount, bundle, shim, libcontainer create/start, exit
# record, delete) and then the same bundle N times under `crun run`, printing p50/p99/mean of
# both and the ratio (goal: skiff <= 2x crun). Needs root, busybox-static and crun
# (deploy/install-deps.sh installs them).
# Usage: deploy/bench/runtime.sh [path/to/skiff]   (env: ITERATIONS WORK_DIR)
set -euo pipefail
SKIFF=${1:-target/release/skiff}
ITERATIONS=${ITERATIONS:-200}
WORK_DIR=${WORK_DIR:-/var/tmp/skiff-bench-runtime}
if [ "$(id -u)" -ne 0 ]; then
    echo "runtime.sh: must run as root" >&2
    exit 1
fi
SKIFF_LOG=${SKIFF_LOG:-warn} "$SKIFF" bench runtime --iterations "$ITERATIONS" --work-dir "$WORK_DIR"
