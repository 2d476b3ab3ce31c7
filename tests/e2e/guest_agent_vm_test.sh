#!/usr/bin/env bash
# The guest agent writer against the real qemu-ga, inside a QEMU virtual
# machine (never on the host: it would freeze the host's filesystems).
#
# The guest boots the host's Debian kernel (/boot/vmlinuz-*) under TCG with
# an initramfs made here: busybox (static), qemu-ga and its shared
# libraries, and the kernel modules it needs (virtio_pci, virtio_console,
# virtio_blk, ext4 and their dependencies, from modules.dep). Its disk is a
# store volume served by vssd over NBD (so that its writes go through the
# engine's copy-on-write), formatted ext4 and mounted by the guest, which
# keeps writing to it. The agent's port org.qemu.guest_agent.0 is a Unix
# socket on the host. One boot, then:
#  - `vssctl volume set` names the socket (text and --json show it);
#  - a shadow through vssd: vssd's log says the guest was frozen (the agent
#    answered guest-fsfreeze-status "frozen") and thawed, the agent says
#    "thawed" after, and the shadow's ext4 is clean: no journal recovery
#    flag, `e2fsck -fn` finds nothing, and a file the guest wrote is there;
#  - a shadow without writers (the control): the guest is not frozen and
#    the shadow's journal needs recovery;
#  - a set whose requester stalls in the freeze window (a simulated writer
#    sleeps in its Freeze): the guest is thawed when the window runs out;
#  - vssd SIGKILLed while the guest is frozen: its thaw guard thaws the
#    guest (the guest's disk reconnects to the restarted vssd);
#  - vssd SIGTERMed while the guest is frozen: vssd exits and the guest is
#    thawed.
#
# usage: guest_agent_vm_test.sh VSSCTL VSSD QGA_PROBE
# Exits 77 (skipped) when qemu-system-x86_64, a kernel, qemu-ga, a static
# busybox or another tool is missing. CI installs: qemu-system-x86,
# qemu-guest-agent, linux-image-amd64, busybox-static, e2fsprogs, cpio, jq.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
PROBE=$(realpath "$3")
for tool in qemu-system-x86_64 qemu-img mkfs.ext4 e2fsck dumpe2fs debugfs cpio jq ldd; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -1)
[[ -n $kernel && -r $kernel ]] || skip "no readable kernel in /boot (vmlinuz-*)"
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[[ -r $moddir/modules.dep ]] || skip "no modules for kernel $kver in $moddir"
qga=$(command -v qemu-ga || echo /usr/sbin/qemu-ga)
[[ -x $qga ]] || skip "qemu-ga is not installed (qemu-guest-agent)"
busybox=$(command -v busybox || true)
[[ -n $busybox ]] && file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
  skip "no static busybox (busybox-static)"

make_work guest-agent-vm
export VSS_STORE=$work/store
unset XDG_DATA_HOME VSS_SOCKET
sock=$work/qga.sock
vssd_pid=
qemu_pid=
writer_pid=
create_pid=

cleanup() {
  local p
  for p in "$writer_pid" "$create_pid" "$qemu_pid" "$vssd_pid"; do stop_pid "$p" KILL; done
}
at_exit cleanup
cd "$work" || exit 1

