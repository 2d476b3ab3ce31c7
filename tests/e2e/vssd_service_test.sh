#!/usr/bin/env bash
# vssd as the VSS service, driven as users would: a requester process that
# is killed loses its auto-release shadows; a NO_AUTO_RELEASE one keeps
# them while vssd runs; restarting vssd keeps persistent shadows and drops
# non-persistent ones with an event; a second vssd on the same store is
# refused; the control socket is mode 0660.
#
# usage: vssd_service_test.sh VSSCTL VSSD HOLD_REQUESTER
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
HOLD=$(realpath "$3")
command -v jq >/dev/null || { echo "vssd_service_test: jq is required"; exit 1; }
make_work vssd-e2e
daemon=
holder=
cleanup() {
  stop_pid "$holder" 9
  stop_pid "$daemon"
}
at_exit cleanup
cd "$work" || exit 1
S=$work/store
v() { "$VSSCTL" --store "$S" "$@"; }
has_shadow() { v shadow list --json | jq -e --arg id "$1" 'map(.shadow_id) | index($id) != null' >/dev/null; }
lacks_shadow() { ! has_shadow "$1"; }
start_daemon() {
  local before
  before=$(control_socket_lines "$work/vssd.log")
  "$VSSD" --store "$S" 2>>"$work/vssd.log" &
  daemon=$!
  wait_for_vssd "$work/vssd.log" "$daemon" "$before"
}
stop_daemon() {
  kill "$daemon" && wait "$daemon"
  local rc=$?
  daemon=
  return $rc
}

v volume create "$work/v.img" --size 64M --name v >/dev/null || exit 1
ok "vssd starts and makes its control socket" start_daemon
ok "control socket is mode 0660" test "$(stat -c %a "$S/vssd.sock")" = 660
ok "a second vssd on the same store is refused" \
  bash -c "! '$VSSD' --store '$S' 2>'$work/second.err'"
ok "the refusal is one line naming the socket" \
  bash -c "[[ \$(wc -l <'$work/second.err') == 1 ]] && grep -q vssd.sock '$work/second.err'"

# Another user who can reach the socket (group root, mode 0660) is
# refused by its uid (SO_PEERCRED): it may not create a requester.
if ((EUID == 0)) && command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=0 --clear-groups true 2>/dev/null \
   && setpriv --reuid=65534 --regid=0 --clear-groups test -x "$HOLD"; then
  chmod 755 "$work" "$S"
  setpriv --reuid=65534 --regid=0 --clear-groups "$HOLD" "$S" v 0 </dev/null >/dev/null 2>"$work/nobody.err"
  ok "an unprivileged user is refused" grep -q E_ACCESSDENIED "$work/nobody.err"
  ok "the refusal names the user" grep -q "uid 65534" "$work/nobody.err"
  ok "the refused user created nothing" test "$(shadow_count)" = 0
  chmod 700 "$work"
else
  echo "vssd_service_test: SKIP unprivileged peer check (needs root, setpriv and a binary nobody may run)"
fi

# A requester killed while it holds an auto-release (VSS_CTX_BACKUP) set.
coproc HOLDER { "$HOLD" "$S" v 0; }
holder=$HOLDER_PID
read -r -t 20 id <&"${HOLDER[0]}"
ok "the requester created a shadow through vssd" has_shadow "${id:-none}"
kill -9 "$holder"; wait "$holder" 2>/dev/null; holder=
ok "killing the requester releases its shadow" wait_until lacks_shadow "$id"

# A persistent one (vssadmin's default) made in-process by vssctl: vssd
# closed the volume when the killed requester's shadow went.
per=$(v shadow create v --json | jq -r '.shadows[0].shadow_id')
ok "a persistent shadow was created" has_shadow "$per"
# NO_AUTO_RELEASE (0x8) without PERSISTENT: kept after its requester exits
# (vssd keeps the volume open for it).
nar=$("$HOLD" "$S" v 8 </dev/null)
ok "a NO_AUTO_RELEASE shadow outlives its requester" has_shadow "$nar"

ok "vssd stops cleanly on SIGTERM" stop_daemon
ok "vssd starts again" start_daemon
ok "after the restart the non-persistent shadow is gone" lacks_shadow "$nar"
ok "after the restart the persistent shadow is kept" has_shadow "$per"
ok "the removal is an event" bash -c "'$VSSCTL' --store '$S' events --json | jq -e 'map(select(.kind == \"shadow-removed-at-recovery\")) | length >= 1' >/dev/null"
stop_daemon

echo "vssd_service_test: $checks checks, $failures failed"
((failures == 0))
