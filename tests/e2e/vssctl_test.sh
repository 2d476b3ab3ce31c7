#!/usr/bin/env bash
# End-to-end test of vssctl: runs the binary for every command of issue 3 as a
# user would, checks real outcomes (bytes with sha256/cmp, JSON fields with
# jq), and checks that bad input exits 1 (usage errors 2) with one line on
# stderr and changes nothing.
#
# usage: vssctl_test.sh PATH/TO/vssctl
# Not -e: a failed check is counted and the run goes on.
# shellcheck disable=SC2155,SC2016  # ids are checked by the next line; eval strings
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
command -v jq >/dev/null || { echo "vssctl_test: jq is required (tools/dev.sh installs it)"; exit 1; }
make_work vssctl-e2e
cd "$work" || exit 1
export VSS_STORE=$work/store
unset XDG_DATA_HOME

# ---------------------------------------------------------------- volumes
test_volume_create_add() {
  expect_ok "volume create" volume create disk.img --size 64M --name disk --json
  ok "create: name" eq "$(jq -r .name <<<"$out")" disk
  ok "create: size" eq "$(jq -r .size <<<"$out")" 67108864
  ok "create: default chunk 64K" eq "$(jq -r .chunk_size <<<"$out")" 65536
  ok "create: image is sparse 64M" eq "$(stat -c %s disk.img)" 67108864
  ok "create: nothing allocated" eq "$(stat -c %b disk.img)" 0
  disk_id=$(jq -r .id <<<"$out")

  expect_ok "volume create --chunk-size" volume create small.img --size 8M --name small --chunk-size 4K --json
  ok "create: chunk 4K" eq "$(jq -r .chunk_size <<<"$out")" 4096

  head -c 1M /dev/urandom >raw.img
  truncate -s 4M raw.img
  raw_sha=$(sha <raw.img)
  expect_ok "volume add" volume add raw.img --name raw --json
  raw_id=$(jq -r .id <<<"$out")
  ok "add: size from file" eq "$(jq -r .size <<<"$out")" 4194304
  ok "add: data kept" eq "$(v volume read raw --offset 0 --length 4M | sha)" "$raw_sha"
  expect_ok "volume create, text output" volume create text.img --size 1M
  ok "create: name defaults to the file name" grep -q "Created volume 'text.img'" <<<"$out"
}

test_volume_list_show() {
  expect_ok "volume list --json" volume list --json
  ok "list: 4 volumes" eq "$(jq length <<<"$out")" 4
  ok "list: names" eq "$(jq -r '[.[].name] | sort | join(",")' <<<"$out")" "disk,raw,small,text.img"
  expect_ok "volume list" volume list
  ok "list text has a header and rows" eq "$(wc -l <<<"$out")" 5
  expect_ok "volume show by id prefix" volume show "${disk_id:0:8}" --json
  ok "show: name" eq "$(jq -r .name <<<"$out")" disk
  ok "show: diff area under the store" eq "$(jq -r '.diff_area.dir | startswith(env.VSS_STORE)' <<<"$out")" true
  ok "show: no shadows" eq "$(jq '.shadows | length' <<<"$out")" 0
  expect_ok "volume show text" volume show disk
  ok "show text names the image" grep -q "$work/disk.img" <<<"$out"
}

test_volume_write_read() {
  head -c 1500001 /dev/urandom >data.bin
  expect_ok "write --input" volume write disk --offset 0 --input data.bin
  v volume read disk --offset 0 --length 1500001 >back.bin
  ok "read back equals the input" cmp -s data.bin back.bin
  expect_ok "write --pattern unaligned" volume write disk --offset 3000003 --pattern 0xAB --length 100000
  head -c 100000 /dev/zero | tr '\0' '\253' >pat.bin
  expect_ok "read --output" volume read disk --offset 3000003 --length 100000 --output pat-back.bin
  ok "pattern read back" cmp -s pat.bin pat-back.bin
  expect_ok "write --pattern decimal" volume write small --offset 4095 --pattern 171 --length 2 --json
  ok "write --json: length" eq "$(jq .length <<<"$out")" 2
  ok "decimal pattern" eq "$(v volume read small --offset 4095 --length 2 | od -An -tx1 | tr -d ' ')" abab
  # The state the first shadow will capture, built without vss.
  truncate -s 64M expect1.img
  dd if=data.bin of=expect1.img conv=notrunc status=none
  dd if=pat.bin of=expect1.img bs=1 seek=3000003 conv=notrunc status=none
  ok "volume equals the expected image" eq "$(v volume read disk --offset 0 --length 64M | sha)" "$(sha <expect1.img)"
}

