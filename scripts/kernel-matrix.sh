#!/usr/bin/env bash
# Boots Debian's own kernel packages in qemu and runs the capture e2e tests inside each guest
# (docs/testing.md "Kernel matrix", docs/capture.md#kernel-requirements).
#
#   scripts/kernel-matrix.sh [BUILD_DIR]
#   KERNELS="5.10 6.1 6.1-cloud 6.12"   which kernels (default: all four)
#   GTEST_FILTER=...                    which capture e2e tests run in each guest
#                                       (default: CaptureE2E.*, every one)
#   GUEST_TIMEOUT=SECONDS               per guest (default 1800)
#   KERNEL_CACHE=DIR                    downloaded .debs and extracted kernels
#                                       (default: BUILD_DIR/kernel-cache; never in the repository)
#
# Nothing is installed on the host: each kernel .deb comes from `apt-get download` with a
# private APT configuration for its suite (bullseye, bookworm, trixie) and is unpacked with
# `dpkg-deb -x`. The guest gets the host's root file system read-only (9p for the generic
# kernels, virtiofs for the cloud flavour, which has no 9p), a tmpfs overlay over it so it can
# write, and an initramfs of static busybox plus the modules it needs. The guest runs the very
# test binary of BUILD_DIR, so both objects (modern and compatible) are the ones under test.
#
# Acceleration: KVM when kvm_intel/kvm_amd is loaded and /dev/kvm opens, else TCG
# (`-accel tcg,thread=multi -cpu max`): nested virtualisation (e.g. PVM) often cannot boot a
# stock kernel. Exit status: 0 when every kernel passed, 1 otherwise; one line per kernel.
set -euo pipefail

export PATH=$PATH:/usr/sbin:/sbin
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
kernels=${KERNELS:-5.10 6.1 6.1-cloud 6.12}
cache=${KERNEL_CACHE:-$build/kernel-cache}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
guest_timeout=${GUEST_TIMEOUT:-1800}
test_bin=$build/test/e2e/capture_e2e_test

die() {
  echo "kernel-matrix: $*" >&2
  exit 1
}

if [[ $(id -u) -ne 0 ]]; then
  echo "kernel-matrix: needs root (the guest runs the BPF e2e tests as root of the host's file system)" >&2
  # Under ctest a non-root run is a skip (77), unless INFERTAP_REQUIRE_BPF=1 asks for no skips.
  [[ ${INFERTAP_REQUIRE_BPF:-} == 1 ]] && exit 1
  exit 77
fi
for tool in qemu-system-x86_64 busybox dpkg-deb apt-get depmod modprobe cpio python3; do
  command -v "$tool" > /dev/null || die "$tool is missing: run scripts/install-deps.sh"
done
fetch_only=
[[ ${2:-} == --fetch-only ]] && fetch_only=1
[[ -n $fetch_only || -x $test_bin ]] || die "$test_bin is missing: build it first (cmake --build $build --target capture_e2e_test infertap)"
[[ -n $fetch_only || -x $build/infertap ]] || die "$build/infertap is missing: build it first"
busybox_bin=$(command -v busybox)
if ldd "$busybox_bin" > /dev/null 2>&1; then
  die "$busybox_bin is not static: install busybox-static (scripts/install-deps.sh)"
fi
virtiofsd_bin=
for p in /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd "$(command -v virtiofsd || true)"; do
  if [[ -n $p && -x $p ]]; then
    virtiofsd_bin=$p
    break
  fi
done

mkdir -p "$cache"
work=$(mktemp -d /tmp/infertap-kmatrix.XXXXXX)
vfs_pid=
cleanup() {
  if [[ -n $vfs_pid ]]; then kill "$vfs_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# kernel label → suite and metapackage.
suite_of() {
  case $1 in
    5.10) echo bullseye ;;
    6.1 | 6.1-cloud) echo bookworm ;;
    6.12) echo trixie ;;
    *) die "unknown kernel '$1' (known: 5.10 6.1 6.1-cloud 6.12)" ;;
  esac
}
meta_of() {
  case $1 in
    *-cloud) echo linux-image-cloud-amd64 ;;
    *) echo linux-image-amd64 ;;
  esac
}

