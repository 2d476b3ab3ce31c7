#!/usr/bin/env bash
# End-to-end test of vssctl mount / attach / unmount (FUSE), in-process and
# through vssd: exposed images equal `shadow export`, SEEK_DATA/SEEK_HOLE
# find the same holes in-process and through vssd, every change gets EROFS,
# partitions, --filesystem for ext4, XFS and vfat with the origin's
# filesystem mounted read-write at the same time, and for shadows whose
# journal is dirty (taken of a mounted filesystem without a freeze), live
# writes through attach leave shadows exact, a damaged diff area gives EIO
# while the mount keeps serving, bad input fails cleanly.
#
# usage: fuse_test.sh VSSCTL VSSD FUSE_PROBE
# Exits 77 (skipped) when not root, without /dev/fuse or a needed tool.
# Not -e: a failed check is counted and the run goes on; the trap undoes
# every mount, loop device and process the test made, even on failure.
# shellcheck disable=SC2016  # eval strings
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
PROBE=$(realpath "$3")
[[ $(id -u) -eq 0 ]] || skip "needs root (FUSE, loop devices, mount)"
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
for tool in jq losetup blkid sfdisk mkfs.ext4 mkfs.xfs mkfs.vfat sha256sum cmp \
            dumpe2fs xfs_logprint; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done

make_work vss-fuse-test
export VSS_STORE=$work/store
unset XDG_DATA_HOME
vssd_pid=

# "MOUNT_POINT TYPE" of every mount beneath $1.
mounts_beneath() {
  awk -v w="$1" 'index($5, w) == 1 {
    for (i = 7; i <= NF; i++) if ($i == "-") { print $5, $(i + 1); break }
  }' /proc/self/mountinfo
}
# Undo everything beneath $work: filesystems (deepest first), loop devices,
# FUSE mounts, vssd.
cleanup() {
  local m l
  for m in $(mounts_beneath "$work" | awk '$2 != "fuse.vss" {print $1}' | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  for l in $(losetup -n -l -O NAME,BACK-FILE | awk -v w="$work" 'index($2, w) == 1 {print $1}'); do
    losetup -d "$l"
  done
  for m in $(mounts_beneath "$work" | awk '{print $1}' | sort -r); do
    "$VSSCTL" unmount "$m" >/dev/null 2>&1 || umount -l "$m"
  done
  [[ -n $vssd_pid ]] && kill "$vssd_pid" 2>/dev/null && wait "$vssd_pid"
}
at_exit cleanup
cd "$work" || exit 1

# What a failed vssctl command must leave unchanged here: the mounts.
state() { grep -c "$work" /proc/self/mountinfo; }
state_what="nothing mounted"
# A successful vssctl command may say something on stderr.
expect_ok_stderr=allowed
is_vss_mount() { mounts_beneath "$1" | grep -qx "$1 fuse.vss"; }
json_file() {  # json_file PARTITION: the name of that file in $out
  jq -r --argjson p "$1" '[.files[] | select(.partition == $p)][0].name' <<<"$out"
}
# Files with their checksums, relative to a directory.
manifest() { (cd "$1" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum); }

# Fills the filesystem on loop device $1 (mounted on $2) with files.
fill_fs() {
  mkdir -p "$2/dir"
  head -c 300K /dev/urandom >"$2/one.bin"
  head -c 1M /dev/urandom >"$2/dir/two.bin"
  echo "hello from $3" >"$2/dir/three.txt"
  sync -f "$2"
}
# Changes them: delete, overwrite, add.
change_fs() {
  rm "$1/one.bin"
  head -c 1M /dev/urandom >"$1/dir/two.bin"
  head -c 200K /dev/urandom >"$1/new.bin"
  sync -f "$1"
}

# ------------------------------------------------------------------ setup
v volume create ext.img --size 64M --name ext >/dev/null
v volume create xfs.img --size 320M --name xfs >/dev/null
v volume create part.img --size 64M --name part >/dev/null
mkdir -p m1 m2 m3 o1 o2 o3

probe_fuse() {
  v attach ext probe.raw >/dev/null 2>err && v unmount probe.raw >/dev/null && return
  grep -q "without FUSE" err && skip "vssctl was built without FUSE"
  fail "attach: $(cat err)"
}
probe_fuse

# ------------------------------------------- attach in-process, ext4 on it
test_attach_in_process() {
  expect_ok "attach ext" attach ext ext.raw --json
  ok "attach: in-process" eq "$(jq -r .via <<<"$out")" in-process
  ok "attach: exact size" eq "$(stat -c %s ext.raw)" 67108864
  ok "attach: a vssctl mount" is_vss_mount "$work/ext.raw"
  ok "attach: the file names its volume (user.vss.volume)" eq \
    "$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.vss.volume").decode())' ext.raw)" \
    "$(v volume show ext --json | jq -r '.id // .volume_id')"
  local loop
  loop=$(losetup -f --show ext.raw)
  ok "attach: mkfs.ext4 on its loop device" mkfs.ext4 -q "$loop"
  ok "attach: mount ext4" mount "$loop" o1
  fill_fs "$loop" o1 ext
  manifest o1 >ext.manifest
  umount o1
  losetup -d "$loop"
  expect_ok "unmount the attached file" unmount ext.raw
  ok "unmount: the file made by attach is gone" test ! -e ext.raw
  ok "unmount: the server released the volume" v volume read ext --offset 0 --length 4K --output /dev/null
  ok "attach wrote through the engine" eq "$(blkid -p -o value -s TYPE ext.img)" ext4
}

