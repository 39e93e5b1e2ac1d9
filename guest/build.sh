#!/usr/bin/env bash
# Builds the "tiny" Tern test guest (kernel, initramfs, qcow2 root disk, manifest.json) from
# Debian packages only, deterministically, into a cache directory named by its inputs.
#
#   guest/build.sh [OUTDIR_ROOT]
#
# Default root: ${TERN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tern}/guest. The last line of
# stdout is the output directory; progress goes to stderr. See guest/README.md.
set -euo pipefail
export LC_ALL=C

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${1:-${TERN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tern}/guest}

# Guest format version, shown as VERSION_ID in /etc/os-release; bump when the layout changes.
GUEST_VERSION=1
# quiet: every console byte is slow under TCG. The other two skip crypto self-tests that cost
# ~0.7 s of emulated boot (cryptomgr.notests does not cover the SP800-108 KDF test).
CMDLINE="console=ttyS0 root=/dev/vda rw rootfstype=ext4 quiet cryptomgr.notests initcall_blacklist=crypto_kdf108_init"
DISK_SIZE=512M
# Fixed inputs that make the images reproducible.
EPOCH=1704067200 # 2024-01-01T00:00:00Z, every timestamp in the images
FS_UUID=5e6c7a1e-7e44-4c1d-9b2a-7465726e0001
FS_HASH_SEED=5e6c7a1e-7e44-4c1d-9b2a-7465726e0002
# Kernel modules for the initramfs; their dependencies are added from the modules themselves.
# crc32c_generic is ext4's soft dependency (metadata_csum); isofs and vfat (with the default
# codepage and charset) read NoCloud seeds; evdev lets acpid see the power button.
MODULES=(virtio_pci virtio_blk virtio_net virtio_console crc32c_generic ext4 isofs vfat nls_cp437
	nls_ascii button evdev)
# Host tools; qemu-guest-agent and busybox-static also provide guest binaries.
# The live ISO's initramfs adds the CD-ROM drivers: IDE (pc), AHCI (q35) and virtio-scsi.
ISO_MODULES=(ata_piix ahci virtio_scsi sr_mod)
ISO_LABEL=TERN_ISO
HOST_PACKAGES=(busybox-static qemu-guest-agent e2fsprogs qemu-utils genisoimage cpio xz-utils zstd
	isolinux syslinux-common xorriso)
QGA=/usr/sbin/qemu-ga

log() { echo "build.sh: $*" >&2; }
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

