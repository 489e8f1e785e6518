#!/usr/bin/env bash
# Install everything needed to build and test skiff on Debian 12 (bookworm).
# Idempotent: safe to run any number of times. Must run as root.
#
#   etcd-client  -> etcdctl (v3.4), used by the end-to-end tests
#   etcd-server  -> etcd (v3.4), used only by benchmarks as a baseline
#   nftables     -> nft, used by the tests to partition members
#   python3-venv -> a venv for the official Python client the API tests drive
#   busybox-static   -> /bin/busybox, packaged into OCI test images by the image store tests
#   docker-registry  -> a local OCI registry (v2 API) on 127.0.0.1 that the image tests pull from
#   apache2-utils    -> htpasswd (bcrypt), for the registry's basic-auth variant in the image tests
#   busybox-static -> /bin/busybox, the root filesystem layer of the container runtime tests
#   crun         -> a reference OCI runtime: the runtime tests and benchmark run our bundles under it
#   libseccomp-dev -> seccomp filters for containers (libcontainer's libseccomp feature links it)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    build-essential
    pkg-config
    ca-certificates
    curl
    git
    nftables
    iproute2
    etcd-client
    etcd-server
    python3
    python3-venv
    busybox-static
    docker-registry
    apache2-utils
    crun
    libseccomp-dev
)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: must run as root (try: sudo $0)" >&2
    exit 1
fi

# Skip the (slow) apt work when everything is already installed.
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps.sh: installing: ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
else
    echo "install-deps.sh: all Debian packages already installed"
fi

# Debian's etcd-server package starts an etcd service on install; it would
# hold 127.0.0.1:2379/2380 and clash with benchmarks. Stop and disable it
# (ignore failures: there may be no init system, e.g. in containers).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
    # Likewise docker-registry's service would hold port 5000; tests start their own registries.
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# Rust toolchain: use rustup's cargo if it exists; never download one.
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
        export PATH="${HOME:-/root}/.cargo/bin:$PATH"
    fi
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps.sh: no Rust toolchain found (expected cargo on PATH or in ~/.cargo/bin)" >&2
    exit 1
fi

# The official Python client, pinned, in a venv of its own (Debian's Python is externally
# managed, so pip may not install into it).
VENV=/opt/skiff-tests/venv
KUBERNETES_PY=37.0.2
if ! "$VENV/bin/python3" -c "import sys, kubernetes; sys.exit(kubernetes.__version__ != '$KUBERNETES_PY')" 2>/dev/null; then
    echo "install-deps.sh: installing the Python kubernetes client $KUBERNETES_PY into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes==$KUBERNETES_PY"
fi

echo "install-deps.sh: cargo: $(cargo --version)"
echo "install-deps.sh: etcdctl: $(ETCDCTL_API=3 etcdctl version 2>/dev/null | head -1)"
echo "install-deps.sh: nft: $(nft --version 2>/dev/null)"
echo "install-deps.sh: python client: $("$VENV/bin/python3" -c 'import kubernetes; print(kubernetes.__version__)')"
