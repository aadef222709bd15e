#!/usr/bin/env bash
# Build the tiny Linux test guest used by vman's end-to-end tests.
#
#   tests/guest/build.sh [OUT_DIR]
#
# OUT_DIR defaults to ${VMAN_GUEST_DIR:-$HOME/.cache/vman/guest}. On success the
# script prints OUT_DIR (and nothing else) on stdout, so a test harness can do
#   GUEST=$(tests/guest/build.sh)
# Diagnostics go to stderr.
#
# Artefacts in OUT_DIR:
#   vmlinuz      Debian's cloud kernel (from linux-image-cloud-amd64's dependency)
#   initrd.img   busybox-static initramfs (newc cpio, gzip) with the virtio,
#                ACPI button and evdev modules and the /init below
#   guest.info   key=value facts: package versions, kernel release, which
#                modules are loaded and which are built in, recommended cmdline
#
# Nothing is installed system-wide: the .debs are fetched with `apt-get
# download` and unpacked with `dpkg-deb -x` into a temporary directory. The
# build is skipped when OUT_DIR/.stamp matches (the stamp holds a hash of this
# very file, so editing the script rebuilds). Concurrent callers serialise on
# OUT_DIR/.lock.
#
# Recommended kernel command line (add the vman.* options below as needed):
#   console=ttyS0 quiet panic=-1
#
# Guest options, read by /init from /proc/cmdline:
#   vman.acpi=poweroff  (default) busybox acpid powers the guest off on an ACPI
#                       power-button press (QMP system_powerdown).
#   vman.acpi=ignore    the power button is ignored (exercises the host's
#                       graceful-stop timeout -> force-kill path).
#   vman.net=LIST       comma-separated, one item per NIC in order eth0, eth1, ...
#                       Items: `dhcp` (busybox udhcpc; prints
#                       `VMAN-DHCP ethN <ip>/<prefix>`), `<ip>/<prefix>` (static;
#                       prints `VMAN-NET ethN <ip>/<prefix>`), `none` (skip).
#                       A leading `static:` is accepted, e.g.
#                       vman.net=static:10.0.0.5/24,10.1.0.5/24.
#   vman.gw=<ip>        optional default route for static configurations.
#   vman.boot=MEDIUM    set by disk.sh's boot loaders (disk, cdrom); default kernel.
#
# Console protocol (ttyS0), in this order:
#   VMAN-BOOT <medium> <bios|uefi>             medium from vman.boot, firmware
#                                              from /sys/firmware/efi
#   VMAN-DISK vdX <size in 512-byte sectors>   one line per virtio disk
#   VMAN-DHCP / VMAN-NET lines                 one per configured NIC
#   VMAN-GUEST-READY                           everything is up
#   VMAN-POWEROFF                              printed by the power-button handler
#   VMAN-DISK vdX <sectors>, VMAN-DISK-REMOVED vdX   later, on disk hot-plug
#                                              (busybox mdev -d)
# After READY the guest answers ping (kernel) and sends the line VMAN-SSH-OK to
# every TCP connection on port 22 (busybox nc), and a root shell runs on ttyS0.
#
# Verified with:
#   qemu-system-x86_64 -accel tcg -m 256 -nodefaults -display none \
#     -kernel OUT/vmlinuz -initrd OUT/initrd.img \
#     -append 'console=ttyS0 quiet panic=-1 vman.net=dhcp' \
#     -serial file:/tmp/g.log -qmp unix:/tmp/g.qmp,server=on,wait=off \
#     -device virtio-net-pci,netdev=n0 \
#     -netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -no-reboot
#
# Environment:
#   VMAN_GUEST_DIR           default OUT_DIR
#   VMAN_GUEST_KERNEL_SUITE  take the kernel from this suite instead of the
#                            candidate, e.g. bookworm-backports (part of the stamp)
set -euo pipefail

# The kernel metapackage whose dependency names the real kernel package.
KERNEL_META=linux-image-cloud-amd64
KERNEL_SUITE=${VMAN_GUEST_KERNEL_SUITE:-}
# Modules to load, in this order (dependencies found in each module's .modinfo
# are put before it). Entries that are built into the kernel, or that do not
# exist on it (e.g. virtio_pci_legacy_dev on older kernels), are skipped.
# af_packet: udhcpc needs packet sockets. button + evdev: the ACPI power button
# appears as /dev/input/eventN, which busybox acpid reads.
WANTED_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
    virtio_pci failover net_failover virtio_net virtio_blk af_packet button evdev)
CMDLINE="console=ttyS0 quiet panic=-1"