# ---------------------------------------------------------------- shadows
test_shadow_create_list_show() {
  expect_ok "shadow create --json" shadow create disk --json
  s1=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  set1=$(jq -r .set_id <<<"$out")
  ok "create: one shadow of disk" eq "$(jq -r '[.shadows[].volume] | join(",")' <<<"$out")" disk
  ok "create: created is ISO 8601" grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' <<<"$(jq -r .created <<<"$out")"

  expect_ok "shadow list --json" shadow list --json
  ok "list: one shadow" eq "$(jq length <<<"$out")" 1
  local fields='["shadow_id","set_id","count_in_set","original_volume","device_object",
    "originating_machine","service_machine","exposed_name","exposed_path","provider_id",
    "attributes","attribute_names","context","state","created","epoch","persistent"]'
  ok "list: every VSS_SNAPSHOT_PROP field" eq "$(jq --argjson f "$fields" '.[0] | [has($f[])] | all' <<<"$out")" true
  ok "list: client-accessible context" eq "$(jq .[0].context <<<"$out")" 29
  ok "list: persistent" eq "$(jq .[0].persistent <<<"$out")" true
  ok "list: attribute names" eq "$(jq '.[0].attribute_names | index("VSS_VOLSNAP_ATTR_PERSISTENT") != null' <<<"$out")" true
  ok "list: device object" ne "$(jq -r .[0].device_object <<<"$out")" ""

  expect_ok "shadow list text" shadow list
  ok "list text: set block" grep -q "Contents of shadow copy set ID: {$set1}" <<<"$out"
  ok "list text: shadow id" grep -q "Shadow Copy ID: {$s1}" <<<"$out"
  ok "list text: original volume" grep -q "Original Volume: disk" <<<"$out"
  expect_ok "shadow show {braced}" shadow show "{$s1}" --json
  ok "show braced" eq "$(jq -r .shadow_id <<<"$out")" "$s1"
  expect_ok "shadow show prefix" shadow show "${s1:0:8}" --json
  ok "show prefix" eq "$(jq -r .shadow_id <<<"$out")" "$s1"
  expect_ok "shadow show text" shadow show "$s1"
  ok "show text" grep -q "Shadow Copy ID: {$s1}" <<<"$out"
}

test_shadow_keeps_old_bytes() {
  expect_ok "overwrite under the shadow" volume write disk --offset 0 --pattern 0x11 --length 1M
  ok "shadow reads the old bytes" \
    eq "$(v shadow read "$s1" --offset 0 --length 64M | sha)" "$(sha <expect1.img)"
  ok "live reads the new bytes" \
    eq "$(v volume read disk --offset 0 --length 1M | sha)" "$(head -c 1M /dev/zero | tr '\0' '\021' | sha)"
  expect_ok "shadow read --output" shadow read "$s1" --offset 1000 --length 5000 --output s1.bin
  ok "shadow read --output bytes" cmp -s s1.bin <(dd if=expect1.img bs=1 skip=1000 count=5000 status=none)
  cp expect1.img expect2.img
  head -c 1M /dev/zero | tr '\0' '\021' | dd of=expect2.img conv=notrunc status=none
}