# A private APT for one suite: its own lists and archive cache, nothing of the host's.
apt_for() {
  local suite=$1 d=$cache/apt/$1
  if [[ ! -f $d/apt.conf ]]; then
    mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/parts" "$d/prefs"
    : > "$d/status"
    echo "deb [signed-by=$keyring] $mirror $suite main" > "$d/sources.list"
    cat > "$d/apt.conf" << EOF
Dir::State::Lists "$d/lists";
Dir::State::status "$d/status";
Dir::Cache "$d";
Dir::Cache::archives "$d/archives";
Dir::Etc::SourceList "$d/sources.list";
Dir::Etc::SourceParts "$d/parts";
Dir::Etc::PreferencesParts "$d/prefs";
APT::Architecture "amd64";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
  fi
  if [[ ! -f $d/updated ]] || [[ -n $(find "$d/updated" -mmin +1440 2> /dev/null) ]]; then
    APT_CONFIG=$d/apt.conf apt-get -qq update > "$work/apt-$suite.log" 2>&1 ||
      {
        cat "$work/apt-$suite.log" >&2
        die "apt-get update for $suite failed"
      }
    touch "$d/updated"
  fi
  echo "$d/apt.conf"
}

# Downloads and unpacks the kernel package of one label; prints the unpacked directory.
fetch_kernel() {
  local label=$1 suite meta conf pkg dir
  if [[ -f $cache/$label.dir ]] && [[ -d $(cat "$cache/$label.dir") ]]; then
    cat "$cache/$label.dir"
    return
  fi
  suite=$(suite_of "$label")
  meta=$(meta_of "$label")
  conf=$(apt_for "$suite")
  pkg=$(APT_CONFIG=$conf apt-cache depends "$meta" 2> /dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
  [[ -n $pkg ]] || die "cannot resolve $meta in $suite"
  mkdir -p "$cache/debs"
  if ! ls "$cache/debs/${pkg}_"*.deb > /dev/null 2>&1; then
    (cd "$cache/debs" && APT_CONFIG=$conf apt-get -qq download "$pkg") ||
      die "apt-get download $pkg ($suite) failed"
  fi
  dir=$cache/extract/$pkg
  if [[ ! -d $dir/done ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$cache/debs/${pkg}_"*.deb "$dir"
    mkdir "$dir/done"
  fi
  echo "$dir" > "$cache/$label.dir"
  echo "$dir"
}

# The uncompressed ELF vmlinux from a bzImage (PVH entry: qemu boots it directly, a few seconds
# faster under TCG than decompressing in the guest). Prints nothing when it cannot.
extract_vmlinux() {
  python3 - "$1" "$2" << 'EOF'
import lzma, gzip, struct, sys, zlib
src, dst = sys.argv[1], sys.argv[2]
img = open(src, "rb").read()
setup_sects = img[0x1F1] or 4
off, length = struct.unpack_from("<II", img, 0x248)
payload = img[(setup_sects + 1) * 512 + off:][:length]
out = None
if payload.startswith(b"\xfd7zXZ\x00"):
    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
elif payload.startswith(b"\x1f\x8b"):
    out = zlib.decompressobj(31).decompress(payload)
if out is None or not out.startswith(b"\x7fELF"):
    sys.exit(1)
open(dst, "wb").write(out)
EOF
}

# Modules the guest loads, in dependency order (modprobe --show-depends), decompressed.
modules_for() {
  local root=$1 kver=$2 out=$3 m path
  shift 3
  depmod -b "$root" "$kver" 2> /dev/null || true
  : > "$out/modules.order"
  for m in "$@"; do
    modprobe -d "$root" -S "$kver" --show-depends "$m" 2> /dev/null |
      sed -n 's/^insmod \([^ ]*\).*/\1/p' | while read -r path; do
      local base
      base=$(basename "$path")
      base=${base%.xz}
      base=${base%.zst}
      base=${base%.gz}
      grep -qx "$base" "$out/modules.order" && continue
      case $path in
        *.xz) xz -dc "$path" > "$out/lib/$base" ;;
        *.zst) zstd -qdc "$path" > "$out/lib/$base" ;;
        *.gz) gzip -dc "$path" > "$out/lib/$base" ;;
        *) cp "$path" "$out/lib/$base" ;;
      esac
      echo "$base" >> "$out/modules.order"
    done
  done
}

