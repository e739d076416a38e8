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
  # Debian's nginx and haproxy packages start a system service (nginx on :80, haproxy with
  # /etc/haproxy/haproxy.cfg); the tests run their own instances. Stop only the service of a
  # package this run just installed, through its own service manager (systemd, or the init
  # script's pidfile): never by process name, which would also end other users' and tests'
  # instances.
  for svc in nginx:nginx-light haproxy:haproxy; do
    name=${svc%%:*} pkg=${svc#*:}
    case " ${missing[*]} " in *" $pkg "*) ;; *) continue ;; esac
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      as_root systemctl disable --now "$name" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$name" ]; then
      as_root "/etc/init.d/$name" stop >/dev/null 2>&1 || true
    fi
  done
fi

# The `openai` npm client used by the end-to-end tests (test/e2e/node).
if [ -f "$here/test/e2e/node/package.json" ] && [ ! -d "$here/test/e2e/node/node_modules/openai" ]; then
  echo "install-deps: npm install (test/e2e/node)"
  (cd "$here/test/e2e/node" && npm install --no-audit --no-fund --silent)
fi
exit 0
