#!/usr/bin/env bash
# Installs every build, test and demo dependency of infertap (docs/architecture.md, docs/testing.md) from Debian's
# packages and the npm registry. Idempotent: a second run with everything present does
# nothing but check. Needs root (or sudo) only when something is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

debs=(
  build-essential cmake pkg-config git
  clang llvm lld libclang-rt-14-dev          # BPF compile, libFuzzer, sanitizers
  libbpf-dev bpftool libelf-dev zlib1g-dev    # BPF loader + skeletons
  node-llhttp                                 # llhttp C sources (/usr/share/llhttp)
  prometheus-cpp-dev libcli11-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  libsimdjson-dev libcurl4-openssl-dev libpcap-dev nlohmann-json3-dev libspdlog-dev libssl-dev openssl
  iproute2 curl nginx-light prometheus tmux procps
  python3 gnuplot-nox
  libyaml-cpp-dev                             # kubeconfig parsing (k8s/)
)

missing=()
for p in "${debs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; fi
}

# Node.js and npm (for the `openai` npm client): a machine may already carry them from another
# repository; only install Debian's when the commands are absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# kubectl likewise (kubernetes-client in Debian; some images ship Google's kubectl package).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  stamp=/var/lib/apt/periodic/infertap-update-stamp
  if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root mkdir -p "$(dirname "$stamp")" && as_root touch "$stamp"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # Debian's nginx package starts a system nginx on :80; the tests run their own instances.
  if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable --now nginx 2>/dev/null || true; fi
  pkill -x nginx 2>/dev/null || true
fi

# The `openai` npm client used by the end-to-end tests (test/e2e/node).
if [ -f "$here/test/e2e/node/package.json" ] && [ ! -d "$here/test/e2e/node/node_modules/openai" ]; then
  echo "install-deps: npm install (test/e2e/node)"
  (cd "$here/test/e2e/node" && npm install --no-audit --no-fund --silent)
fi
exit 0