log() { printf 'guest/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$SCRIPT")/lib.sh"
OUT=${1:-${VMAN_GUEST_DIR:-$HOME/.cache/vman/guest}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)

STAMP="vman-guest script=$(cat "$SCRIPT" "$(dirname "$SCRIPT")/lib.sh" | sha256sum | cut -d' ' -f1) kernel-suite=${KERNEL_SUITE}"

is_built() {
    [[ -s $OUT/vmlinuz && -s $OUT/initrd.img && -f $OUT/.stamp ]] &&
        [[ $(cat "$OUT/.stamp") == "$STAMP" ]]
}

# Fast path: no lock, no apt. The stamp is written last, after the artefacts
# have been renamed into place, so a matching stamp means a complete build.
if is_built; then
    echo "$OUT"
    exit 0
fi

exec 9>"$OUT/.lock"
flock 9
if is_built; then # another process built it while we waited for the lock
    echo "$OUT"
    exit 0
fi

# Host tools: apt/dpkg-deb/gzip are always there on Debian; cpio comes from the
# downloaded busybox. xz/zstd are needed only if the kernel's modules are
# compressed, and are checked when that happens.
for tool in apt-get apt-cache dpkg-deb gzip sha256sum flock; do
    command -v "$tool" >/dev/null || die "missing host tool: $tool"
done

make_work_dir

# Resolve the metapackage to the exact kernel package and version it depends
# on, then download both .debs. Prints "name version" of the kernel package.
resolve_kernel() {
    local spec=$KERNEL_META
    [[ -n $KERNEL_SUITE ]] && spec="$KERNEL_META/$KERNEL_SUITE"
    apt-cache show --no-all-versions "$spec" 2>/dev/null |
        sed -n 's/^Depends: *//p' | head -n1 | tr ',' '\n' |
        sed -n 's/^ *\(linux-image-[^ ]*\) *(= *\([^)]*\)).*/\1 \2/p' | head -n1
}

fetch() {
    local kpkg kver
    read -r kpkg kver < <(resolve_kernel) || return 1
    [[ -n ${kpkg:-} && -n ${kver:-} ]] || return 1
    log "downloading $kpkg=$kver and busybox-static"
    (cd "$DL" && apt-get download -q "$kpkg=$kver" busybox-static >&2) || return 1
}

fetch_or_refresh "$KERNEL_META's kernel and busybox-static"

KDEB=$(ls "$DL"/linux-image-*.deb)
BDEB=$(ls "$DL"/busybox-static_*.deb)
dpkg-deb -x "$KDEB" "$WORK/kernel"
dpkg-deb -x "$BDEB" "$WORK/busybox"
KPKG=$(dpkg-deb -f "$KDEB" Package)
KVER=$(dpkg-deb -f "$KDEB" Version)
BVER=$(dpkg-deb -f "$BDEB" Version)

VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-*)
KREL=${VMLINUZ##*/vmlinuz-}
MODDIR=$WORK/kernel/lib/modules/$KREL
[[ -d $MODDIR ]] || MODDIR=$WORK/kernel/usr/lib/modules/$KREL # merged-/usr layout
[[ -d $MODDIR ]] || die "no modules directory for $KREL in $KPKG"
BUSYBOX=$WORK/busybox/bin/busybox
[[ -x $BUSYBOX ]] || die "busybox-static has no /bin/busybox"

# ---- initramfs tree ---------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,etc/vman,proc,sys,dev,tmp,run,var/log,root}
mkdir -p "$ROOT/lib/modules/$KREL"
cp "$BUSYBOX" "$ROOT/bin/busybox"
# Applet symlinks at build time (busybox --list-full gives their usual paths),
# so /init can use plain command names from its first line on.
while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    [[ -e $ROOT/$applet ]] || ln -s /bin/busybox "$ROOT/$applet"
done < <("$BUSYBOX" --list-full)

# Module name -> file (names are compared with '-' folded to '_', as the
# kernel does).
declare -A MODFILE=()
while read -r f; do
    n=${f##*/}
    n=${n%%.ko*}
    MODFILE[${n//-/_}]=$f
done < <(find "$MODDIR" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
declare -A BUILTIN=()
if [[ -f $MODDIR/modules.builtin ]]; then
    while read -r f; do
        n=${f##*/}
        n=${n%%.ko*}
        BUILTIN[${n//-/_}]=1
    done <"$MODDIR/modules.builtin"
fi

# Install one module uncompressed: busybox insmod passes the file to
# init_module as is, and the kernel only accepts compressed modules if it was
# built with in-kernel decompression, so never rely on it.
install_module() {
    local name=$1 src=${MODFILE[$1]} dst=$ROOT/lib/modules/$KREL/$1.ko
    case $src in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) command -v xz >/dev/null || die "xz needed for $src (apt-get install xz-utils)"
            xz -dc "$src" >"$dst" ;;
        *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $src (apt-get install zstd)"
            zstd -qdc "$src" >"$dst" ;;
        *.ko.gz) gzip -dc "$src" >"$dst" ;;
    esac
}

# Depth-first: a module's dependencies (from its .modinfo "depends=") are
# installed and ordered before it.
declare -A SEEN=()
LOAD_ORDER=() SKIPPED_BUILTIN=() SKIPPED_MISSING=()
add_module() {
    local name=${1//-/_} dep deps
    [[ -n ${SEEN[$name]:-} ]] && return 0
    SEEN[$name]=1
    if [[ -z ${MODFILE[$name]:-} ]]; then
        if [[ -n ${BUILTIN[$name]:-} ]]; then SKIPPED_BUILTIN+=("$name")
        else SKIPPED_MISSING+=("$name"); fi
        return 0
    fi
    install_module "$name"
    deps=$(tr '\0' '\n' <"$ROOT/lib/modules/$KREL/$name.ko" | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do add_module "$dep"; done
    LOAD_ORDER+=("$name")
}
for m in "${WANTED_MODULES[@]}"; do add_module "$m"; done
printf '%s\n' "${LOAD_ORDER[@]}" >"$ROOT/etc/vman/modules"
for m in virtio_net virtio_blk; do
    [[ -n ${MODFILE[$m]:-} || -n ${BUILTIN[$m]:-} ]] || die "$KPKG has no $m driver"
done
[[ ${#SKIPPED_MISSING[@]} -eq 0 ]] || log "not in this kernel (skipped): ${SKIPPED_MISSING[*]}"

# ---- /init -------------------------------------------------------------------
cat >"$ROOT/init" <<'EOF'
#!/bin/sh
# vman test guest init (generated by tests/guest/build.sh; see that file).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null # CONFIG_DEVTMPFS_MOUNT may have done it
exec </dev/console >/dev/console 2>&1

acpi=poweroff net='' gw='' boot=kernel
for arg in $(cat /proc/cmdline); do
    case $arg in
        vman.boot=*) boot=${arg#vman.boot=} ;;
        vman.acpi=*) acpi=${arg#vman.acpi=} ;;
        vman.net=*) net=${arg#vman.net=} ;;
        vman.gw=*) gw=${arg#vman.gw=} ;;
    esac
done

krel=$(uname -r)
while read -r m; do
    insmod "/lib/modules/$krel/$m.ko" || echo "VMAN-WARN insmod $m failed"
done </etc/vman/modules

hostname vman-guest
ip link set lo up

# Which medium the boot loader says it came from, and which firmware ran it.
firmware=bios
[ -d /sys/firmware/efi ] && firmware=uefi
echo "VMAN-BOOT $boot $firmware"

# Power button. acpid reads /dev/input/event* (ACPI button via evdev) and runs
# /etc/acpi/PWRF/00000080 for a power-button press.
case $acpi in
    poweroff)
        if [ -e /dev/input/event0 ]; then
            acpid -l /var/log/acpid.log
        else
            echo "VMAN-WARN no input device, power button will be ignored"
        fi ;;
    ignore) ;;
    *) echo "VMAN-WARN unknown vman.acpi=$acpi (ignoring the power button)" ;;
esac

# Disks: virtio_blk probes synchronously on insmod, so they are all here.
# /run/vman/disks holds one file per disk reported, so that the hot-plug
# handler (below) reports each disk once.
mkdir -p /run/vman/disks
for d in /sys/block/vd*; do
    [ -e "$d" ] || continue
    : >"/run/vman/disks/${d##*/}"
    echo "VMAN-DISK ${d##*/} $(cat "$d/size")"
done

# Hot-plug: mdev listens for kernel uevents and reports disks that come and
# go (its start-up scan replays the disks above; the handler skips them).
mdev -d || echo "VMAN-WARN mdev failed, disk hot-plug will not be reported"

# Network: one item per NIC, eth0 first. DHCP clients run in parallel.
wait_iface() { # virtio_net registers NICs on insmod; allow a little slack
    n=0
    while [ ! -e "/sys/class/net/$1" ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
    [ -e "/sys/class/net/$1" ] || { echo "VMAN-WARN no interface $1"; return 1; }
}
i=0
for item in $(echo "${net#static:}" | tr ',' ' '); do
    ifc=eth$i
    i=$((i + 1))
    case $item in
        none | -) continue ;;
        dhcp)
            wait_iface "$ifc" || continue
            ip link set "$ifc" up
            { udhcpc -i "$ifc" -n -q -t 5 -s /etc/vman/udhcpc.script >/var/log/udhcpc.$ifc.log 2>&1 ||
                echo "VMAN-WARN no DHCP lease on $ifc"; } &
            ;;
        */*)
            wait_iface "$ifc" || continue
            ip addr add "$item" dev "$ifc" && ip link set "$ifc" up &&
                echo "VMAN-NET $ifc $item" ;;
        *) echo "VMAN-WARN bad vman.net item '$item'" ;;
    esac
done
wait
[ -n "$gw" ] && { ip route add default via "$gw" || echo "VMAN-WARN cannot route via $gw"; }

# "SSH" responder: any TCP client on port 22 gets one banner line. -ll keeps
# nc listening after each connection; it forks one handler per client.
nc -ll -p 22 -e /etc/vman/banner &

echo VMAN-GUEST-READY

# Stay alive with a shell on the console (handy for serial-console tests).
while :; do
    setsid cttyhack sh -l
    sleep 1
done
EOF

cat >"$ROOT/etc/vman/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc event handler: configure the lease and report it on the console.
# udhcpc passes interface, ip, mask, subnet, broadcast, router, dns as env.
# shellcheck disable=SC2154
case $1 in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up ;;
    bound | renew)
        prefix=$mask # busybox passes the prefix length as $mask
        case $prefix in
            '' | *.*) eval "$(ipcalc -p "$ip" "${subnet:-255.255.255.0}")"; prefix=$PREFIX ;;
        esac
        ip addr flush dev "$interface"
        ip addr add "$ip/$prefix" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        gw=${router%% *} # first router only
        if [ -n "$gw" ] && ! ip route | grep -q '^default'; then
            ip route add default via "$gw" dev "$interface"
        fi
        : >/etc/resolv.conf
        for s in $dns; do echo "nameserver $s" >>/etc/resolv.conf; done
        echo "VMAN-DHCP $interface $ip/$prefix" >/dev/console ;;
esac
exit 0
EOF

# mdev: every event on a virtio disk runs disk-event (ACTION=add|remove,
# MDEV=vdX); the '*' prefix means on both add and remove.
echo 'vd[a-z]+ 0:0 660 */etc/vman/disk-event' >"$ROOT/etc/mdev.conf"
cat >"$ROOT/etc/vman/disk-event" <<'EOF'
#!/bin/sh
# mdev handler for a virtio disk (partitions are vdXN and do not match).
seen=/run/vman/disks/$MDEV
case $ACTION in
    add)
        [ -e "$seen" ] && exit 0
        : >"$seen"
        echo "VMAN-DISK $MDEV $(cat "/sys/block/$MDEV/size")" >/dev/console ;;
    remove)
        rm -f "$seen"
        echo "VMAN-DISK-REMOVED $MDEV" >/dev/console ;;
esac
EOF

cat >"$ROOT/etc/vman/banner" <<'EOF'
#!/bin/sh
echo VMAN-SSH-OK
EOF

# acpid runs ./PWRF/00000080 (relative to /etc/acpi) for the power button.
cat >"$ROOT/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo VMAN-POWEROFF >/dev/console
sync
poweroff -f
EOF

echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:x:0:' >"$ROOT/etc/group"
chmod 755 "$ROOT/init" "$ROOT/etc/vman/udhcpc.script" "$ROOT/etc/vman/banner" "$ROOT/etc/vman/disk-event" \
    "$ROOT/etc/acpi/PWRF/00000080"

# ---- pack -----------------------------------------------------------------------
# busybox's own cpio writes newc; -R 0:0 makes every file root-owned even when
# this script does not run as root.
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort |
    "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9n >"$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"

{
    echo "kernel_package=$KPKG"
    echo "kernel_version=$KVER"
    echo "kernel_release=$KREL"
    echo "busybox_version=$BVER"
    echo "modules=${LOAD_ORDER[*]}"
    echo "builtin=${SKIPPED_BUILTIN[*]}"
    echo "absent=${SKIPPED_MISSING[*]}"
    echo "cmdline=$CMDLINE"
} >"$WORK/guest.info"

for f in vmlinuz initrd.img guest.info; do mv -f "$WORK/$f" "$OUT/$f"; done
echo "$STAMP" >"$OUT/.stamp.tmp" && mv -f "$OUT/.stamp.tmp" "$OUT/.stamp"
log "built $KPKG $KVER into $OUT"
echo "$OUT"
