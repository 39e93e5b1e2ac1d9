#!/usr/bin/env bash
# Boots the cloud guest with plain QEMU (TCG) under BIOS (SeaBIOS) and UEFI (OVMF), each time
# from a fresh copy-on-write overlay with a NoCloud seed, and checks what a user's cloud image
# does on first boot. Prints PASS/FAIL lines and the time to READY (the guest agent answering
# guest-ping); exits non-zero if anything failed.
#
#   guest/cloud/smoke.sh [OUTPUT_DIR]     (default: the directory guest/cloud/build.sh prints)
#
# FIRMWARE=bios or FIRMWARE=uefi boots only that one. Work files go to a fresh directory under
# ${TMPDIR:-/tmp}, removed on success unless KEEP=1.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$("$HERE/build.sh" | tail -n 1)}
OUT=$(cd "$OUT" && pwd)
[ -f "$OUT/manifest.json" ] || {
	echo "smoke.sh: no manifest.json in $OUT" >&2
	exit 2
}
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
READY_LIMIT=${READY_LIMIT:-600}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-cloud-smoke.XXXXXX")
FAILS=0
QEMU_PID=
cleanup() {
	[ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null || true
	if [ "$FAILS" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "smoke.sh: work files kept in $WORK" >&2; fi
}
trap cleanup EXIT
pass() { echo "PASS $*"; }
fail() {
	echo "FAIL $*"
	FAILS=$((FAILS + 1))
}

# Guest agent client: "ping", "exec PROGRAM ARG..." (prints stdout, exits with the status),
# "shutdown". Each call opens the socket, syncs, and closes it.
cat >"$WORK/qga.py" <<'EOF'
import base64, json, random, socket, sys, time

def call(path, cmd, args=None, reply=True):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rwb")
    sync = random.randint(1, 2**31 - 1)
    f.write(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync}}).encode() + b"\n")
    f.flush()
    while True:
        line = f.readline().replace(b"\xff", b"").strip()
        if not line:
            continue
        if json.loads(line).get("return") == sync:
            break
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg).encode() + b"\n")
    f.flush()
    if not reply:
        time.sleep(0.5)
        return None
    r = json.loads(f.readline())
    s.close()
    if "error" in r:
        raise RuntimeError(r["error"].get("desc"))
    return r["return"]

path, mode = sys.argv[1], sys.argv[2]
if mode == "ping":
    call(path, "guest-ping")
elif mode == "shutdown":
    call(path, "guest-shutdown", reply=False)
elif mode == "exec":
    pid = call(path, "guest-exec", {"path": sys.argv[3], "arg": sys.argv[4:], "capture-output": True})["pid"]
    for _ in range(3300):
        st = call(path, "guest-exec-status", {"pid": pid})
        if st["exited"]:
            sys.stdout.write(base64.b64decode(st.get("out-data", "")).decode(errors="replace"))
            sys.exit(st.get("exitcode", 1))
        time.sleep(0.1)
    sys.exit(124)
EOF
qga() { timeout "${QGA_TIMEOUT:-20}" python3 "$WORK/qga.py" "$WORK/qga.sock" "$@" 2>/dev/null; }

