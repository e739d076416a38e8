#!/usr/bin/env bash
# The newcomer's path, checked: a minimal Debian 12 made with debootstrap, with only
# `git make ca-certificates` installed and a clone of this repository alone (nothing beside it),
# runs the README's two commands — `make demo`, then `make test` with INFERTAP_REQUIRE_BPF=1 as
# CI does — with real BPF on this kernel. Prints both wall times and the ctest summary; exit 0
# only when both pass.
#
# Usage: sudo scripts/fresh-machine-check.sh [--repo DIR] [--commit REV] [--keep] [--dir DIR]
#   --repo DIR    the repository to clone (default: the checkout this script is in)
#   --commit REV  what to clone (default HEAD; only committed work is in a clone)
#   --keep        leave the chroot in place afterwards (its mounts are removed all the same)
#   --dir DIR     where to build the chroot (default: a new directory under /var/tmp)
#
# The chroot gets fresh proc, sysfs, devtmpfs, devpts, /run and /tmp mounts (so neither tracefs
# nor bpffs is mounted, as on a new machine), the host's cgroup hierarchy (which a new machine's
# init mounts), and its / is a mount point (ip netns needs one).
# It uses the host's apt sources and proxy settings, npm configuration and locally added CA
# certificates, so it works behind the same proxy as the host. Everything it mounts or starts is
# removed on exit, also on Ctrl-C or failure. Takes about 20–30 minutes (package installation and
# a full build dominate), which is why CI does not run it (docs/testing.md).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
commit=HEAD
keep=
root=
while [[ $# -gt 0 ]]; do
  case $1 in
    --repo) here=$(cd "${2:?--repo needs a directory}" && pwd); shift 2 ;;
    --commit) commit=${2:?--commit needs a revision}; shift 2 ;;
    --keep) keep=1; shift ;;
    --dir) root=${2:?--dir needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-machine-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

[[ $(id -u) -eq 0 ]] || { echo "fresh-machine-check: must run as root (debootstrap, chroot, mounts, BPF)" >&2; exit 1; }
sha=$(git -C "$here" rev-parse --verify "$commit^{commit}" 2> /dev/null) ||
  { echo "fresh-machine-check: '$commit' is not a commit of $here" >&2; exit 2; }

say() { printf '== %s\n' "$*"; }

if ! command -v debootstrap > /dev/null; then
  say "installing debootstrap on the host"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > /dev/null ||
    { echo "fresh-machine-check: could not install debootstrap (apt-get install debootstrap)" >&2; exit 1; }
fi

if [[ -z $root ]]; then root=$(mktemp -d /var/tmp/infertap-fresh.XXXXXX); else mkdir -p "$root"; fi
# The chroot's / must be 0755 like a real machine's: mktemp makes it 0700, and then no other user
# inside can reach any path (the tests that run the agent as nobody failed on that alone).
chmod 0755 "$root"
root=$(cd "$root" && pwd)

# ---- cleanup: processes whose root is the chroot, then every mount under it, then the tree ----
cleanup() {
  local rc=$?
  set +e
  say "cleaning up $root"
  for _ in 1 2 3; do
    local pids=()
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/root" 2> /dev/null) == "$root" ]] && pids+=("${p#/proc/}")
    done
    [[ ${#pids[@]} -eq 0 ]] && break
    kill -TERM "${pids[@]}" 2> /dev/null
    sleep 1
    kill -KILL "${pids[@]}" 2> /dev/null
  done
  # Network namespaces the tests made inside (bind mounts under the chroot's /run/netns) go with
  # the mounts; deepest first.
  findmnt -rn -o TARGET | grep -F "$root" | sort -r | while read -r m; do
    umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null
  done
  if [[ -z $keep ]]; then
    if findmnt -rn -o TARGET | grep -qF "$root"; then
      echo "fresh-machine-check: mounts remain under $root; not removing it" >&2
    else
      rm -rf --one-file-system "$root"
    fi
  else
    say "kept $root"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- a minimal Debian 12 ----
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2> /dev/null | head -1)
[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2> /dev/null)
[[ -n $mirror ]] || mirror=http://deb.debian.org/debian
cache=/var/cache/infertap-fresh-debs
mkdir -p "$cache"
say "debootstrap --variant=minbase bookworm $root ($mirror)"
t0=$(date +%s)
if ! debootstrap --variant=minbase --cache-dir="$cache" bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1; then
  tail -n 30 "$root.debootstrap.log" >&2
  echo "fresh-machine-check: debootstrap failed (log above)" >&2
  exit 1
fi
rm -f "$root.debootstrap.log"

# The host's apt sources, apt proxy settings, npm configuration and added CA certificates.
# (debootstrap's own sources.list is replaced, so no source is configured twice.)
rm -f "$root/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$root/etc/apt/sources.list.d/" 2> /dev/null || true
if [[ -f /etc/apt/sources.list ]]; then cp /etc/apt/sources.list "$root/etc/apt/sources.list"; fi
if ! compgen -G "$root/etc/apt/sources.list.d/*" > /dev/null && [[ ! -f $root/etc/apt/sources.list ]]; then
  echo "deb $mirror bookworm main" > "$root/etc/apt/sources.list"
fi
for f in /etc/apt/apt.conf.d/*; do
  grep -qi proxy "$f" 2> /dev/null && cp "$f" "$root/etc/apt/apt.conf.d/"
done
[[ -f /etc/npmrc ]] && cp /etc/npmrc "$root/etc/npmrc"
[[ -f /root/.npmrc ]] && cp /root/.npmrc "$root/root/.npmrc"
mkdir -p "$root/usr/local/share/ca-certificates"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2> /dev/null || true
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2> /dev/null || true

# ---- fresh kernel filesystems; / of the chroot a mount point ----
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t devtmpfs devtmpfs "$root/dev"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666,mode=0620
mount -t tmpfs tmpfs "$root/dev/shm"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
# The cgroup hierarchy, as the init system of a new machine mounts it (podman and runc need it;
# the project installs nothing there): the host's, with no propagation back to it.
if mountpoint -q /sys/fs/cgroup; then
  mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
  mount --make-rslave "$root/sys/fs/cgroup"
fi
# Helps a reader of the output: what a new machine does not have mounted.
if findmnt -rn -o FSTYPE -R "$root/sys" | grep -qE '^(tracefs|bpf|debugfs)$'; then
  echo "fresh-machine-check: tracefs/bpffs already mounted in the fresh sysfs?" >&2
  exit 1
fi

# Only what the issue allows a newcomer to start with; the proxy-related environment passes through.
envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY NODE_EXTRA_CA_CERTS \
  SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_SSL_CAINFO; do
  [[ -n ${!v:-} ]] && envs+=("$v=${!v}")
done
in_root() { chroot "$root" /usr/bin/env -i "${envs[@]}" "$@"; }

say "apt-get install git make ca-certificates"
in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git make ca-certificates > /dev/null && update-ca-certificates > /dev/null' ||
  { echo "fresh-machine-check: installing git make ca-certificates in the chroot failed" >&2; exit 1; }
say "base system ready in $(( $(date +%s) - t0 ))s"

# ---- the repository alone ----
mkdir -p "$root/mnt/origin"
mount --bind "$here" "$root/mnt/origin"
mount -o remount,bind,ro "$root/mnt/origin"
in_root git clone -q /mnt/origin /root/src/infertap
in_root git -C /root/src/infertap -c advice.detachedHead=false checkout -q "$sha"
umount "$root/mnt/origin"
[[ ! -e $root/root/src/shared ]] || { echo "fresh-machine-check: something beside the clone" >&2; exit 1; }
say "cloned $(git -C "$here" log -1 --format='%h %s' "$sha" | cut -c1-90)"

# ---- the two README commands ----
status=0
say "make demo"
t=$(date +%s)
in_root sh -c 'cd /root/src/infertap && make demo' 2>&1 | sed 's/^/  | /' && demo_rc=0 || demo_rc=$?
demo_s=$(( $(date +%s) - t ))
[[ $demo_rc -eq 0 ]] || status=1

say "make test (INFERTAP_REQUIRE_BPF=1)"
t=$(date +%s)
in_root sh -c 'cd /root/src/infertap && INFERTAP_REQUIRE_BPF=1 make test' > "$root/tmp/make-test.log" 2>&1 && test_rc=0 || test_rc=$?
test_s=$(( $(date +%s) - t ))
[[ $test_rc -eq 0 ]] || status=1
if [[ $test_rc -ne 0 ]]; then
  grep -E "(Failed|\*\*\*|Not Run|Exception)" "$root/tmp/make-test.log" | head -40 | sed 's/^/  | /'
  tail -n 60 "$root/tmp/make-test.log" | sed 's/^/  | /'
fi

say "summary"
echo "  node:       $(in_root node --version 2> /dev/null || echo missing)"
echo "  make demo:  exit $demo_rc, ${demo_s}s wall"
echo "  make test:  exit $test_rc, ${test_s}s wall"
grep -E "tests passed|tests failed|Total Test time" "$root/tmp/make-test.log" | sed 's/^/  /' || true
skipped=$(grep -cE "\*\*\*Skipped| Skipped " "$root/tmp/make-test.log" || true)
echo "  skipped:    $skipped"
[[ $skipped -eq 0 ]] || status=1
echo "  result:     $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
