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
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
command -v jq >/dev/null || { echo "vss_cli_test: jq is required (tools/dev.sh installs it)"; exit 1; }
make_work vss-cli-e2e
cd "$work" || exit 1
export VSS_STORE=$work/store
unset XDG_DATA_HOME VSS_SOCKET

# flip_byte FILE OFFSET: inverts one byte in place (a damaged backup).
flip_byte() {
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\x$(printf %02x $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

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

# ----------------------------------------- backup files: private, durable
# Modes: files 0600 and a created directory 0700 whatever the umask.
test_backup_private() {
  (umask 022 && v backup disk data --to bkp >/dev/null 2>err)
  ok "backup under umask 022: exit 0 ($(cat err))" eq "$?" 0
  ok "umask 022: backup dir 0700" eq "$(stat -c %a bkp)" 700
  local f
  for f in bkp/disk.img bkp/data.img bkp/backup.json bkp/manifest.json; do
    ok "umask 022: $f 0600" eq "$(stat -c %a "$f")" 600
  done
  ok "umask 022: no temporary files left" eq "$(ls bkp | sort | tr '\n' ' ')" \
    "backup.json data.img disk.img manifest.json "
  mkdir bkp-existing && chmod 755 bkp-existing
  (umask 0 && v backup disk --to bkp-existing >/dev/null 2>err)
  ok "umask 0, existing dir: exit 0 ($(cat err))" eq "$?" 0
  for f in bkp-existing/disk.img bkp-existing/backup.json bkp-existing/manifest.json; do
    ok "umask 0: $f 0600" eq "$(stat -c %a "$f")" 600
  done
  # The manifest records a checksum per image (format version 2).
  ok "manifest version 2" eq "$(jq .version bkp/manifest.json)" 2
  ok "manifest: an xxh3_128 of 32 hex digits per volume" \
    eq "$(jq '[.volumes[].xxh3_128 | test("^[0-9a-f]{32}$")] | all' bkp/manifest.json)" true
  ok "manifest: the two checksums differ" \
    test "$(jq -r '.volumes[0].xxh3_128' bkp/manifest.json)" != \
         "$(jq -r '.volumes[1].xxh3_128' bkp/manifest.json)"
}

# A backup stopped by SIGKILL at the instant its shadows would be released
# (the test-only fault point VSSCTL_TEST_KILL_AT=backup-release) is complete
# and restores exactly, and its shadow was not released. SIGKILL alone
# cannot show that the data reached the medium (the page cache survives
# it), so when strace is available the same run is traced and the order of
# the syncs is checked on the system calls themselves: every image
# fdatasync'ed and the manifest fsync'ed before the manifest's rename, then
# the backup directory and its parent fsync'ed, all before the kill.
test_backup_kill_before_release() {
  local before rc
  v volume read disk --offset 0 --length 16M >disk.kill
  before=$(shadow_count)
  local -a run=(env VSSCTL_TEST_KILL_AT=backup-release "$VSSCTL")
  local traced=0
  if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
    run=(strace -f -y -o "$work/kill.trace"
         -e trace=fsync,fdatasync,rename,renameat,renameat2,kill,tgkill "${run[@]}")
    traced=1
  else
    echo "note: strace unavailable; the sync order is not traced"
  fi
  # (the braces keep bash's "Killed" notice off the test's output)
  { "${run[@]}" backup disk --to bk-kill --context app-rollback >/dev/null 2>err; } 2>/dev/null
  rc=$?
  ok "killed at backup-release: exit 137, got $rc ($(cat err))" eq "$rc" 137
  ok "killed: manifest.json in place" test -s bk-kill/manifest.json
  ok "killed: no temporary files" eq "$(ls bk-kill | sort | tr '\n' ' ')" \
    "backup.json disk.img manifest.json "
  ok "killed: the shadow was not released" eq "$(shadow_count)" $((before + 1))
  v volume write disk --offset 0 --pattern 0x77 --length 2M >/dev/null
  expect_ok "restore of the killed backup" restore bk-kill
  ok "killed backup: volume back exactly" \
    cmp -s <(v volume read disk --offset 0 --length 16M) disk.kill

  if [[ $traced == 1 ]]; then
    local t=$work/kill.trace dir parent
    dir=$(realpath bk-kill)
    parent=$(dirname "$dir")
    line() { grep -n -E "$1" "$t" | head -1 | cut -d: -f1; }
    local img mtmp mren dsync psync kill
    img=$(line "fdatasync\([0-9]+<$dir/disk\.img>\) = 0")
    mtmp=$(line "fsync\([0-9]+<$dir/manifest\.json\.tmp>\) = 0")
    mren=$(line "rename(at2?)?\(.*\"manifest\.json\.tmp\".*\"manifest\.json\".*= 0")
    dsync=$(grep -n -E "fsync\([0-9]+<$dir>\) = 0" "$t" | tail -1 | cut -d: -f1)
    psync=$(grep -n -E "fsync\([0-9]+<$parent>\) = 0" "$t" | tail -1 | cut -d: -f1)
    kill=$(line "(tgkill|kill)\(.*SIGKILL")
    ok "trace: image fdatasync'ed (line ${img:-none})" test -n "$img"
    ok "trace: manifest fsync'ed (line ${mtmp:-none})" test -n "$mtmp"
    ok "trace: manifest renamed (line ${mren:-none})" test -n "$mren"
    ok "trace: directory fsync'ed (line ${dsync:-none})" test -n "$dsync"
    ok "trace: parent fsync'ed (line ${psync:-none})" test -n "$psync"
    ok "trace: the kill point reached (line ${kill:-none})" test -n "$kill"
    ok "trace: image synced before the manifest's rename" test "${img:-9999999}" -lt "${mren:-0}"
    ok "trace: manifest synced before its rename" test "${mtmp:-9999999}" -lt "${mren:-0}"
    ok "trace: directory synced after the rename" test "${dsync:-0}" -gt "${mren:-9999999}"
    ok "trace: parent synced after the directory" test "${psync:-0}" -gt "${dsync:-9999999}"
    ok "trace: all before the release point" test "${psync:-9999999}" -lt "${kill:-0}"
  fi
}

# ---------------------------------------- restore checks the backup first
# Every refusal: exit 1, one line naming the file and the fault, volumes
# unchanged (expect_fail compares the images' bytes before and after).
test_restore_refuses_bad_backups() {
  v backup disk data --to bkr >/dev/null 2>&1
  v volume write disk --offset 0 --pattern 0x66 --length 3M >/dev/null
  v volume write data --offset 0 --pattern 0x67 --length 3M >/dev/null
  v volume read disk --offset 0 --length 16M >disk.now
  v volume read data --offset 0 --length 8M >data.now

  # Path traversal: an image outside the backup directory.
  mkdir -p outside
  head -c 16M /dev/urandom >outside/secret.bin && chmod 600 outside/secret.bin
  cp -r bkr bk-trav
  jq '(.volumes[] | select(.volume == "disk") | .image) = "../outside/secret.bin"' \
    bkr/manifest.json >bk-trav/manifest.json
  expect_fail 1 "restore: image ../outside/secret.bin refused" restore bk-trav
  ok "traversal: names the image" contains "$errline" "../outside/secret.bin"
  ok "traversal: says it is outside" contains "$errline" "not a file name inside the backup"
  ok "traversal: disk bytes unchanged" cmp -s <(v volume read disk --offset 0 --length 16M) disk.now
  jq '(.volumes[] | select(.volume == "disk") | .image) = "/etc/passwd"' \
    bkr/manifest.json >bk-trav/manifest.json
  expect_fail 1 "restore: absolute image path refused" restore bk-trav
  jq '(.volumes[] | select(.volume == "disk") | .image) = ".."' \
    bkr/manifest.json >bk-trav/manifest.json
  expect_fail 1 "restore: image .. refused" restore bk-trav

  # A symlink planted in place of an image is not followed.
  cp -r bkr bk-link
  rm bk-link/disk.img && ln -s ../outside/secret.bin bk-link/disk.img
  expect_fail 1 "restore: symlinked image refused" restore bk-link
  ok "symlink: says so" contains "$errline" "symbolic link"

  # Sizes: the manifest's against the image file's.
  cp -r bkr bk-size
  jq '(.volumes[] | select(.volume == "disk") | .size) = 8388608' \
    bkr/manifest.json >bk-size/manifest.json
  expect_fail 1 "restore: manifest size differs from the image" restore bk-size
  ok "wrong size: names the image" contains "$errline" "bk-size/disk.img"
  ok "wrong size: names both sizes" contains "$errline" "16777216 bytes but the manifest says 8388608"
  cp -r bkr bk-short
  truncate -s 15M bk-short/disk.img
  expect_fail 1 "restore: truncated image refused" restore bk-short
  ok "truncated: names the image" contains "$errline" "bk-short/disk.img"

  # One flipped byte, in data and in a hole; and a damaged second volume
  # stops the restore of the first too (all are checked before any write).
  cp -r bkr bk-flip
  flip_byte bk-flip/disk.img $((1024 * 1024 + 5))
  expect_fail 1 "restore: flipped byte refused" restore bk-flip
  ok "flipped byte: names the image" contains "$errline" "bk-flip/disk.img"
  ok "flipped byte: says damaged" contains "$errline" "damaged"
  ok "flipped byte: disk bytes unchanged" cmp -s <(v volume read disk --offset 0 --length 16M) disk.now
  cp -r bkr bk-hole
  flip_byte bk-hole/disk.img $((14 * 1024 * 1024))
  expect_fail 1 "restore: byte set in a hole refused" restore bk-hole
  cp -r bkr bk-second
  flip_byte bk-second/data.img 100
  expect_fail 1 "restore: second volume damaged, nothing restored" restore bk-second
  ok "second damaged: names data.img" contains "$errline" "bk-second/data.img"
  ok "second damaged: disk unchanged" cmp -s <(v volume read disk --offset 0 --length 16M) disk.now
  ok "second damaged: data unchanged" cmp -s <(v volume read data --offset 0 --length 8M) data.now

  # Manifests without checksums: version 1 (older vssctl) and a version 2
  # entry that lacks one.
  cp -r bkr bk-v1
  jq '.version = 1 | del(.volumes[].xxh3_128)' bkr/manifest.json >bk-v1/manifest.json
  expect_fail 1 "restore: version 1 backup refused" restore bk-v1
  ok "version 1: says why" contains "$errline" "no image checksums"
  jq 'del(.volumes[0].xxh3_128)' bkr/manifest.json >bk-v1/manifest.json
  expect_fail 1 "restore: entry without xxh3_128 refused" restore bk-v1
  jq '.volumes[0].xxh3_128 = "zz"' bkr/manifest.json >bk-v1/manifest.json
  expect_fail 1 "restore: malformed xxh3_128 refused" restore bk-v1
  cp -r bkr bk-mlink
  mv bk-mlink/manifest.json bk-mlink/real.json && ln -s real.json bk-mlink/manifest.json
  expect_fail 1 "restore: symlinked manifest refused" restore bk-mlink

  # The good backup still restores exactly, and so does an incremental one.
  expect_ok "restore: the good backup" restore bkr
  ok "good backup: disk exact" cmp -s <(v volume read disk --offset 0 --length 16M) bkr/disk.img
  ok "good backup: data exact" cmp -s <(v volume read data --offset 0 --length 8M) bkr/data.img
  v volume write disk --offset 5M --pattern 0x12 --length 1M >/dev/null
  v volume read disk --offset 0 --length 16M >disk.inc
  expect_ok "incremental backup with --base" backup disk --to bkr-inc --type incremental --base bkr
  ok "incremental: checksummed" \
    eq "$(jq '.volumes[0].xxh3_128 | test("^[0-9a-f]{32}$")' bkr-inc/manifest.json)" true
  v volume write disk --offset 0 --pattern 0x13 --length 8M >/dev/null
  cp -r bkr-inc bkr-inc-flip
  flip_byte bkr-inc-flip/disk.img $((5 * 1024 * 1024))
  expect_fail 1 "restore: damaged incremental refused" restore bkr-inc-flip
  expect_ok "restore: the incremental backup" restore bkr-inc
  ok "incremental: disk exact" cmp -s <(v volume read disk --offset 0 --length 16M) disk.inc
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
test_backup_private
test_backup_kill_before_release
test_restore_refuses_bad_backups
test_backup_restore_bad_input

echo "vss_cli_test: $checks checks, $failures failed"
[[ $failures -eq 0 ]]
