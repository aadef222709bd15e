#!/usr/bin/env bash
# Build bootable media for vman's firmware-boot tests: the test guest of
# build.sh (same kernel, same initramfs) on a disk that boots through SeaBIOS
# and through OVMF (UEFI), and on a CD image that boots through either.
#
#   tests/guest/disk.sh [OUT_DIR]
#
# OUT_DIR defaults to ${VMAN_DISK_DIR:-$HOME/.cache/vman/disk}. On success the
# script prints OUT_DIR (and nothing else) on stdout:
#   DISK=$(tests/guest/disk.sh)
# Diagnostics go to stderr.
#
# Artefacts in OUT_DIR:
#   disk.raw    64 MiB. MBR with syslinux's mbr.bin, one active partition
#               (type 0xEF, from 1 MiB to the end) holding a FAT32 file system
#               labelled VMANBOOT: /vmlinuz, /initrd.img, syslinux (BIOS) in
#               /syslinux, systemd-boot (UEFI) as /EFI/BOOT/BOOTX64.EFI with
#               /loader. Both pass `console=ttyS0 quiet panic=-1 vman.boot=disk`.
#   disk.qcow2  the same disk, converted by qemu-img (base image for clones)
#   boot.iso    ISO 9660 with two El Torito entries: isolinux (BIOS) and a FAT
#               image with systemd-boot (UEFI); the same kernel and initramfs,
#               `vman.boot=cdrom`
#   disk.info   key=value facts: package versions, sizes, command lines
#
# The guest's /init prints `VMAN-BOOT <disk|cdrom|kernel> <bios|uefi>` first,
# so a test sees which medium and which firmware booted it.
#
# Like build.sh, nothing is installed on the host and nothing needs root or a
# mount: the bootloaders and the tools that write them (mtools, the mtools
# flavour of the syslinux installer, xorriso and its libraries) come from
# `apt-get download` + `dpkg-deb -x` into a temporary directory and run from
# there. Only qemu-img (qemu-utils, installed by scripts/setup) comes from the
# host. The build is skipped when OUT_DIR/.stamp matches: it holds a hash of
# this file and build.sh's stamp, so editing either rebuilds. Concurrent
# callers serialise on OUT_DIR/.lock.
#
# Verified with (SeaBIOS is QEMU's default firmware; for UEFI add the two
# pflash drives, the second a writable copy of OVMF_VARS_4M.fd):
#   qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults \
#     -display none -serial file:/tmp/d.log -no-reboot \
#     [-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
#      -drive if=pflash,format=raw,file=/tmp/OVMF_VARS_4M.fd] \
#     -blockdev driver=file,filename=OUT/disk.qcow2,node-name=f0,read-only=on \
#     -blockdev driver=qcow2,file=f0,node-name=d0,read-only=on \
#     -device virtio-blk-pci,drive=d0,bootindex=1
#
# Environment:
#   VMAN_DISK_DIR   default OUT_DIR
#   VMAN_GUEST_DIR  passed on to build.sh (where the kernel and initramfs are)
set -euo pipefail

CMDLINE="console=ttyS0 quiet panic=-1"
DISK_MIB=64 # total; the partition starts at 1 MiB
PART_START=2048 # sectors
LABEL=VMANBOOT
PACKAGES=(syslinux syslinux-common syslinux-efi isolinux systemd-boot-efi mtools
    xorriso libisoburn1 libisofs6 libburn4 libjte2 libreadline8)

