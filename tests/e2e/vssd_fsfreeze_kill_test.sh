#!/usr/bin/env bash
# vssd killed while its fsfreeze writer holds a filesystem frozen: the
# thaw guard (vss/api/thaw_guard.h, `vssd --thaw-guard`) thaws it.
#
# A store volume's raw image is formatted ext4, attached to a loop device
# and mounted (the fsfreeze writer finds it through the loop device's
# backing file). vssd runs with the fsfreeze writer; a simulated writer at
# the SYSTEM level (frozen together with the filesystem) sleeps in its
# Freeze, so a `shadow create --context backup` stays in the freeze window.
# While a write to the filesystem is seen blocked, vssd is SIGKILLed; then
# the blocked write must finish, a new write must work, the guard must
# have said what it thawed and be gone, and the requester must have exited.
# The same again with SIGKILL sent to vssd's whole process group (as a
# service manager or `kill -KILL -PGID` does): the guard lives in a session
# of its own and survives it. Also: the guard holds nothing of vssd but
# /dev/null, stderr and its socket; it exits quietly when vssd stops
# normally or is killed with nothing frozen.
#
# usage: vssd_fsfreeze_kill_test.sh VSSCTL VSSD
# Exits 77 (skipped) when not root, without loop devices or a needed tool.
# Not -e: a failed check is counted and the run goes on; the trap thaws,
# unmounts, detaches and stops everything the test made, even on failure.
# shellcheck disable=SC2016  # eval strings
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
[[ $(id -u) -eq 0 ]] || skip "needs root (loop devices, mount, FIFREEZE)"
[[ -e /dev/loop-control ]] || skip "no loop devices (/dev/loop-control)"
for tool in losetup mkfs.ext4 mount umount fsfreeze jq; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done

make_work vss-fsfreeze-kill
export VSS_STORE=$work/store
unset XDG_DATA_HOME VSS_SOCKET
mnt=$work/mnt
loopdev=
vssd_pid=
writer_pid=
create_pid=
probe_pid=
guard_pids=()

cleanup() {
  local p
  # Thaw first: nothing below may block on the frozen filesystem.
  mountpoint -q "$mnt" 2>/dev/null && fsfreeze -u "$mnt" 2>/dev/null
  for p in "$writer_pid" "$create_pid" "$vssd_pid" "$probe_pid"; do
    stop_pid "$p" KILL
  done
  for p in "${guard_pids[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt"; fi
  [[ -n $loopdev ]] && losetup -d "$loopdev" 2>/dev/null
}
at_exit cleanup
cd "$work" || exit 1

gone() { ! alive "$1"; }
lines_of() { grep -c "$1" "$2" 2>/dev/null; }

start_vssd() {
  # A killed vssd leaves its socket file: wait for the new one's line.
  local before
  before=$(control_socket_lines vssd.err)
  # group: in a process group of its own (setsid execs it: same pid), so
  # that the test can kill that whole group.
  local launcher=()
  [[ ${1:-} == group ]] && launcher=(setsid)
  "${launcher[@]}" "$VSSD" --store "$VSS_STORE" --freeze-timeout-ms 120000 \
    --event-timeout-ms 120000 2>>vssd.err &
  vssd_pid=$!
  if ! wait_for_vssd vssd.err "$vssd_pid" "$before"; then
    echo "vssd did not start: $(tail -3 vssd.err)"
    exit 1
  fi
  # The guard is vssd's only child, started before the control socket.
  guard=$(pgrep -P "$vssd_pid")
  ok "vssd runs one thaw guard (children: ${guard:-none})" eq "$(wc -w <<<"$guard")" 1
  guard_pids+=("$guard")
}
# The targets of process $1's descriptors, "N -> TARGET" per line.
fds_of() {
  local f
  for f in /proc/"$1"/fd/*; do echo "${f##*/} -> $(readlink "$f")"; done
}
# A write to the filesystem (a new file, synced) in the background.
start_probe() {
  bash -c 'echo data >"$1" && sync -f "$1"' probe "$mnt/$1" &
  probe_pid=$!
}

# ------------------------------------------------------------------ setup
v volume create fs.img --size 64M --name fs >/dev/null || { echo "volume create failed"; exit 1; }
mkfs.ext4 -q -F fs.img || { echo "mkfs.ext4 failed"; exit 1; }
loopdev=$(losetup --find --show "$work/fs.img") || skip "no free loop device"
mkdir -p "$mnt"
: >vssd.err
mount "$loopdev" "$mnt" || { echo "mount $loopdev failed"; exit 1; }
echo before >"$mnt/before" && sync -f "$mnt/before"

# -------------------------------------------- the guard keeps nothing alive
start_vssd
ok "the guard is named vss-thaw-guard" eq "$(cat "/proc/$guard/comm")" vss-thaw-guard
fds=$(fds_of "$guard")
ok "the guard holds /dev/null, stderr and its socket only: $fds" \
  eval '[[ $(wc -l <<<"$fds") -eq 4 && $(grep -c "^[01] -> /dev/null$" <<<"$fds") -eq 2 &&
          $(grep -c "^3 -> socket:" <<<"$fds") -eq 1 ]]'
ok "the guard holds nothing of the store" eval '! grep -q "$VSS_STORE" <<<"$fds"'

