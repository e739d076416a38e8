#!/usr/bin/env bash
# The container image (Dockerfile, docs/deploy.md#image) with podman, in a private store under the
# build dir (vfs storage, runc: what works on the project's machines; never the machine's default
# store). Root.
#
#   scripts/image.sh podman BUILD_DIR        print the podman command line for that store
#   scripts/image.sh base BUILD_DIR          make sure the store has the base image (below); print its name
#   scripts/image.sh build BUILD_DIR [TAG]   full from-source build (Dockerfile default target)
#
# The base: $BASE when set (any Debian 12 image your podman can pull, e.g. debian:12-slim);
# otherwise localhost/infertap-base:bookworm, made from `debootstrap --variant=minbase bookworm`
# (the rootfs tarball is cached in BUILD_DIR/podman/bookworm-minbase.tar; a clean build dir
# makes it, ~2 minutes) — machines without a registry need this.
set -euo pipefail
cmd=${1:?usage: image.sh podman|base|build BUILD_DIR [TAG]}
build=${2:?usage: image.sh podman|base|build BUILD_DIR [TAG]}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$build/podman"
store=$(cd "$build/podman" && pwd)
podman_cmd="podman --root $store/storage --runroot $store/run --storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend file"
read -r -a PODMAN <<< "$podman_cmd"

# Unmounts whatever debootstrap left mounted under the rootfs, then removes it.
drop_rootfs() {
  [[ -n ${rootfs:-} ]] || return 0
  grep -o " ${rootfs}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2> /dev/null || true
  grep -q " $rootfs" /proc/mounts || rm -rf "$rootfs"
  rm -f "${tar:-}.tmp"
}

ensure_base() {
  if [[ -n ${BASE:-} ]]; then echo "$BASE"; return; fi
  local base=localhost/infertap-base:bookworm
  tar=$store/bookworm-minbase.tar
  if ! "${PODMAN[@]}" image exists "$base"; then
    if [[ ! -s $tar ]]; then
      local mirror
      mirror=$(sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) bookworm .*/\2/p' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)
      mirror=${mirror:-http://deb.debian.org/debian}
      rootfs=$(mktemp -d "$store/rootfs.XXXXXX")
      # debootstrap mounts proc/sys in the target while it works: an interrupted run leaves no
      # mount and no half-made rootfs behind.
      trap drop_rootfs EXIT
      if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$store/debootstrap.log" 2>&1; then
        echo "image.sh: debootstrap bookworm from $mirror failed:" >&2
        tail -5 "$store/debootstrap.log" >&2
        exit 1
      fi
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      tar -C "$rootfs" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
      drop_rootfs
      trap - EXIT
    fi
    if ! "${PODMAN[@]}" import "$tar" "$base" > "$store/import.log" 2>&1; then
      echo "image.sh: podman import $tar failed:" >&2
      tail -5 "$store/import.log" >&2
      exit 1
    fi
  fi
  echo "$base"
}

# runc sets the container's rlimits and may not raise them: podman's defaults (and, for nproc,
# even a shell's own hard limit) are refused on these machines. Explicit, modest values.
nofile=$(ulimit -Hn)
if [[ $nofile == unlimited ]] || ((nofile > 65536)); then nofile=65536; fi
ULIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=4096:4096")

case $cmd in
  podman) echo "$podman_cmd" ;;
  ulimits) echo "${ULIMITS[*]}" ;;
  base) ensure_base ;;
  build)
    tag=${3:-localhost/infertap:0.1.0}
    base=$(ensure_base)
    "${PODMAN[@]}" build --build-arg "BASE=$base" --isolation chroot --network host "${ULIMITS[@]}" \
      -f "$here/Dockerfile" -t "$tag" "$here"
    echo "image.sh: built $tag (store: $podman_cmd images)"
    ;;
  *) echo "usage: image.sh podman|base|build BUILD_DIR [TAG]" >&2; exit 2 ;;
esac