# --------------------------------------------- mount in-process, read-only
test_mount_in_process() {
  expect_ok "shadow create ext" shadow create ext --json
  s1=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  expect_ok "export s1" shadow export "$s1" s1.img
  expect_ok "mount s1" mount "$s1" m1 --json
  ok "mount: in-process" eq "$(jq -r .via <<<"$out")" in-process
  local name
  name=$(json_file 0)
  ok "mount: name is <volume>@<time>.img, got $name" \
    eval '[[ $name =~ ^ext@[0-9]{8}T[0-9]{6}Z\.img$ ]]'
  ok "mount: one file (no partition table)" eq "$(ls m1)" "$name"
  ok "mount: exact size" eq "$(stat -c %s "m1/$name")" 67108864
  ok "mount: equals shadow export" cmp "m1/$name" s1.img
  local probe rc
  probe=$("$PROBE" erofs "m1/$name" m1)
  rc=$?
  ok "mount: every change is EROFS ($(tr '\n' ';' <<<"$probe"))" eq "$rc" 0
  local holes
  holes=$("$PROBE" holes "m1/$name")
  ok "mount: SEEK_DATA/SEEK_HOLE walk ($holes)" eval '[[ $holes == data\ [1-9]*\ hole\ [1-9]* ]]'
  expect_ok "shadow show" shadow show "$s1" --json
  ok "mount: exposed_path recorded" eq "$(jq -r .exposed_path <<<"$out")" "$work/m1"
  ok "mount: exposed_name is the image" eq "$(jq -r .exposed_name <<<"$out")" "$name"
  expect_ok "shadow list" shadow list
  ok "shadow list shows the exposure" grep -q "Exposed: $work/m1/$name" <<<"$out"
  # The volume is held by the mount's server.
  expect_fail 1 "attach while mounted in-process" attach ext busy.raw
  ok "attach busy: names the holder, got: $errline" grep -q "in use" <<<"$errline"
  ok "attach busy: no file left" test ! -e busy.raw
  expect_fail 1 "mount the same shadow twice" mount "$s1" m2
  expect_ok "unmount m1" unmount m1
  ok "unmount: gone" eval '! is_vss_mount "$work/m1"'
  expect_ok "shadow show after unmount" shadow show "$s1" --json
  ok "unmount: exposed_path cleared" eq "$(jq -r .exposed_path <<<"$out")" ""
}

