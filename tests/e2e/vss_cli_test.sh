#!/usr/bin/env bash
# End-to-end test of the VSS commands of vssctl without vssd (in-process):
# shadow create --context, providers list, writers list, backup, restore,
# and the argument checks of writer simulate. Checks real outcomes (bytes
# with cmp, JSON with jq) and that bad input exits 1 (usage errors 2) with
# one line on stderr and changes nothing. The scenarios that need vssd
# (simulated writers) are in vss_daemon_test.sh.
#
# usage: vss_cli_test.sh PATH/TO/vssctl
# Not -e: a failed check is counted and the run goes on.
# shellcheck disable=SC2016  # eval strings
set -uo pipefail

VSSCTL=$(realpath "$1")
command -v jq >/dev/null || { echo "vss_cli_test: jq is required (tools/dev.sh installs it)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/vss-cli-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export VSS_STORE=$work/store
unset XDG_DATA_HOME VSS_SOCKET

failures=0
checks=0
pass() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*"; }
ok() {  # ok DESCRIPTION CONDITION-COMMAND...
  local what=$1; shift
  if "$@"; then pass; else fail "$what"; fi
}
v() { "$VSSCTL" "$@"; }
eq() { [[ $1 == "$2" ]]; }
contains() { [[ $1 == *"$2"* ]]; }
# The store's state and the volumes' bytes, to check that a failed command
# changed nothing.
state() {
  { v volume list --json; v shadow list --json; v storage list --json; } 2>/dev/null
  sha256sum ./*.img 2>/dev/null
}
# expect_ok DESCRIPTION ARGS...: must succeed with nothing on stderr;
# stdout in $out.
expect_ok() {
  local what=$1; shift
  if out=$(v "$@" 2>err); then pass; else fail "$what: exit $? ($(cat err))"; fi
  ok "$what: nothing on stderr, got: $(head -c 300 err)" test ! -s err
}
# expect_fail CODE DESCRIPTION ARGS...: must exit CODE with one line
# "vssctl: ..." on stderr and leave the store and volumes unchanged; the
# line is left in $errline.
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
  ok "$what: store unchanged" eq "$before" "$after"
}
shadow_count() { v shadow list --json | jq length; }

setup() {
  expect_ok "volume create disk" volume create disk.img --size 16M --name disk
  expect_ok "volume create data" volume create data.img --size 8M --name data
  head -c 300K /dev/urandom >random.bin
  expect_ok "write disk" volume write disk --offset 1M --input random.bin
  expect_ok "write disk pattern" volume write disk --offset 9M --pattern 0xAB --length 128K
  expect_ok "write data" volume write data --offset 0 --pattern 0x5A --length 64K
}

# ---------------------------------------------------------------- listings
test_providers_writers() {
  expect_ok "providers list --json" providers list --json
  ok "providers: one software provider" eq "$(jq -r 'length' <<<"$out")" 1
  ok "providers: type Software" eq "$(jq -r '.[0].type_name' <<<"$out")" Software
  ok "providers: provider id" eq "$(jq -r '.[0].provider_id' <<<"$out")" \
    b5946137-7b9f-4925-af80-51abd60b20d5
  expect_ok "providers list" providers list
  ok "providers: text block" contains "$out" "Provider name: 'vss software shadow copy provider'"

  expect_ok "writers list --json (in-process)" writers list --json
  ok "writers: none in-process" eq "$out" "[]"
  expect_ok "writers list (in-process)" writers list
  ok "writers: says why there are none" contains "$out" "no vssd serves"
}

# ---------------------------------------------------------- shadow create
test_shadow_create_contexts() {
  local before
  before=$(shadow_count)
  expect_fail 1 "create --context backup without vssd" shadow create disk --context backup
  ok "backup refused: says why" contains "$errline" "released as soon as vssctl exits"
  ok "backup refused: names --no-auto-release" contains "$errline" "--no-auto-release"
  expect_fail 1 "create --context file-share-backup without vssd" \
    shadow create disk --context file-share-backup
  expect_fail 1 "create --context backup --no-writers without vssd" \
    shadow create disk data --context backup --no-writers
  ok "refusals created nothing" eq "$(shadow_count)" "$before"

  expect_ok "create --context backup --no-auto-release" \
    shadow create disk data --context backup --no-auto-release --json
  ok "backup+NAR: two shadows" eq "$(jq '.shadows | length' <<<"$out")" 2
  ok "backup+NAR: context value 0x8" eq "$(jq '.context_value' <<<"$out")" 8
  ok "backup+NAR: NO_AUTO_RELEASE" \
    eq "$(jq -r '.attribute_names | index("VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE") != null' <<<"$out")" true
  ok "backup+NAR: not persistent" eq "$(jq '.shadows[0].persistent' <<<"$out")" false
  ok "backup+NAR: note on lifetime" contains "$(jq -r .note <<<"$out")" "do not outlive their owner"
  local set_id
  set_id=$(jq -r .set_id <<<"$out")
  ok "backup+NAR: in the catalog" \
    eq "$(v shadow list --set "$set_id" --json | jq '[.[] | select(.persistent == false)] | length')" 2

  expect_ok "create --context app-rollback --no-writers" \
    shadow create disk --context app-rollback --no-writers --json
  ok "app-rollback+NW: context 0x19" eq "$(jq '.context_value' <<<"$out")" 25
  ok "app-rollback+NW: persistent" eq "$(jq '.shadows[0].persistent' <<<"$out")" true
  local id
  id=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  ok "app-rollback+NW: shadow list shows it" \
    eq "$(v shadow show "$id" --json | jq -r .context_name)" nas-rollback

  expect_ok "create --context client-accessible-writers" \
    shadow create data --context client-accessible-writers
  ok "text output names the set" contains "$out" "Created shadow copy set"

  expect_ok "create without --context (vssadmin default)" shadow create disk --json
  ok "default: client-accessible" eq "$(jq -r .context <<<"$out")" client-accessible

  expect_fail 2 "create --context bogus" shadow create disk --context bogus
  ok "unknown context named" contains "$errline" "bogus"
  expect_fail 2 "--no-auto-release without --context" shadow create disk --no-auto-release
  expect_fail 1 "create --context for an unknown volume" \
    shadow create nosuch --context app-rollback
}

# ------------------------------------------------------- backup / restore
test_backup_restore() {
  v volume read disk --offset 0 --length 16M >disk.then
  v volume read data --offset 0 --length 8M >data.then
  local before
  before=$(shadow_count)

  expect_ok "backup disk data" backup disk data --to bk1 --json
  ok "backup: set id" test -n "$(jq -r .set_id <<<"$out")"
  ok "backup: backup.json" test -s bk1/backup.json
  ok "backup: manifest.json" test -s bk1/manifest.json
  ok "backup: two volumes in the manifest" eq "$(jq '.volumes | length' bk1/manifest.json)" 2
  ok "backup: manifest type full" eq "$(jq -r .backup_type bk1/manifest.json)" full
  ok "backup: BCD set id is the manifest's" \
    eq "$(jq -r .snapshot_set_id bk1/backup.json)" "$(jq -r .set_id bk1/manifest.json)"
  ok "backup: BCD is JSON of version 1" eq "$(jq .version bk1/backup.json)" 1
  ok "backup: disk image = the volume" cmp -s bk1/disk.img disk.then
  ok "backup: data image = the volume" cmp -s bk1/data.img data.then
  ok "backup: disk image size" eq "$(stat -c %s bk1/disk.img)" 16777216
  ok "backup: disk image sparse" test "$(($(stat -c %b bk1/disk.img) * 512))" -lt 1048576
  ok "backup: data bytes recorded" \
    eq "$(jq '.volumes[] | select(.volume == "disk") | .data_bytes' bk1/manifest.json)" $((300 * 1024 + 128 * 1024))
  ok "backup: its shadows are deleted" eq "$(shadow_count)" "$before"

  # Change both volumes, then put them back.
  v volume write disk --offset 0 --pattern 0x11 --length 12M >/dev/null
  v volume write data --offset 4M --input random.bin >/dev/null
  expect_ok "restore" restore bk1 --json
  ok "restore: ok" eq "$(jq .ok <<<"$out")" true
  ok "restore: two volumes" eq "$(jq '.restored | length' <<<"$out")" 2
  ok "restore: disk bytes back" cmp -s <(v volume read disk --offset 0 --length 16M) disk.then
  ok "restore: data bytes back" cmp -s <(v volume read data --offset 0 --length 8M) data.then

  # One volume only.
  v volume write disk --offset 2M --pattern 0x22 --length 1M >/dev/null
  v volume write data --offset 2M --pattern 0x33 --length 1M >/dev/null
  v volume read disk --offset 0 --length 16M >disk.changed
  expect_ok "restore --volume data" restore bk1 --volume data
  ok "restore --volume: data back" cmp -s <(v volume read data --offset 0 --length 8M) data.then
  ok "restore --volume: disk untouched" cmp -s <(v volume read disk --offset 0 --length 16M) disk.changed

  # Restoring through copy-on-write keeps an existing shadow exact.
  expect_ok "shadow before restore" shadow create disk --json
  local sid
  sid=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  expect_ok "restore under a shadow" restore bk1 --volume disk
  ok "restore under a shadow: volume back" cmp -s <(v volume read disk --offset 0 --length 16M) disk.then
  ok "restore under a shadow: shadow still the old bytes" \
    cmp -s <(v shadow read "$sid" --offset 0 --length 16M) disk.changed

  # Other types and contexts.
  expect_ok "backup --type copy --context app-rollback --keep-shadows" \
    backup disk --to bk2 --type copy --context app-rollback --keep-shadows --json
  ok "keep-shadows: shadow kept" test -n "$(v shadow show "$(jq -r '.volumes[0].shadow_id' <<<"$out")" --json 2>/dev/null)"
  ok "copy: manifest type" eq "$(jq -r .backup_type bk2/manifest.json)" copy
  ok "copy: BCD backup type 5" eq "$(jq .backup_type bk2/backup.json)" 5
  expect_ok "backup --type incremental --base" backup disk --to bk3 --type incremental --base bk1
  ok "incremental: says how many stamps" contains "$out" "with the previous backup's stamps"
}

test_backup_restore_bad_input() {
  expect_fail 2 "backup without --to" backup disk
  expect_fail 2 "backup --type bogus" backup disk --to bkx --type bogus
  expect_fail 2 "backup --context bogus" backup disk --to bkx --context bogus
  expect_fail 2 "backup --base with --type full" backup disk --to bkx --base bk1
  expect_fail 1 "backup into a non-empty dir" backup disk --to bk1
  ok "non-empty dir: backup kept" cmp -s bk1/disk.img disk.then
  expect_fail 1 "backup of an unknown volume" backup disk nosuch --to bkx
  ok "unknown volume: no backup dir left" test ! -e bkx
  expect_fail 1 "backup --keep-shadows in an auto-release context" backup disk --to bkx --keep-shadows
  ok "auto-release refused: no backup dir left" test ! -e bkx
  expect_fail 1 "backup --base without a backup" backup disk --to bkx --type incremental --base nowhere
  ok "--base missing: no backup dir left" test ! -e bkx

  mkdir empty
  expect_fail 1 "restore of a dir without backup.json" restore empty
  ok "no backup.json: says so" contains "$errline" "no backup.json"
  expect_fail 1 "restore of a missing dir" restore nowhere
  expect_fail 1 "restore --volume not in the backup" restore bk1 --volume nosuch
  ok "not in backup: lists what is" contains "$errline" "disk, data"
  cp -r bk1 broken && echo '{"version":' >broken/backup.json
  expect_fail 1 "restore of a damaged backup.json" restore broken
  ok "damaged BCD: VSS name" contains "$errline" "VSS_E_CORRUPT_XML_DOCUMENT"

  # A volume of another size: refused before anything is written, even to
  # the volumes that would fit.
  v volume write disk --offset 0 --pattern 0x44 --length 64K >/dev/null
  v volume remove data --force >/dev/null
  rm -f data.img
  v volume create data.img --size 4M --name data >/dev/null
  expect_fail 1 "restore onto a volume of another size" restore bk1
  ok "size mismatch: names the sizes" contains "$errline" "4194304 bytes"
  v volume remove data --force >/dev/null
  rm -f data.img
  expect_fail 1 "restore onto a missing volume" restore bk1 --volume data

  expect_fail 2 "writer simulate: unknown event" writer simulate --name w --fail-at bogus
  expect_fail 2 "writer simulate: --error without --fail-at" \
    writer simulate --name w --error VSS_E_WRITERERROR_RETRYABLE
  expect_fail 2 "writer simulate: not a writer error" \
    writer simulate --name w --fail-at freeze --error VSS_E_BAD_STATE
  expect_fail 2 "writer simulate: bad delay" writer simulate --name w --delay-at freeze=soon
  expect_fail 2 "writer simulate: bad component" writer simulate --name w --component nopath
  expect_fail 2 "writer simulate: bad writer id" writer simulate --name w --writer-id 12
  expect_fail 1 "writer simulate without vssd" writer simulate --name w --fail-at OnFreeze
  ok "no vssd: says it needs vssd" contains "$errline" "needs vssd"
}

setup
test_providers_writers
test_shadow_create_contexts
test_backup_restore
test_backup_restore_bad_input

echo "vss_cli_test: $checks checks, $failures failed"
[[ $failures -eq 0 ]]
