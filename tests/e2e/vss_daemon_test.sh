#!/usr/bin/env bash
# End-to-end test of vssctl with vssd: simulated writers (vssctl writer
# simulate) in their own processes, writers list, backups with a healthy
# writer and writers that fail, veto, stall past the freeze window or crash
# at freeze (the set is aborted, states and codes as VSS, no shadow left),
# shadow create --context backup held by vssd, and a restore through vssd.
# vssd runs with short limits; it and every writer are always stopped.
#
# usage: vss_daemon_test.sh PATH/TO/vssctl PATH/TO/vssd
# Not -e: a failed check is counted and the run goes on.
# shellcheck disable=SC2016  # eval strings
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
command -v jq >/dev/null || { echo "vss_daemon_test: jq is required (tools/dev.sh installs it)"; exit 1; }
make_work vss-daemon-e2e
cd "$work" || exit 1
export VSS_STORE=$work/store
unset XDG_DATA_HOME VSS_SOCKET

declare -A writer_pids=()
vssd_pid=
cleanup() {
  local p
  for p in "${writer_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  stop_pid "$vssd_pid"
}
at_exit cleanup

# The limits of the coordinator in vssd. Only the freeze window is tested
# here (a writer that stalls past it): it is short enough for a quick test
# and long enough for a healthy writer's freeze and thaw on a busy machine.
# The other limits are long: a writer that answers an event late because
# the machine is busy must not be dropped from the sequence (with a 4 s
# event timeout, an Identify answered late left the writer out of a
# restore). The simulated writers are the subject here: the built-in
# fsfreeze and guest agent writers (tested by vss_fsfreeze_test and
# guest_agent_vm_test) are left out so that the writer counts are theirs.
freeze_window_s=10
start_vssd() {
  local before
  before=$(control_socket_lines vssd.err)
  "$VSSD" --store "$VSS_STORE" --no-fsfreeze --no-guest-agent --event-timeout-ms 600000 \
    --freeze-timeout-ms $((freeze_window_s * 1000)) --hold-timeout-ms 600000 2>>vssd.err &
  vssd_pid=$!
  wait_for_vssd vssd.err "$vssd_pid" "$before" && return 0
  echo "vss_daemon_test: vssd did not start: $(tail -1 vssd.err)"
  exit 1
}
stop_vssd() {
  kill -TERM "$vssd_pid"
  wait "$vssd_pid"
  local rc=$?
  vssd_pid=
  return $rc
}

# start_writer NAME ARGS...: `vssctl writer simulate --name NAME ARGS...`
# in the background, logging to NAME.log; waits for its "ready" line.
start_writer() {
  local name=$1; shift
  "$VSSCTL" writer simulate --name "$name" --log "$name.log" "$@" 2>"$name.err" &
  writer_pids[$name]=$!
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q '^ready' "$name.err" 2>/dev/null && return 0
    kill -0 "${writer_pids[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  fail "writer $name did not get ready: $(cat "$name.err")"
  return 1
}
# stop_writer NAME: SIGTERM; its exit status is returned.
stop_writer() {
  local pid=${writer_pids[$1]}
  unset "writer_pids[$1]"
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
}
# The events a writer logged, one name per line.
events_of() { jq -r .event "$1.log" | paste -sd' '; }
# A field of writer NAME in writer-status JSON array $2.
writer_field() { jq -r --arg n "$1" ".[] | select(.name == \$n) | .$3" <<<"$2"; }

setup() {
  v volume create disk.img --size 16M --name disk >/dev/null
  v volume create data.img --size 8M --name data >/dev/null
  head -c 256K /dev/urandom >random.bin
  v volume write disk --offset 1M --input random.bin >/dev/null
  v volume write data --offset 0 --pattern 0x5A --length 64K >/dev/null
  v volume read disk --offset 0 --length 16M >disk.then
  start_vssd
}

test_writers_list() {
  out=$(v writers list --json)
  ok "no writers yet" eq "$out" "[]"
  ok "text: none subscribed" contains "$(v writers list)" "No writers are subscribed"
  start_writer A --component app:disk/app
  start_writer B --component db:disk/db --level back-end
  out=$(v writers list --json)
  ok "writers list: two" eq "$(jq length <<<"$out")" 2
  ok "writers list: A stable" eq "$(writer_field A "$out" state_name)" VSS_WS_STABLE
  ok "writers list: B no error" eq "$(writer_field B "$out" last_error_name)" S_OK
  ok "writers list: text" contains "$(v writers list)" "Writer name: 'A'"
  stop_writer A; ok "A exits 0 on SIGTERM" eq "$?" 0
  stop_writer B
  ok "writers list: empty after unsubscribe" eq "$(v writers list --json)" "[]"
}