# ----------------------- partitions (GPT), ext4 + vfat, --filesystem, --volume
test_partitions_filesystem() {
  v attach part part.raw >/dev/null || fail "attach part"
  printf 'label: gpt\n,20MiB,L\n,,L\n' | sfdisk -q part.raw >/dev/null || fail "sfdisk on the attached file"
  local p1 p2 start size
  read -r start size < <(sfdisk -d part.raw | sed -n 's/.*part.raw1 : start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p')
  p1=$(losetup -f --show -o $((start * 512)) --sizelimit $((size * 512)) part.raw)
  read -r start size < <(sfdisk -d part.raw | sed -n 's/.*part.raw2 : start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p')
  p2=$(losetup -f --show -o $((start * 512)) --sizelimit $((size * 512)) part.raw)
  mkfs.ext4 -q "$p1" && mkfs.vfat "$p2" >/dev/null || fail "mkfs on the partitions"
  # Not every kernel has vfat: then p2 is found but not mounted.
  local vfat=
  grep -qw vfat /proc/filesystems && vfat=1
  [[ -n $vfat ]] || echo "note: this kernel has no vfat driver; vfat is probed, not mounted"
  mount "$p1" o1 && fill_fs "$p1" o1 p1 && manifest o1 >p1.manifest
  umount o1
  if [[ -n $vfat ]]; then
    mount "$p2" o2 && fill_fs "$p2" o2 p2 && manifest o2 >p2.manifest
    umount o2
  fi
  losetup -d "$p1" "$p2"
  v unmount part.raw >/dev/null || fail "unmount part.raw"
  v shadow create part >/dev/null || fail "shadow create part"
  expect_ok "mount --volume part --filesystem" mount --volume part m1 --filesystem --json
  local whole
  whole=$(json_file 0)
  ok "partitions: whole + p1 + p2" eq "$(jq '.files | length' <<<"$out")" 3
  ok "partitions: -p1 name" eq "$(json_file 1)" "${whole%.img}-p1.img"
  ok "partitions: p1 is ext4" eq "$(jq -r '.files[1].filesystem' <<<"$out")" ext4
  ok "partitions: p2 is vfat" eq "$(jq -r '.files[2].filesystem' <<<"$out")" vfat
  ok "partitions: p1 files equal" eq "$(manifest "m1/${whole%.img}-p1")" "$(cat p1.manifest)"
  local opts
  opts=,$(findmnt -no OPTIONS "$work/m1/${whole%.img}-p1"),
  ok "partitions: p1 mounted ro,nosuid,nodev,noexec ($opts)" \
    eval '[[ $opts == *,ro,* && $opts == *,nosuid,* && $opts == *,nodev,* && $opts == *,noexec,* ]]'
  if [[ -n $vfat ]]; then
    ok "partitions: p2 files equal" eq "$(manifest "m1/${whole%.img}-p2")" "$(cat p2.manifest)"
  else
    ok "partitions: p2 says why it is not mounted" \
      eq "$(jq -r '.files[2].not_mounted' <<<"$out")" "this kernel has no vfat driver"
  fi
  ok "partitions: p1 image has the ext4 bytes" \
    eval 'cmp -n 1M "m1/${whole%.img}-p1.img" <(tail -c +$((2048 * 512 + 1)) part.img)'
  expect_ok "unmount --filesystem mount" unmount m1
  ok "unmount: nothing left beneath m1" eq "$(grep -c "$work/m1" /proc/self/mountinfo)" 0
  ok "unmount: loop devices detached" eq "$(losetup -n -l -O BACK-FILE | grep -c "$work/m1")" 0
}

# ------------------------------------------------------- through vssd
start_vssd() {  # start_vssd [VSSD OPTIONS...]
  "$VSSD" --store "$VSS_STORE" "$@" 2>vssd.log &
  vssd_pid=$!
  waits_for 120 test -S "$VSS_STORE/nbd.sock" && return
  fail "vssd did not start: $(cat vssd.log)"
}
stop_vssd() {
  kill "$vssd_pid" && wait "$vssd_pid"
  vssd_pid=
}

