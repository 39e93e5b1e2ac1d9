#!/usr/bin/env bash
# Builds the "cloud" Tern test guest: a Debian 12 cloud disk image (systemd, cloud-init,
# qemu-guest-agent, OpenSSH) that boots by itself under BIOS and UEFI, the way a user's own
# image would, into a cache directory named by its inputs.
#
#   guest/cloud/build.sh [OUTDIR_ROOT]
#
# Default root: ${TERN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tern}/cloud-guest. The last
# line of stdout is the output directory; progress goes to stderr. See guest/README.md.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${1:-${TERN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tern}/cloud-guest}

SUITE=bookworm
# What a Debian cloud image has, minus what a test guest does not need.
PACKAGES=(linux-image-cloud-amd64 initramfs-tools zstd systemd-sysv udev dbus libpam-systemd
	cloud-init qemu-guest-agent openssh-server cloud-guest-utils fdisk gdisk e2fsprogs ifupdown
	isc-dhcp-client iproute2 procps sudo kmod)
HOST_PACKAGES=(mmdebstrap qemu-utils e2fsprogs fdisk dosfstools mtools syslinux syslinux-common
	systemd-boot-efi)
# Fixed identities of the disk: a clone of the image has the same ones, as a real image does.
DISK_GUID=7465726e-636c-6f75-6400-000000000001
ESP_GUID=7465726e-636c-6f75-6400-000000000002
ROOT_GUID=7465726e-636c-6f75-6400-000000000003
ROOT_FS_UUID=7465726e-636c-6f75-6400-000000000004
ESP_VOLID=7465C10D
DISK_MIB=2048
ESP_MIB=64
# quiet: every console byte is slow under TCG.
CMDLINE="root=PARTUUID=$ROOT_GUID ro console=ttyS0 quiet"