log() { printf 'guest/disk.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$SCRIPT")/lib.sh"
HERE=$(dirname "$SCRIPT")
OUT=${1:-${VMAN_DISK_DIR:-$HOME/.cache/vman/disk}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)

# The guest itself (cached by build.sh; instant when up to date).
GUEST=$("$HERE/build.sh") || die "tests/guest/build.sh failed"
STAMP="vman-disk script=$(cat "$SCRIPT" "$(dirname "$SCRIPT")/lib.sh" | sha256sum | cut -d' ' -f1) guest=[$(cat "$GUEST/.stamp")]"

is_built() {
    [[ -s $OUT/disk.raw && -s $OUT/disk.qcow2 && -s $OUT/boot.iso && -f $OUT/.stamp ]] &&
        [[ $(cat "$OUT/.stamp") == "$STAMP" ]]
}

if is_built; then
    echo "$OUT"
    exit 0
fi

exec 9>"$OUT/.lock"
flock 9
if is_built; then
    echo "$OUT"
    exit 0
fi

for tool in apt-get dpkg-deb qemu-img sha256sum flock; do
    command -v "$tool" >/dev/null || die "missing host tool: $tool (run scripts/setup)"
done

make_work_dir

fetch() { (cd "$DL" && apt-get download -q "${PACKAGES[@]}" >&2); }
fetch_or_refresh "${PACKAGES[*]}"
T=$WORK/tools
for deb in "$DL"/*.deb; do dpkg-deb -x "$deb" "$T"; done
# syslinux runs mattrib and mcopy from PATH; xorriso needs its libraries.
export PATH="$T/usr/bin:$PATH"
export LD_LIBRARY_PATH="$T/usr/lib/x86_64-linux-gnu:$T/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MTOOLS_SKIP_CHECK=1 MTOOLSRC=/dev/null # not the caller's ~/.mtoolsrc
SYSLINUX_LIB=$T/usr/lib/syslinux
SDBOOT=$T/usr/lib/systemd/boot/efi/systemd-bootx64.efi
for f in "$T/usr/bin/syslinux" "$T/usr/bin/mtools" "$T/usr/bin/xorriso" "$SYSLINUX_LIB/mbr/mbr.bin" \
    "$SYSLINUX_LIB/modules/bios/ldlinux.c32" "$T/usr/lib/ISOLINUX/isolinux.bin" "$SDBOOT"; do
    [[ -f $f ]] || die "missing after unpacking: ${f#"$T"}"
done
version() { dpkg-deb -f "$(ls "$DL/$1"_*.deb)" Version; }

# ---- disk.raw: MBR + FAT32 partition -------------------------------------------
RAW=$WORK/disk.raw
TOTAL=$((DISK_MIB * 2048))
PART_LEN=$((TOTAL - PART_START))
truncate -s "${DISK_MIB}M" "$RAW"

# Little-endian 32-bit integer as printf escapes.
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# CHS address of an LBA for a 255-head, 63-sector geometry (1023/254/63 past it).
chs() {
    local c=$(($1 / (255 * 63))) h=$(($1 / 63 % 255)) s=$(($1 % 63 + 1))
    ((c > 1023)) && c=1023 h=254 s=63
    printf '\\x%02x\\x%02x\\x%02x' "$h" $((s | (c >> 2 & 0xC0))) $((c & 255))
}
# Boot code (440 bytes), disk signature, then one partition entry: active,
# type 0xEF (EFI system partition; syslinux's MBR boots any active entry).
dd if="$SYSLINUX_LIB/mbr/mbr.bin" of="$RAW" conv=notrunc status=none
# shellcheck disable=SC2059 # the format strings are generated escapes
{
    printf "$(le32 0x564d414e)\\x00\\x00"
    printf "\\x80$(chs $PART_START)\\xef$(chs $((TOTAL - 1)))$(le32 $PART_START)$(le32 $PART_LEN)"
    head -c 48 /dev/zero
    printf '\x55\xaa'
} | dd of="$RAW" bs=1 seek=440 conv=notrunc status=none

P="$RAW@@$((PART_START * 512))"
mformat -i "$P" -F -T "$PART_LEN" -h 64 -s 32 -H "$PART_START" -v "$LABEL" -N 564d414e ::
mcopy -i "$P" -m "$GUEST/vmlinuz" "$GUEST/initrd.img" ::/
mmd -i "$P" ::/syslinux ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries

# BIOS: syslinux. ldlinux.sys goes into /syslinux with the matching ldlinux.c32.
cat >"$WORK/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT vman
PROMPT 0
TIMEOUT 0
LABEL vman
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE vman.boot=disk
EOF
mcopy -i "$P" "$SYSLINUX_LIB/modules/bios/ldlinux.c32" "$WORK/syslinux.cfg" ::/syslinux/
syslinux --offset $((PART_START * 512)) --directory /syslinux --install "$RAW"

# UEFI: systemd-boot at the removable-media path, which firmware boots with
# no boot entry in its variables. timeout 0 boots the default at once.
mcopy -i "$P" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
printf 'default vman.conf\ntimeout 0\neditor no\n' >"$WORK/loader.conf"
cat >"$WORK/vman.conf" <<EOF
title vman test guest
linux /vmlinuz
initrd /initrd.img
options $CMDLINE vman.boot=disk
EOF
mcopy -i "$P" "$WORK/loader.conf" ::/loader/
mcopy -i "$P" "$WORK/vman.conf" ::/loader/entries/

qemu-img convert -f raw -O qcow2 "$RAW" "$WORK/disk.qcow2"

# ---- boot.iso: isolinux (BIOS) and an El Torito EFI image (UEFI) ---------------------
ISO=$WORK/iso
mkdir -p "$ISO/isolinux"
cp "$GUEST/vmlinuz" "$GUEST/initrd.img" "$ISO/"
cp "$T/usr/lib/ISOLINUX/isolinux.bin" "$SYSLINUX_LIB/modules/bios/ldlinux.c32" "$ISO/isolinux/"
sed 's/vman.boot=disk/vman.boot=cdrom/' "$WORK/syslinux.cfg" >"$ISO/isolinux/isolinux.cfg"
# UEFI firmware reads no ISO 9660: it boots a FAT image named by the El Torito
# catalogue, and systemd-boot loads the kernel from that same image.
EFI_SECTORS=$(( ($(stat -c %s "$GUEST/vmlinuz") + $(stat -c %s "$GUEST/initrd.img") + $(stat -c %s "$SDBOOT")) / 512 + 2048 ))
truncate -s $((EFI_SECTORS * 512)) "$ISO/efi.img"
mformat -i "$ISO/efi.img" -T "$EFI_SECTORS" -h 64 -s 32 -v VMANEFI -N 564d4143 ::
mmd -i "$ISO/efi.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$ISO/efi.img" -m "$GUEST/vmlinuz" "$GUEST/initrd.img" ::/
mcopy -i "$ISO/efi.img" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ISO/efi.img" "$WORK/loader.conf" ::/loader/
sed 's/vman.boot=disk/vman.boot=cdrom/' "$WORK/vman.conf" >"$WORK/vman-cd.conf"
mcopy -i "$ISO/efi.img" "$WORK/vman-cd.conf" ::/loader/entries/vman.conf
xorriso -as mkisofs -quiet -o "$WORK/boot.iso" -V VMANCD -J -R \
    -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
    -eltorito-alt-boot -e efi.img -no-emul-boot \
    "$ISO" >&2

{
    echo "guest_dir=$GUEST"
    grep -E '^(kernel_package|kernel_version|kernel_release)=' "$GUEST/guest.info"
    echo "syslinux_version=$(version syslinux)"
    echo "systemd_boot_version=$(version systemd-boot-efi)"
    echo "xorriso_version=$(version xorriso)"
    echo "disk_bytes=$((TOTAL * 512))"
    echo "partition=start:$PART_START,sectors:$PART_LEN,type:ef,fat32,label:$LABEL"
    echo "cmdline_disk=$CMDLINE vman.boot=disk"
    echo "cmdline_cdrom=$CMDLINE vman.boot=cdrom"
    echo "iso_bytes=$(stat -c %s "$WORK/boot.iso")"
} >"$WORK/disk.info"

for f in disk.raw disk.qcow2 boot.iso disk.info; do
    chmod 644 "$WORK/$f"
    mv -f "$WORK/$f" "$OUT/$f"
done
echo "$STAMP" >"$OUT/.stamp.tmp" && mv -f "$OUT/.stamp.tmp" "$OUT/.stamp"
log "built disk.raw, disk.qcow2 and boot.iso into $OUT"
echo "$OUT"