test_vssd_origin_and_shadows_mounted() {
  start_vssd
  # XFS made through vssd, then a shadow set of ext and xfs (taken while
  # no client holds the volumes: shadow creation inside vssd comes with
  # the VSS daemon).
  expect_ok "attach xfs through vssd" attach xfs xfs.raw --json
  ok "attach: through vssd" eq "$(jq -r .via <<<"$out")" vssd
  local lx le
  lx=$(losetup -f --show xfs.raw)
  ok "mkfs.xfs through vssd" mkfs.xfs -q "$lx"
  mount "$lx" o3 && fill_fs "$lx" o3 xfs
  manifest o3 >xfs.manifest
  umount o3
  losetup -d "$lx"
  v unmount xfs.raw >/dev/null || fail "unmount xfs.raw"
  expect_ok "shadow create ext xfs" shadow create ext xfs --json
  local set
  set=$(jq -r .set_id <<<"$out")
  s_ext=$(jq -r '.shadows[] | select(.volume == "ext") | .shadow_id' <<<"$out")
  v shadow export "$s_ext" s_ext.img >/dev/null || fail "export s_ext"

  # The origins mounted read-write and changed ...
  v attach ext ext.raw >/dev/null && v attach xfs xfs.raw >/dev/null || fail "attach origins"
  le=$(losetup -f --show ext.raw)
  lx=$(losetup -f --show xfs.raw)
  mount "$le" o1 && mount "$lx" o3 || fail "mount origins rw"
  change_fs o1
  change_fs o3
  # ... while the shadows are mounted with their filesystems.
  expect_ok "mount --set --filesystem through vssd" mount --set "$set" m2 --filesystem --json
  ok "set mount: through vssd" eq "$(jq -r .via <<<"$out")" vssd
  local ext_name xfs_name
  ext_name=$(jq -r '.files[] | select(.volume == "ext") | .name' <<<"$out")
  xfs_name=$(jq -r '.files[] | select(.volume == "xfs") | .name' <<<"$out")
  ok "set mount: ext4 mounted" eq "$(jq -r '.files[] | select(.volume == "ext") | .filesystem' <<<"$out")" ext4
  ok "set mount: xfs mounted" eq "$(jq -r '.files[] | select(.volume == "xfs") | .filesystem' <<<"$out")" xfs
  ok "ext4 shadow: old files while the origin is mounted rw" \
    eq "$(manifest "m2/${ext_name%.img}")" "$(cat ext.manifest)"
  ok "xfs shadow (nouuid): old files" \
    eq "$(manifest "m2/${xfs_name%.img}")" "$(cat xfs.manifest)"
  ok "origin really changed" test ! -e o1/one.bin
  ok "shadow image equals its export after live writes" cmp "m2/$ext_name" s_ext.img
  expect_ok "unmount m2" unmount m2
  # Both shadows of ext through vssd: the older one is exact too.
  expect_ok "mount --volume ext through vssd" mount --volume ext m3 --json
  ok "--volume: both shadows of ext" eq "$(ls m3 | wc -l)" 2
  local s1_name
  s1_name=$(jq -r --arg s "$s1" '.files[] | select(.shadow_id == $s) | .name' <<<"$out")
  ok "older shadow exact after live writes" cmp "m3/$s1_name" s1.img
  expect_ok "unmount m3" unmount m3
  umount o1 o3
  losetup -d "$le" "$lx"
  expect_ok "unmount attached ext" unmount ext.raw
  expect_ok "unmount attached xfs" unmount xfs.raw
  # SEEK_DATA/SEEK_HOLE on s1 through vssd, then in-process with the
  # volume in the same state.
  local s1_vssd_map
  expect_ok "mount s1 through vssd" mount "$s1" m3
  s1_vssd_map=$("$PROBE" map "m3/$s1_name")
  expect_ok "unmount s1 through vssd" unmount m3
  stop_vssd
  expect_ok "mount s1 in-process again" mount "$s1" m3
  ok "ext4 shadow through vssd: SEEK_DATA/SEEK_HOLE found what they find in-process" \
    eq "$s1_vssd_map" "$("$PROBE" map "m3/$s1_name")"
  ok "ext4 shadow: a real map ($(wc -l <<<"$s1_vssd_map") data segments)" \
    eval '[[ $(wc -l <<<"$s1_vssd_map") -gt 1 ]]'
  expect_ok "unmount s1" unmount m3
}