log() { echo "cloud/build.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

# --- host tools -------------------------------------------------------------------------------
missing=()
for p in "${HOST_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; then
		apt-get update -q >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
	fi
fi

# The machine's own Debian sources (main archive and security), passed to mmdebstrap.
mapfile -t SOURCES < <(grep -lsE '^[^#]*(deb|security|snapshot)\.debian\.org' \
	/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources | sort)
((${#SOURCES[@]})) || die "no Debian archive in the apt sources"

# --- exact package versions (part of the cache key) ---------------------------------------
# The candidate version of every package asked for, and of the kernel that the
# linux-image-cloud-amd64 metapackage points at.
resolve() {
	local show kpkg p
	show=$(apt-cache show --no-all-versions "${PACKAGES[@]}" 2>/dev/null) || true
	if [ -z "$show" ]; then
		apt-get update -q >&2
		show=$(apt-cache show --no-all-versions "${PACKAGES[@]}") || die "apt does not know all of ${PACKAGES[*]}"
	fi
	awk '/^Package: /{p=$2} /^Version: /{print "package", p, $2}' <<<"$show"
	for p in "${PACKAGES[@]}"; do
		grep -qx "Package: $p" <<<"$show" || die "$p is not known to apt"
	done
	kpkg=$(sed -n 's/^Depends: .*\(linux-image-[0-9][^ ]*-cloud-amd64\) (= \([^)]*\)).*/\1 \2/p' <<<"$show")
	[ -n "$kpkg" ] || die "cannot resolve the kernel package of linux-image-cloud-amd64"
	echo "package $kpkg"
	dpkg-query -W -f='tool ${Package} ${Version}\n' "${HOST_PACKAGES[@]}"
}
# apt-cache takes seconds, so the answer is memoized until the apt lists or the installed
# packages change.
mkdir -p "$ROOT"
FP=$(stat -c '%n %s %Y' /var/lib/dpkg/status /var/lib/apt/lists/*Packages* /etc/apt/sources.list* \
	/etc/apt/preferences* 2>/dev/null | sha256sum | cut -d' ' -f1) || true
MEMO=$ROOT/.resolved
if [ -f "$MEMO" ] && [ "$(head -n 1 "$MEMO")" = "fp $FP" ]; then
	RESOLVED=$(tail -n +2 "$MEMO")
else
	RESOLVED=$(resolve | sort)
	{ echo "fp $FP" && echo "$RESOLVED"; } >"$MEMO.$$" && mv "$MEMO.$$" "$MEMO"
fi
key_input() {
	(cd "$HERE" && find build.sh files -type f -print | sort | while read -r f; do
		echo "file $f $([ -x "$f" ] && echo x || echo -) $(sha256sum <"$f" | cut -d' ' -f1)"
	done)
	echo "$RESOLVED"
	printf 'source %s\n' "${SOURCES[@]}"
}
KEY=$(key_input | sha256sum | cut -d' ' -f1)
OUT=$ROOT/$KEY
if [ -f "$OUT/manifest.json" ]; then
	log "cache hit"
	echo "$OUT"
	exit 0
fi

log "building cloud guest $KEY"
WORK=$(mktemp -d "$ROOT/.build.XXXXXX")
# mmdebstrap mounts /proc, /sys and device nodes into the root it builds and unmounts them when
# it ends; if it was killed some may be left. Never delete through a mount into the host.
cleanup() {
	findmnt -rno TARGET | grep "^$WORK/" | sort -r | xargs -r umount -l 2>/dev/null || true
	rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
START=$SECONDS

# --- root filesystem -----------------------------------------------------------------------
log "mmdebstrap $SUITE (${#PACKAGES[@]} packages and their dependencies)"
RFS=$WORK/rootfs
mkdir -p "$RFS"
mmdebstrap --variant=minbase --include="$(
	IFS=,
	echo "${PACKAGES[*]}"
)" --format=directory --quiet "$SUITE" "$RFS" "${SOURCES[@]}" >&2

# Configuration files of the image (cloud-init, fstab, network, timers), then what makes it a
# generalized image: no machine id, no SSH host keys (cloud-init makes them on first boot).
cp -a "$HERE/files/." "$RFS/"
sed -i "s/@ROOT_GUID@/$ROOT_GUID/" "$RFS/etc/fstab"
: >"$RFS/etc/machine-id"
rm -f "$RFS"/etc/ssh/ssh_host_*
rm -rf "$RFS"/var/lib/cloud/* "$RFS"/var/log/*.log
echo debian >"$RFS/etc/hostname"
# Timers and jobs a short-lived test VM has no use for, that would compete for the CPU.
systemctl --root="$RFS" disable --quiet apt-daily.timer apt-daily-upgrade.timer fstrim.timer \
	e2scrub_all.timer dpkg-db-backup.timer 2>/dev/null || true
systemctl --root="$RFS" mask --quiet e2scrub_reap.service man-db.timer >/dev/null
KREL=$(basename "$(ls -d "$RFS"/lib/modules/*-cloud-amd64 | head -n 1)")
[ -f "$RFS/boot/vmlinuz-$KREL" ] && [ -f "$RFS/boot/initrd.img-$KREL" ] || die "no kernel in the root filesystem"
INSTALLED=$(dpkg-query --admindir="$RFS/var/lib/dpkg" -W -f='${Package} ${Version}\n' \
	"${PACKAGES[@]}" "linux-image-$KREL" systemd cloud-init qemu-guest-agent openssh-server)

# --- EFI system partition (FAT): systemd-boot for UEFI, syslinux for BIOS ------------------
log "EFI system partition (kernel $KREL)"
ESP=$WORK/esp.img
mkfs.vfat -C -F 32 -s 1 -n EFI -i "$ESP_VOLID" "$ESP" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/syslinux
mcopy -i "$ESP" "$RFS/boot/vmlinuz-$KREL" ::/vmlinuz
mcopy -i "$ESP" "$RFS/boot/initrd.img-$KREL" ::/initrd.img
mcopy -i "$ESP" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI
printf 'default debian.conf\ntimeout 0\n' >"$WORK/loader.conf"
printf 'title Debian GNU/Linux (Tern cloud guest)\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' \
	"$CMDLINE" >"$WORK/debian.conf"
mcopy -i "$ESP" "$WORK/loader.conf" ::/loader/loader.conf
mcopy -i "$ESP" "$WORK/debian.conf" ::/loader/entries/debian.conf
# SERIAL: also the only way syslinux works on a VM without a graphics card (Tern's -nodefaults).
printf 'SERIAL 0 115200\nDEFAULT debian\nPROMPT 0\nTIMEOUT 0\nLABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' \
	"$CMDLINE" >"$WORK/syslinux.cfg"
mcopy -i "$ESP" "$WORK/syslinux.cfg" ::/syslinux/syslinux.cfg
syslinux --install --directory /syslinux "$ESP"

# --- disk: GPT, ESP first, root filesystem last (so growpart can grow it) --------------------
log "disk image"
RAW=$WORK/disk.raw
truncate -s "${DISK_MIB}M" "$RAW"
sfdisk --quiet "$RAW" <<EOF
label: gpt
label-id: $DISK_GUID
start=1MiB, size=${ESP_MIB}MiB, type=U, uuid=$ESP_GUID, name=EFI, attrs=LegacyBIOSBootable
start=$((ESP_MIB + 1))MiB, type=L, uuid=$ROOT_GUID, name=root
EOF
read -r ROOT_START ROOT_SECTORS < <(sfdisk --dump "$RAW" | sed -n "s/.*start= *\([0-9]*\), size= *\([0-9]*\).*uuid=$ROOT_GUID.*/\1 \2/Ip")
[ -n "$ROOT_SECTORS" ] || die "cannot read the root partition back from the partition table"
mkfs.ext4 -q -F -L root -U "$ROOT_FS_UUID" -E root_owner=0:0 \
	-d "$RFS" "$WORK/root.img" "$((ROOT_SECTORS / 2))k" >&2
dd if="$ESP" of="$RAW" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$RAW" bs=512 seek="$ROOT_START" conv=notrunc,sparse status=none
# BIOS: the MBR code boots the partition marked LegacyBIOSBootable (syslinux on the ESP).
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none
rm -f "$WORK/root.img" "$ESP"
qemu-img convert -q -c -f raw -O qcow2 "$RAW" "$WORK/disk.qcow2"
rm -f "$RAW"

# --- manifest --------------------------------------------------------------------------------
json_map() { # "name version" lines -> JSON object members
	local first=1 k v
	while read -r k v; do
		((first)) || printf ','
		first=0
		printf '\n    "%s": "%s"' "$k" "$v"
	done
}
{
	printf '{\n  "name": "cloud",\n  "key": "%s",\n  "disk": "disk.qcow2",\n' "$KEY"
	printf '  "format": "qcow2",\n  "virtual_size": %d,\n' $((DISK_MIB * 1024 * 1024))
	printf '  "firmware": ["bios", "uefi"],\n  "cmdline": "%s",\n' "$CMDLINE"
	printf '  "root_partition": 2,\n  "root_partuuid": "%s",\n' "$ROOT_GUID"
	printf '  "os": {\n    "id": "debian",\n    "version_id": "12",\n    "kernel_release": "%s"\n  },\n' "$KREL"
	printf '  "packages": {'
	sort -u <<<"$INSTALLED" | json_map
	printf '\n  },\n  "build_seconds": %d,\n' $((SECONDS - START))
	printf '  "sha256": {\n    "disk.qcow2": "%s"\n  }\n}\n' "$(sha256sum "$WORK/disk.qcow2" | cut -d' ' -f1)"
} >"$WORK/manifest.json.tmp"

# Publish atomically: the directory appears complete, with manifest.json written last.
STAGE=$ROOT/.$KEY.$$
mkdir -p "$STAGE"
mv "$WORK/disk.qcow2" "$STAGE/"
mv "$WORK/manifest.json.tmp" "$STAGE/manifest.json"
if [ -f "$OUT/manifest.json" ]; then
	rm -rf "$STAGE" # built concurrently by someone else
else
	rm -rf "$OUT"
	mv -T "$STAGE" "$OUT"
fi
log "done in $((SECONDS - START)) s: $OUT"
echo "$OUT"
