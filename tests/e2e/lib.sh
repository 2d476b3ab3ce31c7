# Helpers shared by the shell tests (tests/e2e, tests/fuse, tests/nbd,
# tests/packaging). A script sources it after `set -uo pipefail`:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
#
# and gets: counted checks (ok, pass, fail and the predicates eq, ne,
# contains), `skip` and `die`, vssctl checks (v, expect_ok, expect_fail),
# polling (wait_until, waits_for, wait_for_line), vssd start-up (the
# "control socket" line), stopping processes and process groups, and a
# temporary work directory removed at exit after the script's own clean-up.
# shellcheck shell=bash disable=SC2016,SC2034  # eval strings; variables the scripts read

# ------------------------------------------------------------------ checks
# A failed check is counted and printed; the run goes on. The script ends
# with `((failures == 0))` (or its own summary).
failures=0
checks=0
pass() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*"; }
ok() {  # ok DESCRIPTION COMMAND...: a check that COMMAND succeeds
  local what=$1; shift
  if "$@"; then pass; else fail "$what"; fi
}
eq() { [[ $1 == "$2" ]]; }
ne() { [[ $1 != "$2" ]]; }
contains() { [[ $1 == *"$2"* ]]; }
# sha: the SHA-256 of stdin, hex.
sha() { sha256sum | cut -c1-64; }
# skip REASON: the test cannot run here (CTest's SKIP_RETURN_CODE 77).
skip() { echo "SKIP: $*"; exit 77; }
# die MESSAGE [LOG]: prints the message (and the log) and fails the test.
die() {
  echo "FAIL: $1"
  [[ $# -gt 1 && -f $2 ]] && sed 's/^/  | /' "$2"
  exit 1
}

# ------------------------------------------------------------ vssctl checks
# v ARGS...: vssctl (the script sets VSSCTL; it may redefine v to add
# options such as --store).
v() { "$VSSCTL" "$@"; }
# state: what a failed command must leave unchanged: the store's volumes,
# shadows and storage, and the bytes of the images in the current
# directory (stderr dropped: a damaged store fails the same way twice). A
# script may redefine it, and state_what, which names it in messages.
state() {
  { v volume list --json; v shadow list --json; v storage list --json; } 2>/dev/null
  sha256sum ./*.img 2>/dev/null
}
state_what="store unchanged"
# shadow_count: how many shadows the store has.
shadow_count() { v shadow list --json | jq length; }
# expect_ok DESCRIPTION ARGS...: vssctl ARGS must succeed, and say nothing
# on stderr unless expect_ok_stderr=allowed; stdout is left in $out.
expect_ok_stderr=quiet
expect_ok() {
  local what=$1; shift
  if out=$(v "$@" 2>err); then pass; else fail "$what: exit $? ($(cat err))"; fi
  [[ $expect_ok_stderr == allowed ]] && return
  ok "$what: nothing on stderr, got: $(head -c 300 err)" test ! -s err
}
# expect_fail CODE DESCRIPTION ARGS...: vssctl ARGS must exit CODE with one
# line "vssctl: ..." on stderr and leave `state` unchanged. The stderr line
# is left in $errline.
expect_fail() {
  local code=$1 what=$2; shift 2
  local before after rc
  before=$(state)
  v "$@" >/dev/null 2>err
  rc=$?
  errline=$(cat err)
  after=$(state)
  ok "$what: exit $rc, want $code" eq "$rc" "$code"
  ok "$what: one line on stderr, got: $errline" \
    eval '[[ $(wc -l <err) -eq 1 && $errline == vssctl:\ * ]]'
  ok "$what: $state_what" eq "$before" "$after"
}

# ----------------------------------------------------------------- waiting
# Polling waits for an event the test can see (a line, a file, an exit),
# with a time limit only so that a broken run ends.
#
# waits_for SECONDS COMMAND...: true once COMMAND succeeds.
waits_for() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  return 1
}
# wait_until COMMAND...: waits_for 60 seconds.
wait_until() { waits_for 60 "$@"; }
# wait_for_line FILE PATTERN SECONDS: true once FILE has a line matching
# PATTERN (grep).
wait_for_line() { waits_for "$3" grep -q -- "$2" "$1" 2>/dev/null; }
# alive PID: the process runs and is not a zombie.
alive() { [[ -e /proc/$1 ]] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat" 2>/dev/null; }

# ------------------------------------------------------------------- vssd
# vssd says "...: control socket PATH" on stderr once it is ready (after it
# dropped what a previous run left); the socket file exists a little
# earlier, and a killed vssd leaves it behind, so the line is what counts.
#
# control_socket_lines LOG: how many times vssd said so in LOG.
control_socket_lines() { grep -c ': control socket ' "$1" 2>/dev/null; }
# wait_for_vssd LOG PID BEFORE [SECONDS]: true once LOG has more than BEFORE
# such lines; false if process PID exits first or after SECONDS (60).
wait_for_vssd() {
  local log=$1 pid=$2 before=$3 secs=${4:-60} i
  for ((i = 0; i < secs * 20; i++)); do
    [[ $(control_socket_lines "$log") -gt $before ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# stop_pid PID [SIGNAL]: sends SIGNAL (TERM) to PID and reaps it, quietly;
# true if the signal was delivered. For clean-up, where PID may be gone.
stop_pid() {
  [[ -n $1 ]] && kill "-${2:-TERM}" "$1" 2>/dev/null && wait "$1" 2>/dev/null
}
# kill_group PGID: SIGKILL to the whole process group PGID (a process
# started with setsid leads its own group, with its pid as the group id).
kill_group() { kill -KILL -- "-$1"; }

# -------------------------------------------------------- work directory
# make_work NAME: makes $work, a new directory under $TMPDIR (else /tmp)
# named after NAME, and removes it at exit, after the functions registered
# with at_exit have run (unless KEEP_WORK is set, to look at it after a
# failure).
make_work() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
  trap run_exit_hooks EXIT
}
exit_hooks=()
# at_exit COMMAND: runs COMMAND (a function name, words allowed) at exit,
# before $work is removed; hooks run last registered first.
at_exit() { exit_hooks+=("$1"); }
run_exit_hooks() {
  local i
  for ((i = ${#exit_hooks[@]} - 1; i >= 0; i--)); do ${exit_hooks[i]}; done
  [[ -n ${KEEP_WORK:-} ]] || rm -rf "$work"
}

# ----------------------------------------------------------- qemu-img checks
# qemu_work NAME: for a vssctl test judged by qemu-img: needs jq (fails
# without) and qemu-img (skips without), makes $work (make_work NAME), goes
# there and points VSS_STORE at a store inside it.
qemu_work() {
  command -v jq >/dev/null || die "jq is required"
  command -v qemu-img >/dev/null || skip "qemu-img is not installed"
  make_work "$1"
  cd "$work" || exit 1
  export VSS_STORE=$work/store
  unset XDG_DATA_HOME
}
# qemu_clean IMAGE: `qemu-img check` finds no error and no leak in the qcow2
# IMAGE (its report is printed otherwise).
qemu_clean() {
  local report
  report=$(qemu-img check -f qcow2 "$1" 2>&1) || { echo "$report"; return 1; }
  [[ $report == *"No errors were found"* && $report != *leaked* ]] || { echo "$report"; return 1; }
}
# qemu_reads IMAGE: the SHA-256 of what the qcow2 IMAGE (with its backing
# chain) reads as, converted to raw by qemu-img.
qemu_reads() {
  local raw
  raw=$(mktemp "${TMPDIR:-/tmp}/qemu-reads.XXXXXX") || return 1
  qemu-img convert -f qcow2 -O raw "$1" "$raw" && sha <"$raw"
  rm -f "$raw"
}