# -------------------------------- SEEK_DATA / SEEK_HOLE in-process and via vssd
# covers MAP START LENGTH: [START, START+LENGTH) lies in one data segment.
covers() {
  awk -v s="$2" -v e="$(($2 + $3))" '$1 <= s && $2 >= e {found = 1} END {exit !found}' <<<"$1"
}
# hole_at MAP OFFSET: OFFSET lies in no data segment.
hole_at() {
  awk -v o="$2" '$1 <= o && o < $2 {found = 1} END {exit found}' <<<"$1"
}
test_seek_holes_through_vssd() {
  v volume create sparse.img --size 64M --name sparse >/dev/null
  v volume write sparse --offset 1M --pattern 0x41 --length 100K >/dev/null
  v volume write sparse --offset 10M --pattern 0x42 --length 1M >/dev/null
  v volume write sparse --offset 60M --pattern 0x43 --length 5000 >/dev/null
  expect_ok "shadow create sparse" shadow create sparse --json
  local sp
  sp=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  # The live volume moves on: data overwritten, data where the shadow has
  # a hole.
  v volume write sparse --offset 10M --pattern 0x44 --length 64K >/dev/null
  v volume write sparse --offset 30M --pattern 0x45 --length 1M >/dev/null
  v shadow export "$sp" sparse-shadow.img >/dev/null || fail "export the sparse shadow"

  local name local_map local_live vssd_map vssd_live holes
  expect_ok "mount the sparse shadow in-process" mount "$sp" m1 --json
  name=$(json_file 0)
  local_map=$("$PROBE" map "m1/$name")
  v unmount m1 >/dev/null || fail "unmount m1"
  ok "in-process: three data segments, got: $(tr '\n' ';' <<<"$local_map")" \
    eq "$(wc -l <<<"$local_map")" 3
  ok "in-process: data at 1M" covers "$local_map" $((1 << 20)) 102400
  ok "in-process: data at 10M" covers "$local_map" $((10 << 20)) $((1 << 20))
  ok "in-process: data at 60M" covers "$local_map" $((60 << 20)) 5000
  ok "in-process: the shadow's hole at 30M" hole_at "$local_map" $((30 << 20))
  v attach sparse sparse.raw >/dev/null || fail "attach sparse in-process"
  local_live=$("$PROBE" map sparse.raw)
  v unmount sparse.raw >/dev/null || fail "unmount sparse.raw"
  ok "in-process: the live volume has data at 30M" covers "$local_live" $((30 << 20)) $((1 << 20))

  start_vssd
  expect_ok "mount the sparse shadow through vssd" mount "$sp" m1 --json
  ok "sparse shadow: through vssd" eq "$(jq -r .via <<<"$out")" vssd
  vssd_map=$("$PROBE" map "m1/$name")
  ok "through vssd: SEEK_DATA/SEEK_HOLE find the holes found in-process, got: $(tr '\n' ';' <<<"$vssd_map")" \
    eq "$vssd_map" "$local_map"
  holes=$("$PROBE" holes "m1/$name")
  ok "through vssd: the holes read as zeroes ($holes)" eval '[[ $holes == data\ [1-9]*\ hole\ [1-9]*\ segments\ 3 ]]'
  ok "through vssd: the image equals its export" cmp "m1/$name" sparse-shadow.img
  expect_ok "unmount the sparse shadow" unmount m1
  expect_ok "attach sparse through vssd" attach sparse sparse.raw --json
  ok "attach sparse: through vssd" eq "$(jq -r .via <<<"$out")" vssd
  vssd_live=$("$PROBE" map sparse.raw)
  ok "live volume through vssd: the same data segments as in-process" eq "$vssd_live" "$local_live"
  expect_ok "unmount sparse.raw" unmount sparse.raw
  stop_vssd
}