test_shadow_sets_and_diff() {
  expect_ok "shadow create two volumes" shadow create disk small --json
  set2=$(jq -r .set_id <<<"$out")
  s2=$(jq -r '.shadows[] | select(.volume == "disk") | .shadow_id' <<<"$out")
  ok "set of two" eq "$(jq '.shadows | length' <<<"$out")" 2
  expect_ok "list --set" shadow list --set "$set2" --json
  ok "list --set: 2 shadows, count_in_set 2" eq "$(jq '[length, .[0].count_in_set] | join(",")' -r <<<"$out")" "2,2"
  expect_ok "list --volume" shadow list --volume small --json
  ok "list --volume: 1" eq "$(jq length <<<"$out")" 1
  expect_ok "write after s2" volume write disk --offset 2M --pattern 0x22 --length 64K

  expect_ok "diff s1 s2" shadow diff "$s1" "$s2" --json
  ok "diff s1 s2: [0,1M) only" eq "$(jq -c '.extents' <<<"$out")" '[{"length":1048576,"offset":0}]'
  expect_ok "diff s2 live" shadow diff "$s2" --json
  ok "diff s2 live: the 64K at 2M" eq "$(jq -c '[.to, .extents]' <<<"$out")" '["live",[{"length":65536,"offset":2097152}]]'
  expect_ok "diff s1 live" shadow diff "$s1" --json
  ok "diff s1 live: changed bytes" eq "$(jq .changed_bytes <<<"$out")" $((1048576 + 65536))
  expect_ok "diff text" shadow diff "$s1"
  ok "diff text: extents line" grep -q "2 extents" <<<"$out"
  ok "s2 reads its state" eq "$(v shadow read "$s2" --offset 0 --length 64M | sha)" "$(sha <expect2.img)"
}

test_shadow_verify_export() {
  expect_ok "verify" shadow verify "$s1" --json
  ok "verify: ok" eq "$(jq .ok <<<"$out")" true
  ok "verify: records checked" eq "$(jq '.records_checked > 0' <<<"$out")" true
  expect_ok "verify text" shadow verify "$s2"
  expect_ok "export" shadow export "$s1" export1.img --json
  ok "export equals the shadow's state" eq "$(sha <export1.img)" "$(sha <expect1.img)"
  ok "export is sparse" eq "$(($(stat -c %b export1.img) * 512 < 8 * 1048576))" 1
  expect_fail 1 "export to an existing file" shadow export "$s1" export1.img
}

test_contexts_and_delete() {
  expect_ok "create app-rollback" shadow create small --context app-rollback --json
  local app=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  ok "app-rollback context" eq "$(v shadow show "$app" --json | jq .context)" 9
  expect_ok "create nas-rollback" shadow create small --context nas-rollback --json
  local nas=$(jq -r '.shadows[0].shadow_id' <<<"$out") nas_set=$(jq -r .set_id <<<"$out")
  ok "nas-rollback context" eq "$(v shadow show "$nas" --json | jq .context)" 25
  expect_ok "create third on small" shadow create small --json

  expect_ok "delete by id" shadow delete "$app" --json
  ok "delete by id: deleted" eq "$(jq -r '.deleted[0].shadow_id' <<<"$out")" "$app"
  expect_ok "delete --set" shadow delete --set "$nas_set"
  ok "delete --set: gone" eq "$(v shadow list --volume small --json | jq length)" 2
  local oldest=$(v shadow list --volume small --json | jq -r 'sort_by(.epoch) | .[0].shadow_id')
  expect_ok "delete --volume --oldest" shadow delete --volume small --oldest --json
  ok "deleted the oldest" eq "$(jq -r '.deleted[0].shadow_id' <<<"$out")" "$oldest"
  expect_ok "delete --volume --all" shadow delete --volume small --all
  ok "small has no shadows" eq "$(v shadow list --volume small --json | jq length)" 0
  ok "disk's shadows stay" eq "$(v shadow list --volume disk --json | jq length)" 2
  ok "s1 still exact" eq "$(v shadow read "$s1" --offset 0 --length 64M | sha)" "$(sha <expect1.img)"
}