make_initramfs() {
  local root=$1 kver=$2 fs=$3 out=$4 d=$work/initramfs-$kver-$fs
  rm -rf "$d"
  mkdir -p "$d"/{bin,dev,proc,sys,lib,mnt/ro,mnt/rw,newroot}
  cp "$busybox_bin" "$d/bin/busybox"
  ln -s busybox "$d/bin/sh"
  local mods=(virtio_pci virtio_blk overlay veth)
  if [[ $fs == 9p ]]; then mods+=(9p 9pnet_virtio); else mods+=(virtiofs); fi
  modules_for "$root" "$kver" "$d" "${mods[@]}"
  cat > "$d/init" << 'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /lib/$m 2>/dev/null; done
fs=$(sed -n 's/.*kmfs=\([a-z0-9]*\).*/\1/p' /proc/cmdline)
if [ "$fs" = 9p ]; then
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /mnt/ro
else
  mount -t virtiofs -o ro hostroot /mnt/ro
fi || { echo "KM-RESULT rc=98 (cannot mount the host root over $fs)"; reboot -f; }
mount -t tmpfs -o size=1g tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/ro,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot ||
  { echo "KM-RESULT rc=97 (overlay mount failed)"; reboot -f; }
for m in proc sys dev; do mount --move /$m /newroot/$m; done
cp /km-guest.sh /newroot/km-guest.sh
chroot /newroot /bin/sh /km-guest.sh
echo "KM-RESULT rc=$?"
sync
reboot -f
EOF
  chmod 755 "$d/init"
  (cd "$d" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
}

# What runs inside the guest, on the host's file system (overlay): the capture e2e tests with the
# variant the probe picks and, when that is the modern one, again with the compatible one forced.
guest_script() {
  cat << EOF
set -u
# /tmp stays the host's (through the overlay): a build directory under /tmp (a CI clone) must
# be visible here. The guest's own scratch files go to /run.
mount -t tmpfs tmpfs /run && mkdir -p /run/netns
mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ip link set lo up
echo "KM-KERNEL \$(uname -r)"
$build/infertap version --features > /run/km-features 2>&1
sed 's/^/KM-FEATURES /' /run/km-features
# The probe's pick, then the compatible variant forced when the pick was the modern one.
variants=auto
grep -q '^capture variant: modern' /run/km-features && variants="auto compat"
rc=0
cd $build/test/e2e
for v in \$variants; do
  echo "KM-VARIANT \$v"
  INFERTAP_BPF_VARIANT=\$v INFERTAP_REQUIRE_BPF=1 $test_bin --gtest_brief=1 \
    --gtest_filter='${GTEST_FILTER:-CaptureE2E.*}' > /run/km-\$v.out 2>&1
  r=\$?
  tail -n 40 /run/km-\$v.out | sed "s/^/KM-\$v /"
  [ "\$r" = 0 ] || rc=1
done
exit \$rc
EOF
}

# Runs one kernel; prints one summary line; returns non-zero on failure.
run_kernel() {
  local label=$1 root vmlinuz kver kernel fs initrd log accel cpu t0 t1
  root=$(fetch_kernel "$label")
  vmlinuz=$(ls "$root"/boot/vmlinuz-* | head -n 1)
  kver=${vmlinuz##*/vmlinuz-}
  kernel=$cache/vmlinux-$kver
  if [[ ! -f $kernel ]]; then
    extract_vmlinux "$vmlinuz" "$kernel.tmp" && mv "$kernel.tmp" "$kernel" || kernel=$vmlinuz
  fi
  if [[ -d $root/lib/modules/$kver/kernel/fs/9p ]] || [[ -d $root/usr/lib/modules/$kver/kernel/fs/9p ]]; then
    fs=9p
  else
    fs=virtiofs
    [[ -n $virtiofsd_bin ]] || die "$label needs virtiofsd (qemu-system-common)"
  fi
  [[ -d $root/lib/modules ]] || root=$root/usr  # trixie: modules under /usr/lib/modules
  initrd=$work/initrd-$kver.gz
  make_initramfs "$root" "$kver" "$fs" "$initrd"
  # The guest script lives in the overlay's upper layer (the lower layer is read-only): hand it
  # over through the initramfs instead.
  guest_script > "$work/km-guest.sh"
  (cd "$work" && mkdir -p gs && cp km-guest.sh gs/ &&
    cd gs && find . | cpio -o -H newc --quiet | gzip -1 >> "$initrd")

  accel=(-accel tcg,thread=multi)
  cpu=max
  if grep -qE '^kvm_(intel|amd) ' /proc/modules 2> /dev/null && [[ -w /dev/kvm ]]; then
    accel=(-accel kvm)
    cpu=host
  fi
  local fsargs=()
  if [[ $fs == 9p ]]; then
    fsargs=(-fsdev "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap"
      -device "virtio-9p-pci,fsdev=fs0,mount_tag=hostroot"
      -m 2G)
  else
    local sock=$work/vfs-$label.sock
    "$virtiofsd_bin" --socket-path="$sock" -o source=/ -o cache=auto -o sandbox=chroot > "$work/virtiofsd.log" 2>&1 &
    vfs_pid=$!
    for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.1; done
    fsargs=(-chardev "socket,id=vfs,path=$sock" -device "vhost-user-fs-pci,chardev=vfs,tag=hostroot"
      -object "memory-backend-memfd,id=mem,size=2G,share=on" -numa "node,memdev=mem" -m 2G)
  fi
  log=$work/guest-$label.log
  t0=$(date +%s)
  timeout "$guest_timeout" qemu-system-x86_64 "${accel[@]}" -cpu "$cpu" -smp 2 -M q35 \
    -nographic -no-reboot -serial stdio -monitor none -nic none \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 kmfs=$fs" \
    "${fsargs[@]}" < /dev/null > "$log" 2>&1 || true
  t1=$(date +%s)
  if [[ -n $vfs_pid ]]; then
    kill "$vfs_pid" 2> /dev/null || true
    wait "$vfs_pid" 2> /dev/null || true
    vfs_pid=
  fi
  tr -d '\r' < "$log" | grep -E '^KM-' | sed "s/^/  [$label] /"
  local rc
  rc=$(tr -d '\r' < "$log" | sed -n 's/^KM-RESULT rc=\([0-9]*\).*/\1/p' | tail -n 1)
  if [[ $rc == 0 ]]; then
    echo "kernel-matrix: $label ($kver, $fs, ${accel[1]}): PASS in $((t1 - t0)) s"
    return 0
  fi
  echo "kernel-matrix: $label ($kver, $fs, ${accel[1]}): FAIL (rc=${rc:-none}) in $((t1 - t0)) s; last console lines:"
  tr -d '\r' < "$log" | grep -v '^KM-' | tail -n 30 | sed 's/^/  | /'
  return 1
}

if [[ -n $fetch_only ]]; then
  for k in $kernels; do echo "$k: $(fetch_kernel "$k")"; done
  exit 0
fi
failed=0
for k in $kernels; do
  run_kernel "$k" || failed=1
done
exit $failed