# ------------------- --filesystem on shadows whose journal is dirty (ext4, XFS)
# Shadows of filesystems mounted read-write, taken through vssd without a
# freeze (vssd --no-fsfreeze --no-guest-agent, a context without writers): crash-consistent
# images whose journal still holds transactions. Files synced before the
# shadow must read back; the shadow itself must stay as it was taken.
ext4_journal_dirty() {  # IMAGE: needs_recovery, and transactions in the log
  local h
  h=$(dumpe2fs -h "$1" 2>/dev/null)
  grep -q '^Filesystem features:.*needs_recovery' <<<"$h" &&
    [[ $(awk -F: '/^Journal start:/ {print $2 + 0}' <<<"$h") -ne 0 ]]
}
# IMAGE: xfs_logprint finds the log dirty. It opens its argument read-write,
# so it is given a read-only loop device of the image.
xfs_log_state() {
  local l
  l=$(losetup -r -f --show "$1") || return
  xfs_logprint -t "$l" 2>&1 | grep -o 'state: <[A-Z]*>'
  losetup -d "$l"
}
xfs_log_dirty() { [[ $(xfs_log_state "$1") == "state: <DIRTY>" ]]; }
# Metadata-heavy work after the last sync: files created, renamed, removed.
churn() {
  mkdir -p "$1/churn"
  local i
  for i in $(seq 400); do echo "$i" >"$1/churn/f$i"; done
  for i in $(seq 1 2 400); do mv "$1/churn/f$i" "$1/churn/g$i"; done
  rm -f "$1"/churn/f1*
}
test_dirty_journal_filesystem() {
  v volume create dext.img --size 64M --name dext >/dev/null
  v volume create dxfs.img --size 320M --name dxfs >/dev/null
  start_vssd --no-fsfreeze --no-guest-agent
  v attach dext dext.raw >/dev/null && v attach dxfs dxfs.raw >/dev/null || fail "attach dext, dxfs through vssd"
  local le lx
  le=$(losetup -f --show dext.raw)
  lx=$(losetup -f --show dxfs.raw)
  mkfs.ext4 -q "$le" && mkfs.xfs -q "$lx" || fail "mkfs on dext, dxfs"
  mount "$le" o1 && mount "$lx" o3 || fail "mount dext, dxfs read-write"
  fill_fs "$le" o1 dext
  fill_fs "$lx" o3 dxfs
  manifest o1 >dext.manifest
  manifest o3 >dxfs.manifest
  churn o1
  churn o3
  expect_ok "shadow create of mounted filesystems, no writers" \
    shadow create dext dxfs --context client-accessible --json
  local set e_name x_name
  set=$(jq -r .set_id <<<"$out")
  ok "no freeze: no writer took part" eq "$(jq '[.writers[]?] | length' <<<"$out")" 0

  expect_ok "mount the dirty set through vssd" mount --set "$set" m1 --json
  e_name=$(jq -r '.files[] | select(.volume == "dext") | .name' <<<"$out")
  x_name=$(jq -r '.files[] | select(.volume == "dxfs") | .name' <<<"$out")
  ok "ext4 shadow: the journal needs recovery ($(dumpe2fs -h "m1/$e_name" 2>/dev/null | grep -E '^Journal start'))" \
    ext4_journal_dirty "m1/$e_name"
  ok "xfs shadow: the log is dirty ($(xfs_log_state "m1/$x_name"))" \
    xfs_log_dirty "m1/$x_name"
  sha256sum "m1/$e_name" "m1/$x_name" | cut -c1-64 >dirty.sums
  expect_ok "unmount the dirty set" unmount m1

  expect_ok "mount --filesystem of the dirty set through vssd" mount --set "$set" m2 --filesystem --json
  ok "dirty ext4 mounted" eq "$(jq -r '.files[] | select(.volume == "dext") | .filesystem' <<<"$out")" ext4
  ok "dirty xfs mounted" eq "$(jq -r '.files[] | select(.volume == "dxfs") | .filesystem' <<<"$out")" xfs
  ok "dirty xfs: its log replayed into memory" \
    eq "$(jq -r '.files[] | select(.volume == "dxfs") | .log_replayed' <<<"$out")" true
  ok "dirty ext4: its journal replayed into memory" \
    eq "$(jq -r '.files[] | select(.volume == "dext") | .log_replayed' <<<"$out")" true
  ok "dirty set: the replay file is not listed" eq "$(ls -A m2 | grep -c replay)" 0
  local xopts
  xopts=,$(findmnt -no OPTIONS "$work/m2/${x_name%.img}"),
  ok "dirty xfs: replayed, still mounted ro,nosuid,nodev,noexec ($xopts)" \
    eval '[[ $xopts == *,ro,* && $xopts == *,nosuid,* && $xopts == *,nodev,* && $xopts == *,noexec,* ]]'
  # With a replay file the FUSE mount is not "ro" for the kernel: the image
  # must still refuse every change by itself.
  local probe rc
  probe=$("$PROBE" erofs "m2/$x_name" m2)
  rc=$?
  ok "dirty set: every change to the image is EROFS ($(tr '\n' ';' <<<"$probe"))" eq "$rc" 0
  ok "dirty ext4: files synced before the shadow, byte for byte" \
    eq "$(manifest "m2/${e_name%.img}" | grep -v ' ./churn/')" "$(cat dext.manifest)"
  ok "dirty xfs: files synced before the shadow, byte for byte" \
    eq "$(manifest "m2/${x_name%.img}" | grep -v ' ./churn/')" "$(cat dxfs.manifest)"
  ok "dirty set: the shadow images did not change" \
    eq "$(sha256sum "m2/$e_name" "m2/$x_name" | cut -c1-64)" "$(cat dirty.sums)"
  ok "dirty xfs: the shadow's log is still dirty" xfs_log_dirty "m2/$x_name"
  ok "dirty ext4: the shadow's journal still needs recovery" ext4_journal_dirty "m2/$e_name"
  expect_ok "unmount the dirty --filesystem mount" unmount m2
  ok "dirty set: no loop device left" eq "$(losetup -n -l -O BACK-FILE | grep -c "$work/m2")" 0

  umount o1 o3
  losetup -d "$le" "$lx"
  v unmount dext.raw >/dev/null && v unmount dxfs.raw >/dev/null || fail "unmount dext.raw, dxfs.raw"
  stop_vssd
  # In-process, the same shadows mount the same way.
  expect_ok "mount --filesystem of the dirty set in-process" mount --set "$set" m2 --filesystem --json
  ok "dirty set in-process" eq "$(jq -r .via <<<"$out")" in-process
  ok "dirty ext4 in-process: synced files" \
    eq "$(manifest "m2/${e_name%.img}" | grep -v ' ./churn/')" "$(cat dext.manifest)"
  ok "dirty xfs in-process: synced files" \
    eq "$(manifest "m2/${x_name%.img}" | grep -v ' ./churn/')" "$(cat dxfs.manifest)"
  expect_ok "unmount the dirty in-process mount" unmount m2
}