test_revert() {
  expect_ok "revert to s1" shadow revert "$s1" --json
  ok "revert: removed s1 and s2" eq "$(jq '.removed | length' <<<"$out")" 2
  ok "volume equals s1 again" eq "$(v volume read disk --offset 0 --length 64M | sha)" "$(sha <expect1.img)"
  ok "disk has no shadows" eq "$(v shadow list --volume disk --json | jq length)" 0
}

# ---------------------------------------------------------------- storage
test_storage() {
  expect_ok "storage add" storage add --for raw --on diff2 --max-size 1G --json
  ok "storage add: the volume's own directory under --on" \
    eq "$(jq -r .dir <<<"$out")" "$(realpath "$work")/diff2/$raw_id"
  ok "storage add: max" eq "$(jq .max_bytes <<<"$out")" 1073741824
  expect_ok "storage resize" storage resize --for raw --max-size UNBOUNDED --json
  ok "storage resize: unbounded" eq "$(jq -r .max_bytes <<<"$out")" UNBOUNDED
  expect_ok "storage list" storage list --json
  ok "storage list: one per volume" eq "$(jq length <<<"$out")" 4
  expect_ok "storage list text" storage list
  ok "storage list text" grep -q "Shadow Copy Storage association" <<<"$out"

  expect_ok "shadow of raw" shadow create raw
  expect_ok "write raw" volume write raw --offset 0 --pattern 0x33 --length 1M
  ok "records land in the added diff area" ne "$(find diff2 -name 'seg-*' | wc -l)" 0
  ok "raw shadow exact" eq "$(v shadow read "$(v shadow list --volume raw --json | jq -r .[0].shadow_id)" --offset 0 --length 4M | sha)" "$raw_sha"
}

test_diff_area_full_and_events() {
  local first=$(v shadow list --volume raw --json | jq -r .[0].shadow_id)
  expect_ok "storage resize below the used space" storage resize --for raw --max-size 128K
  ok "resize deleted the shadow that no longer fits" eq "$(v shadow list --volume raw --json | jq length)" 0
  head -c 2M /dev/urandom >rand.bin
  expect_ok "write random data" volume write raw --offset 0 --input rand.bin
  expect_ok "shadow over random data" shadow create raw --json
  local second=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  expect_ok "write always succeeds when the diff area is full" \
    volume write raw --offset 0 --pattern 0x44 --length 2M
  ok "the full diff area deleted the oldest shadow" eq "$(v shadow list --volume raw --json | jq length)" 0
  ok "the write reached the volume" \
    eq "$(v volume read raw --offset 0 --length 2M | sha)" "$(head -c 2M /dev/zero | tr '\0' '\104' | sha)"
  expect_ok "events --volume" events --volume raw --json
  ok "an event names each deleted shadow" \
    eq "$(jq -r --arg a "$first" --arg b "$second" '[.[].shadow_id] | (index($a) != null) and (index($b) != null)' <<<"$out")" true
  expect_ok "events" events
  ok "events text names the volume" grep -q " raw " <<<"$out"
  expect_ok "storage back to unbounded" storage resize --for raw --max-size unbounded
}

test_remove() {
  expect_ok "shadow of small" shadow create small
  expect_fail 1 "remove with shadows refuses" volume remove small
  ok "remove refusal says --force" grep -q -- "--force" <<<"$errline"
  expect_ok "remove --force" volume remove small --force --json
  ok "remove: gone" eq "$(v volume list --json | jq '[.[].name] | index("small")')" null
  ok "remove: image kept" test -f small.img
  expect_ok "remove text" volume remove text.img
}

test_store_flag_and_help() {
  expect_ok "--store before the noun" --store "$work/other" volume list --json
  ok "--store: empty" eq "$out" "[]"
  ok "--store: catalog created" test -f "$work/other/catalog.db"
  expect_ok "--store after the verb" volume list --store "$work/other" --json
  ok "--store after verb: empty" eq "$out" "[]"
  expect_ok "--help" --help
  ok "--help has examples" grep -q "Examples:" <<<"$out"
  local cmd
  for cmd in "volume create" "volume add" "volume list" "volume show" "volume remove" \
    "volume write" "volume read" "shadow create" "shadow list" "shadow show" \
    "shadow read" "shadow export" "shadow diff" "shadow delete" "shadow revert" \
    "shadow verify" "storage add" "storage resize" "storage list" "events"; do
    # shellcheck disable=SC2086
    ok "$cmd --help has an example" eval 'v $cmd --help | grep -q "vssctl $cmd"'
  done
}