# A healthy writer and one that fails at freeze: the set is aborted.
test_fail_at_freeze() {
  start_writer A --component app:disk/app
  start_writer B --component db:disk/db --fail-at freeze --error VSS_E_WRITERERROR_RETRYABLE
  local before rc
  before=$(shadow_count)
  out=$(v backup disk --to bk-fail --json 2>err); rc=$?
  ok "fail at freeze: exit 1" eq "$rc" 1
  ok "fail at freeze: one error line" eq "$(wc -l <err)" 1
  ok "fail at freeze: error names DoSnapshotSet and the code" \
    eval 'contains "$(cat err)" DoSnapshotSet && contains "$(cat err)" VSS_E_WRITERERROR_RETRYABLE'
  local ws
  ws=$(jq -c .writers <<<"$out")
  ok "fail at freeze: B FAILED_AT_FREEZE" eq "$(writer_field B "$ws" state_name)" VSS_WS_FAILED_AT_FREEZE
  ok "fail at freeze: B's code" eq "$(writer_field B "$ws" last_error_name)" VSS_E_WRITERERROR_RETRYABLE
  ok "fail at freeze: A not failed" eq "$(writer_field A "$ws" last_error_name)" S_OK
  ok "fail at freeze: no shadow left" eq "$(shadow_count)" "$before"
  ok "fail at freeze: no backup dir left" test ! -e bk-fail
  ok "fail at freeze: A got Abort" contains "$(events_of A)" "Abort"
  ok "fail at freeze: A never got Thaw" eval '! contains "$(events_of A)" Thaw'
  ok "fail at freeze: B logged its failure" \
    eq "$(jq -r 'select(.event == "Freeze") | .outcome' B.log)" failed
  out=$(v writers list --json)
  ok "writers list: B's last event" eq "$(writer_field B "$out" last_event)" BackupShutdown
  ok "writers list: B's last error" eq "$(writer_field B "$out" last_error_name)" VSS_E_WRITERERROR_RETRYABLE
  stop_writer B
  stop_writer A
  rm -f A.log B.log
}

test_backup_ok() {
  start_writer A --component app:disk/app
  start_writer Z --component other:data/z
  local before
  before=$(shadow_count)
  out=$(v backup disk --to bk-ok --json 2>err)
  ok "backup with writers: exit 0 ($(cat err))" eq "$?" 0
  ok "backup with writers: A's component" \
    eq "$(jq -r '[.components[].name] | sort | join(",")' bk-ok/manifest.json)" "app,other"
  ok "backup with writers: image = the volume" cmp -s bk-ok/disk.img disk.then
  ok "backup with writers: A stable" \
    eq "$(writer_field A "$(jq -c .writers bk-ok/manifest.json)" state_name)" VSS_WS_STABLE
  ok "backup with writers: A's events in VSS order" eq "$(events_of A)" \
    "Identify PrepareForBackup PrepareForSnapshot Freeze Thaw PostSnapshot BackupComplete BackupShutdown"
  ok "backup with writers: Z (data elsewhere) gets no freeze" \
    eval '! contains "$(events_of Z)" Freeze'
  ok "backup with writers: A's stamp in the BCD" \
    test -n "$(jq -r '.writers[].components[] | select(.name == "app") | .backup_stamp' bk-ok/backup.json)"
  ok "backup with writers: shadows deleted" eq "$(shadow_count)" "$before"
  stop_writer Z
  rm -f Z.log
  # Incremental: the writer sees the previous stamp.
  out=$(v backup disk --to bk-inc --type incremental --base bk-ok 2>err)
  ok "incremental: exit 0 ($(cat err))" eq "$?" 0
  ok "incremental: A saw the previous stamp" \
    test -n "$(jq -r 'select(.event == "PrepareForBackup" and .backup_type == "incremental") | .components[0].previous_backup_stamp' A.log)"
  stop_writer A
  rm -f A.log
}