# --------------------------------------------------------------- initramfs
# The module files `name` needs, dependencies first, one path a line.
modules_of() {
  local line deps d
  line=$(grep -E "(^|/)$1\.ko[^:]*:" "$moddir/modules.dep" | head -1)
  [[ -n $line ]] || return 0  # built in
  read -ra deps <<<"${line#*:}"
  for ((d = ${#deps[@]} - 1; d >= 0; d--)); do
    modules_of "$(basename "${deps[d]}" | sed 's/\.ko.*//')"
  done
  echo "${line%%:*}"
}
make_initramfs() {
  local root=$work/initramfs m lib
  mkdir -p "$root"/{bin,dev,proc,sys,mnt,run,tmp,lib/modules,usr/sbin}
  cp "$busybox" "$root/bin/busybox"
  cp "$qga" "$root/usr/sbin/qemu-ga"
  for lib in $(ldd "$qga" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  : >"$root/modules.order"
  for m in virtio_pci virtio_console virtio_blk crc32c_generic ext4; do
    modules_of "$m"
  done | awk '!seen[$0]++' | while read -r m; do
    cp "$moddir/$m" "$root/lib/modules/"
    case $m in
      *.xz) xz -d "$root/lib/modules/$(basename "$m")" ;;
      *.zst) zstd -q --rm -d "$root/lib/modules/$(basename "$m")" ;;
    esac
    basename "$m" | sed 's/\.\(xz\|zst\)$//' >>"$root/modules.order"
  done
  cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/lib/modules/$m" || echo "vss-guest: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 /dev/vda /mnt || echo "vss-guest: cannot mount /dev/vda"
echo "written by the guest" >/mnt/marker
sync
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
done
# The guest keeps writing, as a running guest does (blocked while frozen).
( n=0; while :; do echo $n >/mnt/tick; sync; n=$((n + 1)); sleep 1; done ) &
echo "vss-guest: agent on ${port:-nothing}"
/usr/sbin/qemu-ga -m virtio-serial -p "$port" -t /run
echo "vss-guest: qemu-ga exited"
poweroff -f
EOF
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet) >initramfs.cpio
}

# -------------------------------------------------------------------- vssd
start_vssd() {
  local before
  before=$(control_socket_lines vssd.err)
  # A short freeze window, so that the stalled set runs out quickly; TCG is
  # slow, so not too short.
  "$VSSD" --store "$VSS_STORE" --no-fsfreeze --freeze-timeout-ms 20000 \
    --event-timeout-ms 120000 2>>vssd.err &
  vssd_pid=$!
  wait_for_vssd vssd.err "$vssd_pid" "$before" || die "vssd did not start" vssd.err
}
lines_of() { grep -c -- "$1" vssd.err 2>/dev/null; }
# The agent's answer to guest-fsfreeze-status (a fresh connection: only
# once no one else is connected does QEMU hand it over).
guest_state() { "$PROBE" "$sock" status 2>>probe.err; }

# ------------------------------------------------------------------- setup
v volume create disk.img --size 64M --name disk >/dev/null || die "volume create failed"
mkfs.ext4 -q -F disk.img || die "mkfs.ext4 failed"
make_initramfs
: >vssd.err
start_vssd

qemu-system-x86_64 -accel tcg -m 256 -nodefaults -display none -no-reboot -monitor none \
  -serial file:console.log \
  -kernel "$kernel" -initrd initramfs.cpio -append "console=ttyS0 panic=-1 quiet" \
  -drive "file.driver=nbd,file.server.type=unix,file.server.path=$VSS_STORE/nbd.sock,file.export=live/disk,file.reconnect-delay=300,format=raw,if=virtio,cache=none" \
  -chardev "socket,id=qga,path=$sock,server=on,wait=off" \
  -device virtio-serial-pci -device virtserialport,chardev=qga,name=org.qemu.guest_agent.0 \
  2>qemu.err &
qemu_pid=$!
"$PROBE" "$sock" wait-ping 300 2>probe.err ||
  die "the guest agent did not answer: $(cat probe.err qemu.err)" console.log
pass
ok "the guest mounted its disk: $(grep vss-guest console.log)" \
  eval '! grep -q "vss-guest: cannot mount\|insmod .* failed" console.log'

# ------------------------------------------------------------ volume set
ok "volume set --guest-agent" eval 'v volume set disk --guest-agent "$sock" >set.out'
ok "volume show names the socket" eval 'v volume show disk | grep -q "Guest agent: $sock\$"'
ok "volume show --json names the socket" eq "$(v volume show disk --json | jq -r .guest_agent)" "$sock"

# ------------------------------------------------- a shadow of the guest
v shadow create disk --context client-accessible-writers --json >create.json 2>create.err
ok "the shadow is made through vssd: $(cat create.err)" eq "$?" 0
shadow=$(jq -r '.[0].shadow_id // .shadows[0].shadow_id // .shadow_id // empty' create.json 2>/dev/null)
[[ -n $shadow ]] || shadow=$(v shadow list --json | jq -r '.[0].shadow_id')
ok "the writer saw the guest frozen: $(grep 'guest agent' vssd.err)" \
  eval 'grep -q "guest agent: status frozen $sock\$" vssd.err'
ok "the writer thawed the guest and checked it" \
  eval 'grep -q "guest agent: status thawed $sock\$" vssd.err'
ok "the agent says thawed after the shadow" eq "$(guest_state)" thawed
qemu-img convert -f raw -O raw "nbd+unix:///shadow/$shadow?socket=$VSS_STORE/nbd.sock" shadow.raw 2>convert.err
ok "the shadow exports: $(cat convert.err)" eq "$?" 0
ok "the shadow's ext4 needs no journal recovery" \
  eval '! dumpe2fs -h shadow.raw 2>/dev/null | grep -q "^Filesystem features:.*needs_recovery"'
e2fsck -fn shadow.raw >e2fsck.out 2>&1
ok "e2fsck -fn finds the shadow clean: $(tail -3 e2fsck.out)" eq "$?" 0
ok "the guest's file is in the shadow" \
  eq "$(debugfs -R 'cat /marker' shadow.raw 2>/dev/null)" "written by the guest"

# Without writers (client-accessible: VSS_VOLSNAP_ATTR_NO_WRITERS) the
# guest is not frozen, and its shadow is only crash-consistent: the
# journal needs recovery. This is what the writer prevents.
frozen_before=$(lines_of "status frozen $sock")
v shadow create disk --context client-accessible --json >plain.json 2>plain.err
ok "a shadow without writers is made: $(cat plain.err)" eq "$?" 0
ok "without writers the guest is not frozen" eq "$(lines_of "status frozen $sock")" "$frozen_before"
plain=$(v shadow list --json | jq -r --arg s "$shadow" '[.[] | select(.shadow_id != $s)][0].shadow_id')
qemu-img convert -f raw -O raw "nbd+unix:///shadow/$plain?socket=$VSS_STORE/nbd.sock" plain.raw 2>>convert.err
ok "the shadow without writers needs journal recovery" \
  eval 'dumpe2fs -h plain.raw 2>/dev/null | grep -q "^Filesystem features:.*needs_recovery"'

# ------------------------------- a stalled requester: the window runs out
frozen_before=$(lines_of "status frozen $sock")
thawed_before=$(lines_of "status thawed $sock")
# At the SYSTEM level too: it sleeps in its Freeze past the window.
"$VSSCTL" writer simulate --name slow --level system --delay-at freeze=60 --log slow.log \
  2>slow.err &
writer_pid=$!
waits_for 60 grep -q "^ready" slow.err 2>/dev/null || fail "the simulated writer did not get ready: $(cat slow.err)"
v shadow create disk --context backup >stall.out 2>stall.err &
create_pid=$!
frozen_now() { [[ $(lines_of "status frozen $sock") -gt $frozen_before ]]; }
thawed_now() { [[ $(lines_of "status thawed $sock") -gt $thawed_before ]]; }
ok "stalled set: the guest was frozen" waits_for 120 frozen_now
ok "stalled set: the guest is thawed when the window runs out" waits_for 120 thawed_now
ok "stalled set: the requester's set fails" waits_for 120 eval '! alive "$create_pid"'
wait "$create_pid"
ok "stalled set: shadow create failed" ne "$?" 0
create_pid=
ok "stalled set: the agent says thawed" eq "$(guest_state)" thawed
stop_pid "$writer_pid"
writer_pid=

# ------------------------------ vssd killed or stopped while the guest is frozen
# frozen_then HOW: a set whose simulated writer sleeps in its Freeze, so
# that the guest stays frozen; then vssd gets SIGKILL (HOW=kill: its thaw
# guard thaws the guest through its duplicate of the agent connection) or
# SIGTERM (HOW=term: vssd thaws as it stops, before its NBD server goes).
# After the kill, vssd is started again.
frozen_then() {
  local how=$1 thaw_line guard_lines
  frozen_before=$(lines_of "status frozen $sock")
  thawed_before=$(lines_of "status thawed $sock")
  guard_lines=$(lines_of "vss-thaw-guard: .* thawed the guest of $sock\$")
  "$VSSCTL" writer simulate --name "slow-$how" --level system --delay-at freeze=60 \
    --log "slow-$how.log" 2>"slow-$how.err" &
  writer_pid=$!
  waits_for 60 grep -q "^ready" "slow-$how.err" 2>/dev/null ||
    fail "$how: the simulated writer did not get ready: $(cat "slow-$how.err")"
  v shadow create disk --context backup >"$how.out" 2>"$how.err" &
  create_pid=$!
  if ! waits_for 120 frozen_now; then
    fail "$how: the guest was never frozen: $(cat "$how.err")"
    return
  fi
  pass
  ok "$how: the guest is still frozen before the signal" eval '! thawed_now'
  kill "-${how^^}" "$vssd_pid"
  ok "$how: vssd exits" waits_for 120 eval '! alive "$vssd_pid"'
  wait "$vssd_pid" 2>/dev/null
  vssd_pid=
  if [[ $how == kill ]]; then
    # The guest's thaw writes to its disk, which the killed vssd served:
    # it completes once a new vssd serves it (QEMU reconnects).
    start_vssd
    guard_thawed() { [[ $(lines_of "vss-thaw-guard: .* thawed the guest of $sock\$") -gt $guard_lines ]]; }
    ok "kill: the thaw guard thawed the guest" waits_for 180 guard_thawed
  else
    # vssd thaws before its NBD server stops serving the guest's disk.
    ok "term: vssd thawed the guest as it stopped" thawed_now
  fi
  ok "$how: the agent says thawed" eq "$(guest_state)" thawed
  ok "$how: the requester exits" waits_for 60 eval '! alive "$create_pid"'
  stop_pid "$create_pid" KILL
  stop_pid "$writer_pid"
  create_pid=
  writer_pid=
}
frozen_then kill
frozen_then term

((failures == 0)) || { sed 's/^/  | /' vssd.err; tail -20 console.log | sed 's/^/  console | /'; }
echo "$checks checks, $failures failed"
((failures == 0))