# ---------------------------------------------------------------- bad input
test_bad_input() {
  expect_fail 1 "size 12Q" volume create bad.img --size 12Q
  ok "12Q: no file" test ! -e bad.img
  ok "12Q: message names the size" grep -q "12Q" <<<"$errline"
  expect_fail 1 "size 0" volume create bad.img --size 0
  expect_fail 1 "chunk size 3K" volume create bad.img --size 1M --chunk-size 3K
  expect_fail 1 "duplicate name" volume create other.img --size 1M --name disk
  ok "duplicate name: no file left" test ! -e other.img
  expect_fail 1 "create over an existing file" volume create disk.img --size 1M --name disk9
  expect_fail 1 "add a missing file" volume add missing.img
  expect_fail 1 "add the same image twice" volume add raw.img --name raw2
  expect_fail 1 "unknown volume" volume show nosuch
  expect_fail 1 "unknown shadow" shadow show 01234567-89ab-cdef-0123-456789abcdef
  expect_fail 1 "unknown shadow prefix" shadow read zz --offset 0 --length 1
  expect_fail 1 "unknown set" shadow list --set 01234567
  expect_fail 1 "read past the end" volume read disk --offset 64M --length 1
  expect_fail 1 "read across the end" volume read disk --offset 63M --length 2M --output cross.bin
  ok "read across the end: no output file" test ! -e cross.bin
  expect_fail 1 "write past the end" volume write disk --offset 63M --pattern 1 --length 2M
  expect_fail 1 "write a missing file" volume write disk --offset 0 --input missing.bin
  expect_fail 1 "pattern 300" volume write disk --offset 0 --pattern 300 --length 1
  expect_fail 1 "pattern zz" volume write disk --offset 0 --pattern zz --length 1
  expect_fail 1 "offset 1.5M" volume read disk --offset 1.5M --length 1
  expect_fail 1 "max size 5X" storage resize --for disk --max-size 5X
  expect_fail 1 "storage for unknown volume" storage add --for nosuch --on x
  expect_ok "shadow for shadow-read tests" shadow create disk --json
  local s=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  expect_fail 1 "shadow read past the end" shadow read "$s" --offset 64M --length 4K
  expect_fail 1 "shadow create of a volume twice" shadow create disk disk
  expect_fail 1 "delete --volume --oldest with none" shadow delete --volume raw --oldest
  expect_ok "cleanup" shadow delete "$s"
}

test_ambiguous_prefix() {
  # Take shadows until two ids share their first hex digit (at most 17).
  local ids=() first=""
  for _ in $(seq 17); do
    ids+=("$(v shadow create disk --json | jq -r '.shadows[0].shadow_id')")
    first=$(printf '%s\n' "${ids[@]}" | cut -c1 | sort | uniq -d | head -1)
    [[ -n $first ]] && break
  done
  expect_fail 1 "ambiguous shadow prefix" shadow show "$first"
  ok "ambiguous: says so" grep -qi "ambiguous" <<<"$errline"
  expect_ok "delete all of disk" shadow delete --volume disk --all
}

test_usage_errors() {
  expect_fail 2 "no command"
  expect_fail 2 "noun without verb" volume
  expect_fail 2 "unknown verb" volume frobnicate
  expect_fail 2 "create without --size" volume create x.img
  expect_fail 2 "write without data" volume write disk --offset 0
  expect_fail 2 "write with --input and --pattern" volume write disk --offset 0 --input data.bin --pattern 1 --length 1
  expect_fail 2 "delete without target" shadow delete
  expect_fail 2 "delete --volume without --oldest/--all" shadow delete --volume disk
  expect_fail 2 "bad context" shadow create disk --context nope
  expect_fail 2 "unknown option" volume list --frob
}