# ------------------------------------------------ vssd dies while frozen
# The probe ($1) is blocked: in uninterruptible sleep, as a write to a
# frozen filesystem waits for the thaw.
blocked() { [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == D ]]; }
# Starts probes until one blocks on the frozen filesystem (a probe that
# finishes came before the freeze); false if none blocks within 60 s.
wait_for_blocked_probe() {
  local i
  for ((i = 0; i < 1200; i++)); do
    start_probe "during-$i"
    while alive "$probe_pid" && ! blocked "$probe_pid"; do sleep 0.05; done
    alive "$probe_pid" && { probe_name=during-$i; return 0; }
    wait "$probe_pid"
    probe_pid=
  done
  return 1
}
# frozen_then_kill HOW: freezes the filesystem through vssd, then kills
# vssd (HOW=vssd) or vssd's whole process group, thaw guard included unless
# it lives apart (HOW=group), and checks that the guard thaws it.
frozen_then_kill() {
  local how=$1
  [[ -n $vssd_pid ]] || start_vssd "$how"  # the first run uses the one above
  "$VSSCTL" writer simulate --name slow --level system --delay-at freeze=60 \
    --log slow.log 2>slow.err &
  writer_pid=$!
  waits_for 120 grep -q "^ready" slow.err 2>/dev/null || fail "$how: the simulated writer did not get ready: $(cat slow.err)"
  v shadow create fs --context backup >create.out 2>create.err &
  create_pid=$!
  # The guard holds a descriptor of the mountpoint from just before the
  # FIFREEZE; a write blocks once the freeze is in force.
  guard_holds_mount() { fds_of "$guard" | grep -q " -> $mnt\$"; }
  waits_for 60 guard_holds_mount || fail "$how: the guard was never told of a freeze: $(cat create.err)"
  if wait_for_blocked_probe; then
    pass
    ok "$how: the simulated writer is in its Freeze" eval '! grep -q "\"Thaw\"\|\"Abort\"" slow.log'
    if [[ $how == group ]]; then
      ok "vssd leads its own process group" eq "$(ps -o pgid= "$vssd_pid" | tr -d ' ')" "$vssd_pid"
      ok "the guard lives in a session of its own" eq "$(ps -o sid= "$guard" | tr -d ' ')" "$guard"
      kill_group "$vssd_pid"
    else
      kill -KILL "$vssd_pid"
    fi
    wait "$vssd_pid" 2>/dev/null
    vssd_pid=
    # The thaw is the event: the blocked write finishes (bounded, generously).
    ok "$how: after SIGKILL, the blocked write finishes" waits_for 60 gone "$probe_pid"
    if gone "$probe_pid"; then
      wait "$probe_pid"
      ok "$how: the blocked write succeeded" eq "$?" 0
      probe_pid=
      ok "$how: the file written while frozen is there" eq "$(cat "$mnt/$probe_name")" data
      timeout 60 bash -c 'echo after >"$1" && sync -f "$1"' _ "$mnt/after-$how"
      ok "$how: a new write works" eq "$?" 0
    fi
    ok "$how: the guard exits" waits_for 60 gone "$guard"
    ok "$how: the guard says what it thawed: $(cat vssd.err)" \
      eval '[[ $(grep -c "vss-thaw-guard: .* thawed $mnt\$" vssd.err) -eq $thawed_before+1 ]]'
    ok "$how: the requester exits once vssd is gone" waits_for 60 gone "$create_pid"
    ok "$how: no shadow was made" eq "$(v shadow list --json | jq length)" 0
  else
    fail "$how: the filesystem was not frozen during the freeze window (writer log: $(cat slow.log))"
  fi
  kill -TERM "$writer_pid" 2>/dev/null
  ok "$how: the simulated writer exits" waits_for 60 gone "$writer_pid"
  wait "$writer_pid" 2>/dev/null
  writer_pid=
  [[ -n $create_pid ]] && wait "$create_pid" 2>/dev/null
  create_pid=
  fsfreeze -u "$mnt" 2>/dev/null  # nothing to undo if the guard did its work
  rm -f slow.log slow.err
}
thawed_before=0
frozen_then_kill vssd
thawed_before=$(lines_of "vss-thaw-guard: .* thawed $mnt\$" vssd.err)
frozen_then_kill group

# --------------------------- a normal stop: the guard exits and says nothing
before=$(lines_of vss-thaw-guard vssd.err)
start_vssd
kill -TERM "$vssd_pid"
wait "$vssd_pid"
ok "vssd stops with exit 0" eq "$?" 0
vssd_pid=
ok "after a normal stop the guard exits" waits_for 60 gone "$guard"
ok "after a normal stop the guard says nothing" eq "$(lines_of vss-thaw-guard vssd.err)" "$before"

# --------------------- vssd killed with nothing frozen: the guard exits quietly
start_vssd
kill -KILL "$vssd_pid"
wait "$vssd_pid" 2>/dev/null
vssd_pid=
ok "after SIGKILL with nothing frozen the guard exits" waits_for 60 gone "$guard"
ok "after SIGKILL with nothing frozen the guard says nothing" \
  eq "$(lines_of vss-thaw-guard vssd.err)" "$before"
start_probe end
ok "the filesystem takes writes at the end" waits_for 60 gone "$probe_pid"
probe_pid=

for p in "${guard_pids[@]}"; do ok "no guard is left running (pid $p)" gone "$p"; done

echo "vssd_fsfreeze_kill_test: $checks checks, $failures failures"
[[ $failures -eq 0 ]]