# --- exact package versions (part of the cache key) ---------------------------------------
# Prints "kernel PKG VERSION", "lib PATH", "package NAME VERSION" and "tool NAME VERSION" lines.
resolve() {
	local meta meta_version kpkg= kver= lib r c line found
	local -a libs=() names=() pkgs=(busybox-static qemu-guest-agent)
	local -A own=()
	# The kernel is whatever linux-image-amd64 points at, e.g. linux-image-6.1.0-56-amd64.
	meta=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null) || true
	if [ -z "$meta" ]; then
		apt-get update -q >&2
		meta=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null) ||
			die "linux-image-amd64 is not known to apt"
	fi
	meta_version=$(sed -n 's/^Version: //p' <<<"$meta")
	read -r kpkg kver < <(sed -n 's/^Depends: .*\(linux-image-[0-9][^ ]*-amd64\) (= \([^)]*\)).*/\1 \2/p' <<<"$meta") || true
	[ -n "$kpkg" ] && [ -n "$kver" ] || die "cannot resolve the kernel package of linux-image-amd64"
	echo "kernel $kpkg $kver"
	echo "package linux-image-amd64 $meta_version"
	echo "package $kpkg $kver"

	# qemu-ga's shared libraries as ldd names them, and the packages that ship them. With a
	# merged /usr, dpkg knows a file under only one of its names, so ask for all of them at once.
	mapfile -t libs < <(ldd "$QGA" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u)
	((${#libs[@]})) || die "ldd found no libraries for $QGA"
	for lib in "${libs[@]}"; do
		echo "lib $lib"
		r=$(readlink -f "$lib")
		names+=("$lib" "$r" "/usr$lib" "/usr$r" "${lib#/usr}" "${r#/usr}")
	done
	while IFS= read -r line; do
		case "$line" in diversion* | *", "*) continue ;; esac
		own[${line#*: }]=${line%%:*}
	done < <(dpkg-query -S "${names[@]}" 2>/dev/null || true)
	for lib in "${libs[@]}"; do
		r=$(readlink -f "$lib")
		found=
		for c in "$lib" "$r" "/usr$lib" "/usr$r" "${lib#/usr}" "${r#/usr}"; do
			[ -n "${own[$c]:-}" ] && found=${own[$c]} && break
		done
		[ -n "$found" ] || die "no package owns $lib"
		pkgs+=("$found")
	done
	dpkg-query -W -f='package ${Package} ${Version}\n' $(printf '%s\n' "${pkgs[@]}" | sort -u)
	dpkg-query -W -f='tool ${Package} ${Version}\n' e2fsprogs qemu-utils cpio gzip isolinux syslinux-common \
		xorriso
}
# apt-cache alone can take a second, so the answer is memoized until the apt lists or the
# installed packages change.
mkdir -p "$ROOT"
FP=$(stat -c '%n %s %Y' /var/lib/dpkg/status /var/lib/apt/lists/*Packages* /etc/apt/sources.list* \
	/etc/apt/preferences* 2>/dev/null | sha256sum | cut -d' ' -f1) || true
MEMO=$ROOT/.resolved
if [ -f "$MEMO" ] && [ "$(head -n 1 "$MEMO")" = "fp $FP" ]; then
	RESOLVED=$(tail -n +2 "$MEMO")
else
	RESOLVED=$(resolve)
	{ echo "fp $FP" && echo "$RESOLVED"; } >"$MEMO.$$" && mv "$MEMO.$$" "$MEMO"
fi
read -r _ KPKG KVER < <(grep '^kernel ' <<<"$RESOLVED")
KREL=${KPKG#linux-image-}
mapfile -t LIBS < <(sed -n 's/^lib //p' <<<"$RESOLVED")

# --- cache key ---------------------------------------------------------------------------------
# Inputs: this script, the initramfs and rootfs trees (path, mode bits, content), the versions.
key_input() {
	local f
	(
		cd "$GUEST_DIR"
		find build.sh initramfs rootfs \( -type f -o -type l \) -print | sort |
			while read -r f; do
				if [ -L "$f" ]; then
					echo "link $f $(readlink "$f")"
				else
					echo "file $f $([ -x "$f" ] && echo x || echo -) $(sha256sum <"$f" | cut -d' ' -f1)"
				fi
			done
	)
	sort <<<"$RESOLVED"
}
KEY=$(key_input | sha256sum | cut -d' ' -f1)
OUT=$ROOT/$KEY

if [ -f "$OUT/manifest.json" ]; then
	log "cache hit"
	echo "$OUT"
	exit 0
fi

log "building tiny guest $KEY (kernel $KPKG $KVER)"
mkdir -p "$ROOT/debs"
WORK=$(mktemp -d "$ROOT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- kernel --------------------------------------------------------------------------------------
deb=$ROOT/debs/${KPKG}_${KVER//:/%3a}_amd64.deb
if [ ! -f "$deb" ]; then
	log "downloading $KPKG $KVER"
	# apt drops privileges for downloads; the cache dir may not be readable by _apt.
	(cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$KPKG=$KVER" >&2) ||
		{ apt-get update -q >&2 && (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$KPKG=$KVER" >&2); }
	mv "$WORK/$(basename "$deb")" "$deb.tmp" && mv "$deb.tmp" "$deb"
fi
log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$WORK/kernel"
KMOD=$WORK/kernel/lib/modules/$KREL
[ -f "$WORK/kernel/boot/vmlinuz-$KREL" ] && [ -d "$KMOD" ] || die "unexpected layout in $deb"
# Debian's bzImage is xz-compressed, and its decompressor needs ~8 s under TCG. The ELF kernel
# inside boots directly through its PVH entry point (QEMU -kernel loads it the same way), so
# ship that when the kernel has CONFIG_PVH; otherwise ship the bzImage unchanged.
extract_elf() { # BZIMAGE OUT: the ELF kernel from the first payload that decompresses to one
	local bz=$1 out=$2 off magic tool
	for magic in $'\xfd7zXZ' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08'; do
		case "$magic" in $'\xfd7zXZ') tool="xz -dc --single-stream" ;; $'\x1f\x8b\x08') tool="gzip -dc" ;; *) tool="zstd -dc -q" ;; esac
		for off in $(grep -abo "$magic" "$bz" | cut -d: -f1 | head -n 5); do
			tail -c +$((off + 1)) "$bz" | $tool 2>/dev/null >"$out" || true
			[ "$(head -c 4 "$out")" = $'\x7fELF' ] && return 0
		done
	done
	return 1
}
KERNEL_FORMAT=bzImage
if grep -q '^CONFIG_PVH=y' "$WORK/kernel/boot/config-$KREL" &&
	extract_elf "$WORK/kernel/boot/vmlinuz-$KREL" "$WORK/vmlinuz"; then
	KERNEL_FORMAT=elf-pvh
else
	cp "$WORK/kernel/boot/vmlinuz-$KREL" "$WORK/vmlinuz"
fi
log "kernel: $KREL ($KERNEL_FORMAT)"

# --- initramfs -------------------------------------------------------------------------------
log "assembling initramfs"
IRD=$WORK/initramfs
mkdir -p "$IRD"/{bin,dev,proc,sys,newroot,lib/modules/$KREL}
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not the static busybox"
cp /bin/busybox "$IRD/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$IRD/bin/$a"; done
install -m 0755 "$GUEST_DIR/initramfs/init" "$IRD/init"

# Module name -> path (names treat - and _ alike); modules may ship compressed.
declare -A MODPATH=()
while read -r f; do
	n=${f##*/}
	n=${n%%.ko*}
	MODPATH[${n//-/_}]=$f
done < <(cd "$KMOD" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' | sort)

# add_module NAME: copy the module and, first, its dependencies into the initramfs, in load
# order. Modules are stored uncompressed: busybox insmod reads plain .ko files only.
declare -A LOADED=()
ORDER=()
add_module() {
	local name=${1//-/_} src rel dst deps d
	[ -n "${LOADED[$name]:-}" ] && return 0
	LOADED[$name]=1
	src=${MODPATH[$name]:-}
	[ -n "$src" ] || die "kernel module $name not found in $KPKG"
	rel=${src%.xz}
	rel=${rel%.zst}
	rel=${rel%.gz}
	dst=$IRD/lib/modules/$KREL/$rel
	mkdir -p "$(dirname "$dst")"
	case "$src" in
	*.xz) xz -dc "$KMOD/$src" >"$dst" ;;
	*.zst) zstd -q -dc "$KMOD/$src" >"$dst" ;;
	*.gz) gzip -dc "$KMOD/$src" >"$dst" ;;
	*) cp "$KMOD/$src" "$dst" ;;
	esac
	# "depends=a,b" in the .modinfo section is what depmod turns into modules.dep.
	deps=$(tr '\0' '\n' <"$dst" | sed -n 's/^depends=//p' | head -n 1)
	for d in ${deps//,/ }; do add_module "$d"; done
	ORDER+=("$rel")
	echo "$rel:$(for d in ${deps//,/ }; do printf ' %s' "$(mod_rel "$d")"; done)" >>"$WORK/modules.dep"
}
mod_rel() {
	local r=${MODPATH[${1//-/_}]}
	r=${r%.xz}
	r=${r%.zst}
	echo "${r%.gz}"
}
: >"$WORK/modules.dep"
for m in "${MODULES[@]}"; do add_module "$m"; done
printf '%s\n' "${ORDER[@]}" >"$IRD/lib/modules/$KREL/load.order"
cp "$WORK/modules.dep" "$IRD/lib/modules/$KREL/modules.dep"
log "modules: ${ORDER[*]##*/}"

# --- root filesystem ---------------------------------------------------------------------------
log "assembling root filesystem"
RFS=$WORK/rootfs
mkdir -p "$RFS"
cp -a "$GUEST_DIR/rootfs/." "$RFS/"
mkdir -p "$RFS"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,root,mnt,etc,var/log,var/lib/cloud}
ln -s ../run "$RFS/var/run"
cp /bin/busybox "$RFS/bin/busybox"
while read -r a; do
	# Applet links relative to their directory, e.g. usr/bin/awk -> ../../bin/busybox.
	case "$a" in */*) ;; *) continue ;; esac
	[ -e "$RFS/$a" ] || [ -L "$RFS/$a" ] && continue
	case "$a" in */*/*) up=../.. ;; *) up=.. ;; esac
	ln -s "$up/bin/busybox" "$RFS/$a"
done < <(/bin/busybox --list-full)
install -m 0755 "$QGA" "$RFS/usr/sbin/qemu-ga"
for lib in "${LIBS[@]}"; do
	mkdir -p "$RFS$(dirname "$lib")"
	cp -L "$lib" "$RFS$lib"
done
: >"$RFS/etc/machine-id" # empty: generated on first boot (generalized image)
cat >"$RFS/etc/os-release" <<EOF
NAME="Tern tiny guest"
ID=tern-tiny
VERSION_ID="$GUEST_VERSION"
VERSION="$GUEST_VERSION (build ${KEY:0:12})"
BUILD_ID="${KEY:0:12}"
PRETTY_NAME="Tern tiny guest $GUEST_VERSION (Linux $KREL)"
EOF

# Normalized ownership, modes and times: only the content decides the image bytes.
chown -R -h 0:0 "$RFS" "$IRD"
find "$RFS" "$IRD" -type d -exec chmod 0755 {} +
find "$RFS" "$IRD" -type f -perm /111 -exec chmod 0755 {} +
find "$RFS" "$IRD" -type f ! -perm /111 -exec chmod 0644 {} +
chmod 1777 "$RFS/tmp"
chmod 0700 "$RFS/root"
chmod 0600 "$RFS/etc/shadow"
find "$RFS" "$IRD" -exec touch -h -d "@$EPOCH" {} +
touch -d "@$EPOCH" "$WORK/vmlinuz"

# --- images --------------------------------------------------------------------------------------
log "writing initrd.img"
(cd "$IRD" && find . -print0 | sort -z |
	cpio -o -H newc --null --reproducible -R 0:0 --quiet) | gzip -n -9 >"$WORK/initrd.img"

log "writing disk.qcow2"
E2FSPROGS_FAKE_TIME=$EPOCH SOURCE_DATE_EPOCH=$EPOCH \
	mke2fs -q -F -t ext4 -L tern-root -U "$FS_UUID" \
	-E "hash_seed=$FS_HASH_SEED,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard" \
	-d "$RFS" "$WORK/disk.raw" "$DISK_SIZE" >&2
# mke2fs -d copies each file's ctime, which touch cannot set; pin it with debugfs.
(cd "$RFS" && find . -mindepth 1 | sort | sed "s|^\.\(.*\)|sif \1 ctime @$EPOCH|") >"$WORK/ctime.cmds"
if E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$WORK/ctime.cmds" "$WORK/disk.raw" 2>&1 >/dev/null | grep -v '^debugfs [0-9]' >&2; then
	die "debugfs could not set the inode times"
fi
qemu-img convert -q -f raw -O qcow2 "$WORK/disk.raw" "$WORK/disk.qcow2"
rm -f "$WORK/disk.raw"

# --- live ISO ----------------------------------------------------------------------------------
# A CD that boots the same system with no disk at all (isolinux, El Torito BIOS boot): the
# bzImage (isolinux cannot boot the ELF kernel), and an initramfs that adds the CD drivers and
# carries the root filesystem under /live (see initramfs/init). /TERN-ISO holds a marker that
# the guest prints on the console and tests can look for.
log "writing live.iso"
ISO_MARKER=tern-tiny-iso-$KEY
LIVE=$WORK/live-initramfs
cp -a "$IRD" "$LIVE"
IRD=$LIVE # add_module copies into $IRD
ORDER=()
for m in "${ISO_MODULES[@]}"; do add_module "$m"; done
printf '%s\n' "${ORDER[@]}" >>"$LIVE/lib/modules/$KREL/load.order"
cp "$WORK/modules.dep" "$LIVE/lib/modules/$KREL/modules.dep"
cp -a "$RFS" "$LIVE/live"
ISO=$WORK/iso
mkdir -p "$ISO/isolinux"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$ISO/isolinux/"
cat >"$ISO/isolinux/isolinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT live
PROMPT 0
TIMEOUT 0
LABEL live
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND ${CMDLINE/root=\/dev\/vda rw rootfstype=ext4/tern.live=LABEL=$ISO_LABEL}
EOF
cp "$WORK/kernel/boot/vmlinuz-$KREL" "$ISO/vmlinuz"
echo "$ISO_MARKER" >"$ISO/TERN-ISO"
chown -R -h 0:0 "$LIVE" "$ISO"
find "$LIVE" "$ISO" -type d -exec chmod 0755 {} +
chmod 0644 "$ISO/TERN-ISO" "$ISO"/isolinux/* "$ISO/vmlinuz"
find "$LIVE" "$ISO" -exec touch -h -d "@$EPOCH" {} +
(cd "$LIVE" && find . -print0 | sort -z |
	cpio -o -H newc --null --reproducible -R 0:0 --quiet) | gzip -n -9 >"$ISO/initrd.img"
touch -d "@$EPOCH" "$ISO/initrd.img" "$ISO" # the new file changed the directory time
# xorriso, unlike genisoimage, takes every date and the volume id from SOURCE_DATE_EPOCH.
SOURCE_DATE_EPOCH=$EPOCH xorriso -as mkisofs -quiet -o "$WORK/live.iso" -V "$ISO_LABEL" -J -r \
	-b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
	"$ISO" >&2

# --- manifest ------------------------------------------------------------------------------------
json_map() { # name=value lines -> JSON object members
	local first=1 k v
	while IFS='=' read -r k v; do
		((first)) || printf ','
		first=0
		printf '\n    "%s": "%s"' "$k" "$v"
	done
}
sha() { sha256sum "$WORK/$1" | cut -d' ' -f1; }
{
	printf '{\n'
	printf '  "name": "tiny",\n'
	printf '  "key": "%s",\n' "$KEY"
	printf '  "kernel": "vmlinuz",\n  "initrd": "initrd.img",\n  "disk": "disk.qcow2",\n'
	printf '  "iso": "live.iso",\n  "iso_label": "%s",\n  "iso_marker": "%s",\n' "$ISO_LABEL" "$ISO_MARKER"
	printf '  "kernel_format": "%s",\n' "$KERNEL_FORMAT"
	printf '  "cmdline": "%s",\n' "$CMDLINE"
	printf '  "packages": {'
	sed -n 's/^package \([^ ]*\) /\1=/p' <<<"$RESOLVED" | sort | json_map
	printf '\n  },\n  "tools": {'
	sed -n 's/^tool \([^ ]*\) /\1=/p' <<<"$RESOLVED" | sort | json_map
	printf '\n  },\n'
	printf '  "os": {\n    "id": "tern-tiny",\n    "name": "Tern tiny guest",\n'
	printf '    "version_id": "%s",\n    "build_id": "%s",\n    "kernel_release": "%s"\n  },\n' \
		"$GUEST_VERSION" "${KEY:0:12}" "$KREL"
	printf '  "sha256": {\n    "vmlinuz": "%s",\n    "initrd.img": "%s",\n    "disk.qcow2": "%s",\n    "live.iso": "%s"\n  }\n}\n' \
		"$(sha vmlinuz)" "$(sha initrd.img)" "$(sha disk.qcow2)" "$(sha live.iso)"
} >"$WORK/manifest.json.tmp"

# Publish atomically: the directory appears complete, with manifest.json written last.
STAGE=$ROOT/.$KEY.$$
mkdir -p "$STAGE"
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/disk.qcow2" "$WORK/live.iso" "$STAGE/"
mv "$WORK/manifest.json.tmp" "$STAGE/manifest.json"
if [ -f "$OUT/manifest.json" ]; then
	rm -rf "$STAGE" # built concurrently by someone else
else
	rm -rf "$OUT"
	mv -T "$STAGE" "$OUT"
fi
log "done: $OUT"
echo "$OUT"