test_busy_volume() {
  command -v flock >/dev/null || return 0
  # Hold the lock until killed, and wait until it is really held.
  # The holder is the sleep itself (flock on a descriptor, then exec), so
  # killing it releases the lock and leaves no process holding our pipes.
  (exec 9>>disk.img && flock 9 && exec sleep 600) >/dev/null 2>&1 &
  local holder=$!
  local i
  for i in $(seq 100); do
    flock -n disk.img true 2>/dev/null || break
    sleep 0.1
  done
  expect_fail 1 "volume in use by another process" volume write disk --offset 0 --pattern 1 --length 1
  ok "busy: names a pid" grep -q "pid" <<<"$errline"
  kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
}

test_damaged_catalog() {
  local store=$work/damaged
  v --store "$store" volume create d.img --size 1M >/dev/null 2>&1
  rm -f "$store"/catalog.db-wal "$store"/catalog.db-shm
  head -c 65536 /dev/urandom >"$store/catalog.db"
  VSS_STORE=$store expect_fail 1 "damaged catalog" volume list
  ok "damaged catalog: names the file, got: $errline" grep -q "catalog.db" <<<"$errline"
}
# Each volume records its image format: raw for every volume this build
# makes; a format without a driver is refused by name and makes no file.
test_volume_format() {
  expect_ok "volume show --json" volume show disk --json
  ok "show: format raw" eq "$(jq -r .format <<<"$out")" raw
  expect_ok "volume list --json" volume list --json
  ok "list: every volume raw" eq "$(jq -r '[.[].format] | unique | join(",")' <<<"$out")" raw
  expect_ok "volume show text" volume show raw
  ok "show text: format line" grep -q "Format: *raw" <<<"$out"
  expect_ok "volume create --format raw" volume create fmt.img --size 1M --format raw --json
  ok "create --format raw: format" eq "$(jq -r .format <<<"$out")" raw
  expect_ok "remove fmt" volume remove fmt.img
  expect_fail 1 "volume create --format vhdx" volume create fmt.vhdx --size 1M --format vhdx
  ok "vhdx: one line naming the format, got: $errline" \
    eq "$errline" "vssctl: vss has no vhdx driver yet; formats: nbd, qcow2, raw"
  ok "vhdx: no file made" test ! -e fmt.vhdx
  expect_fail 1 "volume create --format floppy" volume create fmt.fd --size 1M --format floppy
  ok "floppy: unknown format named, got: $errline" grep -q "unknown image format 'floppy'" <<<"$errline"
  ok "floppy: no file made" test ! -e fmt.fd
}

# ------------------------------------------------- issue 10 (findings 0, 1, 5, 8, 10)
# qemu-img makes a real image of each format; none may be taken for raw.
test_image_formats() {
  if ! command -v qemu-img >/dev/null; then echo "skip test_image_formats: no qemu-img"; return 0; fi
  qemu-img create -q -f qcow2 web.qcow2 64M
  if command -v qemu-io >/dev/null; then qemu-io -c 'write -P 0x5a 0 1M' web.qcow2 >/dev/null; fi
  local qsha=$(sha <web.qcow2)
  # qcow2 has a driver: the image is added as qcow2, and adding it writes
  # no byte.
  expect_ok "volume add of a qcow2 image" volume add web.qcow2 --name web --json
  ok "qcow2: added as qcow2" eq "$(jq -r .format <<<"$out")" qcow2
  ok "qcow2: the file is unchanged" eq "$(sha <web.qcow2)" "$qsha"
  ok "qcow2: qemu-img still reads qcow2" eq "$(qemu-img info --output=json web.qcow2 | jq -r .format)" qcow2
  expect_ok "remove the qcow2 volume" volume remove web
  local f name
  for f in qed:QED vhdx:VHDX vpc:VHD vmdk:VMDK vdi:VDI; do
    qemu-img create -q -f "${f%%:*}" "img.${f%%:*}" 16M
    expect_fail 1 "volume add of a ${f##*:} image" volume add "img.${f%%:*}"
    ok "${f##*:}: named, got: $errline" grep -q "img.${f%%:*} is a ${f##*:} image" <<<"$errline"
  done
  qemu-img create -q -f vpc -o subformat=fixed fixed.vhd 4M
  expect_fail 1 "volume add of a fixed VHD (footer at the end only)" volume add fixed.vhd
  ok "fixed VHD named, got: $errline" grep -q "is a VHD image" <<<"$errline"
  # A registered raw volume whose header became qcow2 is refused at open.
  truncate -s 4M turned.img
  expect_ok "add a raw volume" volume add turned.img --name turned
  dd if=web.qcow2 of=turned.img bs=4096 count=1 conv=notrunc status=none
  local tsha=$(sha <turned.img)
  expect_fail 1 "open of a volume whose header became qcow2" volume write turned --offset 0 --pattern 1 --length 1
  ok "turned: says qcow2, got: $errline" grep -q "turned.img is a qcow2 image" <<<"$errline"
  ok "turned: image unchanged" eq "$(sha <turned.img)" "$tsha"
  expect_ok "such a volume can still be removed" volume remove turned
}

