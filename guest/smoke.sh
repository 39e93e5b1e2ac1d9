#!/usr/bin/env bash
# End-to-end check of the tiny guest, booted with the QEMU command line Tern's driver uses
# (TCG), talking to it over QMP and the guest agent. Prints PASS/FAIL lines; exits non-zero
# if anything failed.
#
#   guest/smoke.sh [GUEST_OUTPUT_DIR]     (default: the directory guest/build.sh prints)
#
# Work files go to a fresh directory under ${TMPDIR:-/tmp} (unix socket paths must stay short;
# the filesystem must support O_DIRECT for cache=none). It is removed on success unless
# KEEP=1 is set, and kept for inspection on failure.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$("$HERE/build.sh" | tail -n 1)}
OUT=$(cd "$OUT" && pwd)
[ -f "$OUT/manifest.json" ] || {
	echo "smoke.sh: no manifest.json in $OUT" >&2
	exit 2
}

command -v python3 >/dev/null || apt-get install -y -q python3-minimal >&2
command -v genisoimage >/dev/null || apt-get install -y -q genisoimage >&2

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-smoke.XXXXXX")
FAILS=0
BOOTS=0

cleanup() {
	if [ -f "$WORK/qemu.pid" ]; then
		pid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
		[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	fi
	if [ "$FAILS" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$WORK"
	else
		echo "smoke.sh: work files kept in $WORK" >&2
	fi
}
trap cleanup EXIT

pass() { echo "PASS $*"; }
fail() {
	echo "FAIL $*"
	FAILS=$((FAILS + 1))
}
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >/dev/null; then pass "$what"; else fail "$what"; fi
}

# --- QMP / guest agent client -------------------------------------------------------------
cat >"$WORK/vmctl.py" <<'EOF'
"""Minimal QMP and QEMU guest agent client for smoke.sh.

  vmctl.py qmp SOCK COMMAND [ARGS_JSON]        print the "return" value as JSON
  vmctl.py qga SOCK COMMAND [ARGS_JSON]        same, for the guest agent (after guest-sync)
  vmctl.py qga-noreply SOCK COMMAND [ARGS]     for commands without a reply (guest-shutdown)
  vmctl.py exec SOCK PROGRAM [ARG...]          guest-exec; print stdout, exit with its status
"""
import base64, json, random, socket, sys, time

def connect(path, timeout):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    return s, s.makefile("rwb")

def read_json(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed")
        line = line.replace(b"\xff", b"").strip()
        if line:
            try:
                return json.loads(line)
            except ValueError:
                continue

def send(f, cmd, args=None):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg).encode() + b"\n")
    f.flush()

def result(r):
    if "error" in r:
        raise RuntimeError(r["error"].get("desc", r["error"]))
    return r["return"]

def qmp(path, cmd, args=None):
    s, f = connect(path, 10)
    read_json(f)  # greeting
    send(f, "qmp_capabilities")
    while "return" not in read_json(f):
        pass
    send(f, cmd, args)
    while True:
        r = read_json(f)
        if "return" in r or "error" in r:
            s.close()
            return result(r)

def qga(path, cmd, args=None, reply=True, timeout=15):
    s, f = connect(path, timeout)
    # guest-sync flushes whatever a previous client left in the channel.
    sync_id = random.randint(1, 2**31 - 1)
    f.write(b"\xff")
    send(f, "guest-sync", {"id": sync_id})
    while read_json(f).get("return") != sync_id:
        pass
    send(f, cmd, args)
    if reply:
        r = result(read_json(f))
    else:
        r = None
        time.sleep(0.5)  # let QEMU pass the request on before the socket closes
    s.close()
    return r