test_create_backup_context_held() {
  out=$(v shadow create disk --context backup --json 2>err)
  ok "create --context backup through vssd: exit 0 ($(cat err))" eq "$?" 0
  ok "through vssd: NO_AUTO_RELEASE added" \
    eq "$(jq -r '.attribute_names | index("VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE") != null' <<<"$out")" true
  local id
  id=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  ok "through vssd: held after vssctl exits" test -n "$(v shadow show "$id" --json 2>/dev/null)"
  v shadow delete "$id" >/dev/null 2>&1 || true
}

test_veto_delay_crash() {
  local before rc start elapsed
  before=$(shadow_count)
  start_writer V --component v:disk/v --veto-at prepare-snapshot
  out=$(v backup disk --to bk-veto --json 2>/dev/null)
  ok "veto: exit 1" eq "$?" 1
  ok "veto: FAILED_AT_PREPARE_SNAPSHOT" \
    eq "$(writer_field V "$(jq -c .writers <<<"$out")" state_name)" VSS_WS_FAILED_AT_PREPARE_SNAPSHOT
  ok "veto: NONRETRYABLE" \
    eq "$(writer_field V "$(jq -c .writers <<<"$out")" last_error_name)" VSS_E_WRITERERROR_NONRETRYABLE
  stop_writer V

  # D stalls far past the window (its delay ends when it is stopped).
  start_writer D --component d:disk/d --delay-at freeze=600
  start=$(date +%s)
  out=$(v backup disk --to bk-delay --json 2>/dev/null); rc=$?
  elapsed=$(($(date +%s) - start))
  ok "stall past the window: exit 1" eq "$rc" 1
  ok "stall: FAILED_AT_FREEZE" \
    eq "$(writer_field D "$(jq -c .writers <<<"$out")" state_name)" VSS_WS_FAILED_AT_FREEZE
  ok "stall: VSS_E_WRITERERROR_TIMEOUT" \
    eq "$(writer_field D "$(jq -c .writers <<<"$out")" last_error_name)" VSS_E_WRITERERROR_TIMEOUT
  ok "stall: the backup ended at the freeze window, not the writer's stall (${elapsed}s)" \
    eval '[[ $elapsed -ge $((freeze_window_s - 1)) && $elapsed -lt 300 ]]'
  stop_writer D

  start_writer C --component c:disk/c --crash-at freeze
  local cpid=${writer_pids[C]}
  {  # stderr: bash reports the killed job
    out=$(v backup disk --to bk-crash --json 2>/dev/null); rc=$?
    ok "crash at freeze: exit 1" eq "$rc" 1
    ok "crash at freeze: FAILED_AT_FREEZE" \
      eq "$(writer_field C "$(jq -c .writers <<<"$out")" state_name)" VSS_WS_FAILED_AT_FREEZE
    wait "$cpid"; rc=$?
  } 2>/dev/null
  unset "writer_pids[C]"
  ok "crash at freeze: the writer died (status $rc)" test "$rc" -ge 128
  ok "crash at freeze: logged first" eq "$(jq -r 'select(.event == "Freeze") | .outcome' C.log)" crash
  ok "crash at freeze: writer gone from vssd" eq "$(v writers list --json | jq length)" 0
  ok "veto, stall, crash: no shadow left" eq "$(shadow_count)" "$before"
  ok "veto, stall, crash: no backup dirs" eval '! ls -d bk-veto bk-delay bk-crash 2>/dev/null'
}

# Restore through vssd (NBD live/disk), the writer told before and after.
test_restore_through_vssd() {
  stop_vssd
  v volume write disk --offset 0 --pattern 0x77 --length 4M >/dev/null
  start_vssd
  start_writer A --component app:disk/app
  out=$(v restore bk-ok --json 2>err)
  ok "restore through vssd: exit 0 ($(cat err))" eq "$?" 0
  ok "restore through vssd: A got PreRestore and PostRestore" \
    eq "$(events_of A)" "Identify PreRestore PostRestore"
  stop_writer A
  stop_vssd
  ok "restore through vssd: volume back" cmp -s <(v volume read disk --offset 0 --length 16M) disk.then
}

setup
test_writers_list
test_fail_at_freeze
test_backup_ok
test_create_backup_context_held
test_veto_delay_crash
test_restore_through_vssd

echo "vss_daemon_test: $checks checks, $failures failed"
[[ $failures -eq 0 ]] || { echo "vssd's stderr:"; tail -20 vssd.err; }
[[ $failures -eq 0 ]]