# Two volumes on one diff-area directory keep their own segments.
test_shared_diff_area_dir() {
  expect_ok "create va" volume create va.img --size 8M --name va --json
  local va=$(jq -r .id <<<"$out")
  expect_ok "create vb" volume create vb.img --size 8M --name vb --json
  local vb=$(jq -r .id <<<"$out")
  expect_ok "storage add va on D" storage add --for va --on shared --json
  ok "va's diff area is D/<va id>" eq "$(jq -r .dir <<<"$out")" "$(realpath "$work")/shared/$va"
  expect_ok "storage add vb on the same D" storage add --for vb --on shared
  expect_ok "fill va" volume write va --offset 0 --pattern 0xa1 --length 2M
  expect_ok "fill vb" volume write vb --offset 0 --pattern 0xb1 --length 2M
  expect_ok "shadows of va and vb" shadow create va vb --json
  local sa=$(jq -r '.shadows[] | select(.volume == "va") | .shadow_id' <<<"$out")
  local sb=$(jq -r '.shadows[] | select(.volume == "vb") | .shadow_id' <<<"$out")
  expect_ok "overwrite va" volume write va --offset 0 --pattern 0xa2 --length 2M
  expect_ok "overwrite vb" volume write vb --offset 0 --pattern 0xb2 --length 2M
  expect_ok "verify va's shadow" shadow verify "$sa" --json
  ok "va's shadow verifies" eq "$(jq .ok <<<"$out")" true
  expect_ok "verify vb's shadow" shadow verify "$sb" --json
  ok "vb's shadow verifies" eq "$(jq .ok <<<"$out")" true
  ok "va's shadow reads its bytes" eq "$(v shadow read "$sa" --offset 0 --length 2M | sha)" \
    "$(head -c 2M /dev/zero | tr '\0' '\241' | sha)"
  ok "vb's shadow reads its bytes" eq "$(v shadow read "$sb" --offset 0 --length 2M | sha)" \
    "$(head -c 2M /dev/zero | tr '\0' '\261' | sha)"
  ok "no segment directly in D" eq "$(find shared -maxdepth 1 -name 'seg-*' | wc -l)" 0
  local vb_segs=$(ls "shared/$vb")
  expect_ok "remove va" volume remove va --force
  ok "vb's segments stay" eq "$(ls "shared/$vb")" "$vb_segs"
  ok "va's directory is gone" test ! -e "shared/$va"
  expect_ok "vb's shadow still verifies" shadow verify "$sb" --json
  ok "vb's shadow verifies after va went" eq "$(jq .ok <<<"$out")" true
  expect_ok "remove vb" volume remove vb --force
}