# ------------------------------------------------------- damaged diff area
test_damaged_diff_area() {
  local vid seg
  vid=$(v volume show ext --json | jq -r .id)
  for seg in "$VSS_STORE/diff/$vid"/seg-*.vsd; do
    # One byte in every 4 KiB block: every record's checksum fails.
    "$PROBE" damage "$seg" || fail "damage $seg"
  done
  local name result
  expect_ok "mount damaged s1" mount "$s1" m1 --json
  name=$(json_file 0)
  ok "damaged: the mount warns about the partition table" grep -q "partitions of" err
  result=$("$PROBE" eio "m1/$name" 65536)
  ok "damaged: EIO for preserved chunks, data for the rest ($result)" \
    eval '[[ $result == eio\ [1-9]*\ ok\ [1-9]*\ other\ 0 ]]'
  ok "damaged: the mount keeps serving" eq "$(stat -c %s "m1/$name")" 67108864
  ok "damaged: unchanged ranges still read" \
    eval 'dd if="m1/$name" of=/dev/null bs=64K skip=1000 count=1 status=none'
  expect_ok "unmount damaged" unmount m1
  start_vssd
  expect_ok "mount damaged s1 through vssd" mount "$s1" m1
  result=$("$PROBE" eio "m1/$name" 65536)
  ok "damaged via vssd: EIO and data ($result)" \
    eval '[[ $result == eio\ [1-9]*\ ok\ [1-9]*\ other\ 0 ]]'
  expect_ok "unmount damaged via vssd" unmount m1
  stop_vssd
}

# ---------------------------------------------------------------- bad input
test_bad_input() {
  expect_fail 1 "mount unknown shadow" mount 00000000-dead m1
  ok "unknown shadow: named, got: $errline" grep -q "00000000-dead" <<<"$errline"
  expect_fail 1 "mount on a missing directory" mount "$s1" nowhere
  ok "missing dir: named, got: $errline" grep -q "nowhere" <<<"$errline"
  expect_fail 1 "mount --volume without shadows" mount --volume "$(v volume create none.img --size 1M --name none --json | jq -r .name)" m1
  expect_fail 2 "mount SHADOW with --volume" mount "$s1" m1 --volume ext
  expect_fail 2 "mount without DIR" mount "$s1"
  expect_fail 1 "unmount a plain directory" unmount m1
  mount -t tmpfs none m3
  expect_fail 1 "unmount a mount that is not vssctl's" unmount m3
  ok "not ours: says so, got: $errline" grep -q "not a vssctl mount" <<<"$errline"
  umount m3
  v mount "$s1" m1 >/dev/null || fail "mount s1 for the stacking check"
  expect_fail 1 "mount on a directory that is a vssctl mount" mount --volume part m1
  ok "stacking: says so, got: $errline" grep -q "already a vssctl mount" <<<"$errline"
  v unmount m1 >/dev/null || fail "unmount m1"
  expect_fail 1 "attach unknown volume" attach nosuch x.raw
  ok "attach unknown: no file left" test ! -e x.raw
  expect_fail 1 "attach on a directory" attach ext m1
}

SECONDS=0
for t in test_attach_in_process test_mount_in_process test_partitions_filesystem \
         test_seek_holes_through_vssd test_vssd_origin_and_shadows_mounted \
         test_dirty_journal_filesystem test_bad_input test_damaged_diff_area; do
  echo "== $t (at ${SECONDS}s)"
  "$t"
done

echo "$checks checks, $failures failed"
[[ $failures -eq 0 ]]