boot() { # boot FIRMWARE: boots a fresh clone of the image; sets READY_SECS
	local fw=$1 i=0 t0
	rm -f "$WORK/overlay.qcow2" "$WORK/qga.sock" "$WORK/console.log"
	qemu-img create -q -f qcow2 -F qcow2 -b "$OUT/disk.qcow2" "$WORK/overlay.qcow2"
	mkdir -p "$WORK/seed"
	printf 'instance-id: iid-smoke-%s\nlocal-hostname: smoke-%s\n' "$fw" "$fw" >"$WORK/seed/meta-data"
	printf '#cloud-config\nruncmd:\n  - [ sh, -c, "echo smoke > /var/tmp/runcmd" ]\n' >"$WORK/seed/user-data"
	genisoimage -quiet -V cidata -J -r -o "$WORK/seed.iso" "$WORK/seed/meta-data" "$WORK/seed/user-data"
	local -a fwargs=()
	if [ "$fw" = uefi ]; then
		cp "$OVMF_VARS" "$WORK/vars.fd"
		fwargs=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
			-drive "if=pflash,format=raw,unit=1,file=$WORK/vars.fd")
	fi
	t0=$(date +%s.%N)
	qemu-system-x86_64 -machine q35 -accel tcg -m 1024 -smp 1 -nodefaults -display none \
		"${fwargs[@]}" \
		-drive "file=$WORK/overlay.qcow2,if=virtio,format=qcow2" \
		-drive "file=$WORK/seed.iso,if=virtio,format=raw,readonly=on" \
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
		-device virtio-serial -chardev "socket,id=qga,path=$WORK/qga.sock,server=on,wait=off" \
		-device virtserialport,chardev=qga,name=org.qemu.guest_agent.0 \
		-serial "file:$WORK/console.log" &
	QEMU_PID=$!
	until qga ping; do
		kill -0 "$QEMU_PID" 2>/dev/null || return 1
		i=$((i + 1))
		[ "$i" -lt "$READY_LIMIT" ] || return 1
		sleep 1
	done
	READY_SECS=$(echo "$(date +%s.%N) - $t0" | bc | xargs printf '%.1f')
}

for fw in ${FIRMWARE:-bios uefi}; do
	cp /dev/null "$WORK/console.log" 2>/dev/null || true
	if ! boot "$fw"; then
		fail "$fw: the guest agent answers guest-ping within ${READY_LIMIT}s"
		tail -n 20 "$WORK/console.log" >&2 || true
		kill "$QEMU_PID" 2>/dev/null || true
		QEMU_PID=
		continue
	fi
	pass "$fw: guest agent READY after ${READY_SECS}s"
	# cloud-init finishes after the agent is up (the hostname is set in its network stage): wait
	# for it (bounded) before the other checks.
	QGA_TIMEOUT=320 qga exec /usr/bin/timeout 300 /usr/bin/cloud-init status --wait >/dev/null || true
	status=$(qga exec /usr/bin/cloud-init status || true)
	grep -q 'status: done' <<<"$status" && pass "$fw: cloud-init done" || fail "$fw: cloud-init done (got '$status')"
	host=$(qga exec /bin/hostname || true)
	[ "$host" = "smoke-$fw" ] && pass "$fw: hostname from the seed ($host)" || fail "$fw: hostname from the seed (got '$host')"
	id=$(qga exec /bin/cat /etc/machine-id || true)
	grep -qxE '[0-9a-f]{32}' <<<"$id" && pass "$fw: machine-id generated ($id)" || fail "$fw: machine-id generated (got '$id')"
	# systemd-machine-id-commit writes it to the disk: a clone of this VM would keep it.
	if qga exec /bin/findmnt -n /etc/machine-id >/dev/null; then fail "$fw: machine-id committed to disk"; else pass "$fw: machine-id committed to disk"; fi
	keys=$(qga exec /bin/sh -c 'ls /etc/ssh/ssh_host_*_key.pub' || true)
	grep -q ed25519 <<<"$keys" && pass "$fw: SSH host keys generated on first boot" || fail "$fw: SSH host keys generated (got '$keys')"
	ran=$(qga exec /bin/cat /var/tmp/runcmd || true)
	[ "$ran" = smoke ] && pass "$fw: user-data runcmd ran" || fail "$fw: user-data runcmd ran"
	root=$(qga exec /bin/findmnt -n -o SOURCE / || true)
	[ "$root" = /dev/vda2 ] && pass "$fw: root is the last partition ($root)" || fail "$fw: root on /dev/vda2 (got '$root')"
	t0=$SECONDS
	qga shutdown || true
	i=0
	while kill -0 "$QEMU_PID" 2>/dev/null && [ "$i" -lt 1200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$QEMU_PID" 2>/dev/null; then
		fail "$fw: guest-shutdown powers off within 120s"
		kill "$QEMU_PID"
	else
		pass "$fw: guest-shutdown powered off in $((SECONDS - t0))s"
	fi
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=
done

if [ "$FAILS" -ne 0 ]; then
	echo "smoke: $FAILS check(s) failed"
	exit 1
fi
echo "smoke: all checks passed"