# With umask 022, everything a store creates is still 0600/0700.
test_private_files() {
  local store=$work/private
  (
    umask 022
    export VSS_STORE=$store
    v volume create p.img --size 4M --name p &&
      v volume create q.img --size 4M --name q &&
      v storage add --for q --on privdiff &&
      v volume write p --offset 0 --pattern 1 --length 1M &&
      v volume write q --offset 0 --pattern 1 --length 1M &&
      v shadow create p q &&
      v volume write p --offset 0 --pattern 2 --length 1M &&
      v volume write q --offset 0 --pattern 2 --length 1M
  ) >/dev/null 2>err
  ok "private store built: $(head -c 300 err)" test ! -s err
  local loose
  loose=$(find "$store" privdiff \( -type f ! -perm 0600 \) -o \( -type d ! -perm 0700 \))
  ok "everything in the store and diff areas is private, loose: $loose" test -z "$loose"
  ok "segments exist in both" eq "$(find "$store" privdiff -name 'seg-*' | wc -l)" 2
  ok "the catalog is 0600" eq "$(stat -c %a "$store"/catalog.db)" 600
  ok "new images are 0600" eq "$(stat -c %a p.img q.img | sort -u)" 600
}

# A catalog that cannot be the store's is an error, never a fresh store.
test_catalog_lost() {
  local store=$work/lost
  (
    export VSS_STORE=$store
    v volume create l.img --size 1M --name l && v volume write l --offset 0 --pattern 1 --length 64K &&
      v shadow create l && v volume write l --offset 0 --pattern 2 --length 64K
  ) >/dev/null 2>&1
  rm -f "$store"/catalog.db-wal "$store"/catalog.db-shm
  : >"$store/catalog.db"
  VSS_STORE=$store expect_fail 1 "zero-length catalog" volume list
  ok "zero-length: names the file, got: $errline" grep -q "$store/catalog.db is empty" <<<"$errline"
  ok "zero-length: still empty" eq "$(stat -c %s "$store/catalog.db")" 0
  rm "$store/catalog.db"
  VSS_STORE=$store expect_fail 1 "missing catalog while diff areas remain" volume list
  ok "missing: says so, got: $errline" grep -q "catalog.db is missing" <<<"$errline"
  ok "missing: no catalog made" test ! -e "$store/catalog.db"
}

# Paths read from a store are not followed through symbolic links.
test_symlinks() {
  truncate -s 4M real.img
  ln -s real.img link.img
  expect_ok "add through a symbolic link" volume add link.img --name vialink --json
  ok "the real path is recorded" eq "$(jq -r .path <<<"$out")" "$(realpath real.img)"
  expect_ok "write through the recorded path" volume write vialink --offset 0 --pattern 0x5a --length 4K
  ok "the real image got it" eq "$(head -c 4096 real.img | sha)" "$(head -c 4096 /dev/zero | tr '\0' Z | sha)"
  head -c 4096 /dev/urandom >victim.bin
  local vsha=$(sha <victim.bin)
  mv real.img real-moved.img
  ln -s victim.bin real.img
  expect_fail 1 "image path replaced by a symbolic link" volume write vialink --offset 0 --pattern 1 --length 1
  ok "link refusal says so, got: $errline" grep -q "symbolic link" <<<"$errline"
  ok "the link's target is untouched" eq "$(sha <victim.bin)" "$vsha"
  rm real.img link.img
  mv real-moved.img real.img
  expect_ok "remove vialink" volume remove vialink
}

for t in test_volume_create_add test_volume_list_show test_volume_format test_volume_write_read \
  test_shadow_create_list_show test_shadow_keeps_old_bytes test_shadow_sets_and_diff \
  test_shadow_verify_export test_contexts_and_delete test_revert test_storage \
  test_diff_area_full_and_events test_bad_input test_ambiguous_prefix \
  test_usage_errors test_busy_volume test_remove test_store_flag_and_help \
  test_damaged_catalog test_image_formats test_shared_diff_area_dir \
  test_private_files test_catalog_lost test_symlinks; do
  before=$failures
  $t
  ((failures == before)) && echo "ok   $t" || echo "FAIL $t"
done
echo "$checks checks, $failures failed"
((failures == 0))