def guest_exec(path, argv):
    pid = qga(path, "guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
    for _ in range(300):
        st = qga(path, "guest-exec-status", {"pid": pid})
        if st["exited"]:
            sys.stdout.write(base64.b64decode(st.get("out-data", "")).decode(errors="replace"))
            return st.get("exitcode", 1)
        time.sleep(0.1)
    return 124

def main(argv):
    mode, path = argv[1], argv[2]
    if mode == "exec":
        return guest_exec(path, argv[3:])
    args = json.loads(argv[4]) if len(argv) > 4 else None
    if mode == "qmp":
        print(json.dumps(qmp(path, argv[3], args)))
    elif mode == "qga":
        print(json.dumps(qga(path, argv[3], args)))
    elif mode == "qga-noreply":
        qga(path, argv[3], args, reply=False)
    return 0

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:  # reported as a FAIL by the caller
        print("vmctl: %s" % e, file=sys.stderr)
        sys.exit(1)
EOF
vm() { python3 "$WORK/vmctl.py" "$@"; }
jget() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[int(k)] if isinstance(v,list) else v[k]
print(v if isinstance(v,str) else json.dumps(v))' "$@"; }

CMDLINE=$(jget cmdline <"$OUT/manifest.json")

secs_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

# --- VM helpers -------------------------------------------------------------------------------
make_seed() { # make_seed NAME INSTANCE_ID HOSTNAME -> $WORK/NAME.iso
	local d=$WORK/$1
	mkdir -p "$d"
	printf 'instance-id: %s\nlocal-hostname: %s\n' "$2" "$3" >"$d/meta-data"
	printf '#!/bin/sh\necho "user-data ran for %s" >/root/user-data.out\n' "$2" >"$d/user-data"
	genisoimage -quiet -V cidata -J -r -o "$WORK/$1.iso" "$d/meta-data" "$d/user-data"
}

boot() { # boot SEED_NAME: start the VM, wait for TERN-GUEST-READY; sets READY_SECS
	BOOTS=$((BOOTS + 1))
	cp "$WORK/$1.iso" "$WORK/seed.iso"
	rm -f "$WORK"/{console.log,qemu.pid,qga.sock,qmp.sock}
	local t0 i
	t0=$(date +%s%N)
	if ! (cd "$WORK" && qemu-system-x86_64 -name tiny -machine q35 -accel tcg -cpu max -smp 1 -m 256 \
		-nodefaults -no-user-config -display none -no-shutdown \
		-kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" -append "$CMDLINE" \
		-drive file=overlay.qcow2,if=none,id=disk0,format=qcow2,cache=none,aio=threads \
		-device virtio-blk-pci,drive=disk0 \
		-drive file=seed.iso,if=none,id=seed,format=raw,readonly=on -device virtio-blk-pci,drive=seed \
		-netdev user,id=net0 -device virtio-net-pci,netdev=net0 \
		-chardev socket,id=qga0,path=qga.sock,server=on,wait=off -device virtio-serial-pci \
		-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
		-qmp unix:qmp.sock,server=on,wait=off -serial file:console.log -daemonize -pidfile qemu.pid); then
		fail "boot $BOOTS: qemu-system-x86_64 did not start"
		return 1
	fi
	for ((i = 0; i < 600; i++)); do
		grep -q '^TERN-GUEST-READY ' "$WORK/console.log" 2>/dev/null && break
		sleep 0.1
	done
	READY_SECS=$(secs_since "$t0")
	if grep -q '^TERN-GUEST-READY ' "$WORK/console.log"; then
		pass "boot $BOOTS: TERN-GUEST-READY after ${READY_SECS}s (limit 60s)"
		return 0
	fi
	fail "boot $BOOTS: no TERN-GUEST-READY within 60s; console tail:"
	tail -n 20 "$WORK/console.log" | sed 's/^/    /'
	return 1
}

wait_shutdown() { # wait_shutdown HOW: QMP query-status must report "shutdown" within 30 s
	local t0 status=
	t0=$(date +%s%N)
	while (($(date +%s%N) - t0 < 30000000000)); do
		status=$(vm qmp "$WORK/qmp.sock" query-status 2>/dev/null | jget status 2>/dev/null || true)
		[ "$status" = shutdown ] && break
		sleep 0.2
	done
	if [ "$status" = shutdown ]; then
		pass "boot $BOOTS: $1 powered the guest off in $(secs_since "$t0")s"
	else
		fail "boot $BOOTS: $1 did not power the guest off within 30s (status: ${status:-unknown})"
	fi
	stop_vm
}

stop_vm() { # QMP quit, then wait for the process to go away
	local pid i
	pid=$(cat "$WORK/qemu.pid" 2>/dev/null || true)
	vm qmp "$WORK/qmp.sock" quit >/dev/null 2>&1 || true
	for ((i = 0; i < 100; i++)); do
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	rm -f "$WORK/qemu.pid"
	cp "$WORK/console.log" "$WORK/console.$BOOTS.log" 2>/dev/null || true
}

fs_clean() { # the overlay's ext4 was unmounted cleanly (state clean, no journal to replay)
	local raw=$WORK/check.raw hdr
	qemu-img convert -f qcow2 -O raw "$WORK/overlay.qcow2" "$raw"
	hdr=$(dumpe2fs -h "$raw" 2>/dev/null)
	rm -f "$raw"
	grep -q '^Filesystem state: *clean$' <<<"$hdr" && ! grep -q needs_recovery <<<"$hdr"
}

guest_file() { vm exec "$WORK/qga.sock" /bin/cat "$1"; }

# --- the checks --------------------------------------------------------------------------------
echo "guest: $OUT"
qemu-img create -q -f qcow2 -b "$OUT/disk.qcow2" -F qcow2 "$WORK/overlay.qcow2"
make_seed seed-a iid-smoke-a smoke-alpha
make_seed seed-b iid-smoke-b smoke-beta
QGA=$WORK/qga.sock

# Boot 1: first boot of a fresh clone.
boot seed-a || exit 1
FIRST_READY=$READY_SECS
# The serial console ends lines with CR LF.
check "READY line names hostname and instance" \
	eval 'tr -d "\r" <"$WORK/console.log" | grep -qx "TERN-GUEST-READY hostname=smoke-alpha instance=iid-smoke-a boot=1"'
check "guest-sync + guest-ping" vm qga "$QGA" guest-ping
osid=$(vm qga "$QGA" guest-get-osinfo | jget id || true)
check "guest-get-osinfo id is tern-tiny (got '$osid')" test "$osid" = tern-tiny
host=$(vm qga "$QGA" guest-get-host-name | jget host-name || true)
check "guest-get-host-name is the seed's local-hostname (got '$host')" test "$host" = smoke-alpha
ifaces=$(vm qga "$QGA" guest-network-get-interfaces || true)
check "guest-network-get-interfaces shows 10.0.2.15" grep -q '"ip-address": "10.0.2.15"' <<<"$ifaces"
gtime=$(vm qga "$QGA" guest-get-time || true)
[[ $gtime =~ ^[0-9]+$ ]] || gtime=0
skew=$((${gtime:-0} / 1000000000 - $(date +%s)))
check "guest-get-time is within 60s of the host clock (skew ${skew}s)" test "${skew#-}" -le 60
fsst=$(vm qga "$QGA" guest-fsfreeze-status | jget || true)
check "guest-fsfreeze-status is thawed (got '$fsst')" test "$fsst" = thawed
mid_a=$(guest_file /etc/machine-id || true)
check "guest-exec reads a 32-hex /etc/machine-id ($mid_a)" grep -qE '^[0-9a-f]{32}$' <<<"$mid_a"
ud=$(guest_file /root/user-data.out || true)
check "user-data script ran once for the instance" test "$ud" = "user-data ran for iid-smoke-a"
boots=$(guest_file /var/log/boots || true)
check "/var/log/boots has one line" test "$(grep -c '^boot=' <<<"$boots")" = 1
vm qmp "$WORK/qmp.sock" system_powerdown >/dev/null || fail "QMP system_powerdown"
wait_shutdown "QMP system_powerdown (ACPI power button)"
check "root fs clean after ACPI power off" fs_clean

# Boot 2: the same disk with a new identity (another instance-id and hostname).
boot seed-b || exit 1
host=$(vm qga "$QGA" guest-get-host-name | jget host-name || true)
check "new seed: guest-get-host-name is smoke-beta (got '$host')" test "$host" = smoke-beta
mid_b=$(guest_file /etc/machine-id || true)
check "new instance-id: machine-id changed ($mid_a -> $mid_b)" \
	eval '[ -n "$mid_b" ] && [ "$mid_b" != "$mid_a" ]'
boots=$(guest_file /var/log/boots || true)
check "/var/log/boots grew to 2 lines, last boot=2 instance=iid-smoke-b" \
	eval '[ "$(grep -c "^boot=" <<<"$boots")" = 2 ] && tail -n 1 <<<"$boots" | grep -q "^boot=2 instance=iid-smoke-b "'
vm qga-noreply "$QGA" guest-shutdown '{"mode": "powerdown"}' || fail "QGA guest-shutdown"
wait_shutdown "QGA guest-shutdown"
check "root fs clean after guest-shutdown" fs_clean

# Boot 3: same seed again: the identity must stay as it is.
boot seed-b || exit 1
mid_c=$(guest_file /etc/machine-id || true)
check "same instance-id: machine-id kept ($mid_c)" test "$mid_c" = "$mid_b"
boots=$(guest_file /var/log/boots || true)
check "/var/log/boots grew to 3 lines" test "$(grep -c '^boot=' <<<"$boots")" = 3
vm qmp "$WORK/qmp.sock" system_powerdown >/dev/null || fail "QMP system_powerdown"
wait_shutdown "QMP system_powerdown"

echo "boot to READY under TCG: first boot ${FIRST_READY}s, last boot ${READY_SECS}s"
if [ "$FAILS" -eq 0 ]; then
	echo "smoke: all checks passed"
else
	echo "smoke: $FAILS check(s) failed"
	exit 1
fi
