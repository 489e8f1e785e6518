#!/usr/bin/env bash
# Build skiff, install it, and start a single-node control plane on this machine.
# Run as root on Debian 12 from a checkout: `bash deploy/install.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH:/usr/sbin:/sbin"

bash deploy/install-deps.sh
cargo build --release --bin skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff
mkdir -p /var/lib/skiff /var/log/skiff

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    install -m 0644 deploy/systemd/skiff.service /etc/systemd/system/skiff.service
    systemctl daemon-reload
    systemctl enable --now skiff.service
else
    # No init system (e.g. a container): run it in the background, logging to a file.
    if ! pgrep -x skiff >/dev/null 2>&1; then
        nohup /usr/local/bin/skiff init --data-dir /var/lib/skiff >>/var/log/skiff/skiff.log 2>&1 &
    fi
fi

# Wait until the store has a leader and the API server answers with the admin kubeconfig.
conf=/var/lib/skiff/admin.conf
for _ in $(seq 1 150); do
    if ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 --command-timeout=1s endpoint health >/dev/null 2>&1 &&
        [ -s "$conf" ] &&
        curl -sf --cacert /var/lib/skiff/pki/ca.crt \
            --cert /var/lib/skiff/pki/admin.crt --key /var/lib/skiff/pki/admin.key \
            https://127.0.0.1:6443/healthz >/dev/null 2>&1; then
        cat <<MSG
skiff is running: a single-node control plane, state in /var/lib/skiff.

The Kubernetes API is on https://127.0.0.1:6443. Use it with kubectl:

    export KUBECONFIG=$conf
    kubectl version
    kubectl api-versions

Copy $conf to ~/.kube/config to make it the default.
The store speaks the etcd v3 API on 127.0.0.1:2379:

    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 endpoint status -w table
MSG
        exit 0
    fi
    sleep 0.2
done
echo "skiff did not become healthy; see /var/log/skiff/skiff.log or journalctl -u skiff" >&2
exit 1
