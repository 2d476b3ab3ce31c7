#!/usr/bin/env bash
# tools/demo.sh [VSSCTL]: a short tour of vss with the built vssctl.
#
# Creates a sparse volume, writes data through the engine, takes a shadow
# copy, overwrites part of the volume, and shows that the shadow still reads
# the old bytes; then diffs, verifies, exports and reverts. Every claim is
# checked; the script exits non-zero if one fails.
#
# Part two is the story with a real filesystem: vssd runs, a volume is
# attached as a FUSE file, formatted ext4 and loop-mounted, files are
# written, a shadow is taken through vssd (the fsfreeze writer freezes the
# mount for the commit), files are changed and deleted, the shadow is
# mounted with --filesystem and the old files are read back, and the
# changed extents are listed over NBD. Where the machine cannot mount (not
# root, no /dev/fuse), it says so and shows the NBD path instead.
#
# The store is $VSS_STORE when set (the demo volume is removed again at the
# end), otherwise a fresh temporary directory, so the demo is repeatable and
# leaves nothing in ~/.local/share/vss.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
VSSCTL=$(realpath "${1:-${VSSCTL:-$repo/build/tools/vssctl}}")
[[ -x $VSSCTL ]] || { echo "demo: no vssctl at $VSSCTL (build first)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vss-demo.XXXXXX")
vol=demo-$$
if [[ -n ${VSS_STORE:-} ]]; then
  store_note="the store in \$VSS_STORE"
else
  export VSS_STORE=$work/store
  store_note="a fresh temporary store"
fi
VSSD=$(dirname "$VSSCTL")/vssd/vssd
vssd_pid=
cleanup() {
  # Part two's mounts, loop devices and daemon, whatever state it stopped
  # in; each step may find nothing to undo.
  set +e
  [[ -d $work/then ]] && "$VSSCTL" unmount "$work/then" >/dev/null 2>&1
  if [[ -d $work/live ]] && mountpoint -q "$work/live"; then umount "$work/live"; fi
  if [[ -e $work/fs.raw ]]; then
    for l in $(losetup -j "$work/fs.raw" 2>/dev/null | cut -d: -f1); do losetup -d "$l"; done
    "$VSSCTL" unmount "$work/fs.raw" >/dev/null 2>&1
  fi
  [[ -n $vssd_pid ]] && kill "$vssd_pid" 2>/dev/null && wait "$vssd_pid" 2>/dev/null
  "$VSSCTL" volume remove "$vol" --force >/dev/null 2>&1
  "$VSSCTL" volume remove "$vol-fs" --force >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "demo: FAILED (a command above failed)" >&2' ERR
cd "$work"

failures=0
step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
run() { printf '$ vssctl %s\n' "$*"; "$VSSCTL" "$@"; }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then say "ok: $what"; else say "FAILED: $what"; failures=$((failures + 1)); fi
}
same() { [[ $1 == "$2" ]]; }
differ() { [[ $1 != "$2" ]]; }
sha() { sha256sum | cut -c1-64; }
file_range() { dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" bs=1M status=none; }
volume_range() { "$VSSCTL" volume read "$vol" --offset "$1" --length "$2"; }
shadow_range() { "$VSSCTL" shadow read "$shadow" --offset "$1" --length "$2"; }

# Prints the three checksums of a range side by side and checks them.
compare_range() {  # compare_range LABEL OFFSET LENGTH LIVE_EXPECTED(same|differ)
  local o s l
  o=$(file_range expected.img "$2" "$3" | sha)
  s=$(shadow_range "$2" "$3" | sha)
  l=$(volume_range "$2" "$3" | sha)
  printf '   %-26s %-18s %-18s %s\n' "$1" "${o:0:16}" "${s:0:16}" "${l:0:16}"
  same "$o" "$s" || { say "FAILED: shadow differs from the original in $1"; failures=$((failures + 1)); }
  $4 "$o" "$l" || { say "FAILED: live volume should $4 from the original in $1"; failures=$((failures + 1)); }
}

echo "vss demo: volume shadow copies of a disk image file"
echo "Store: $VSS_STORE ($store_note); work files in $work"

step "1. Create a sparse 256 MiB volume"
run volume create disk.img --size 256M --name "$vol"
say "image file: $(du -h --apparent-size disk.img | cut -f1) apparent, $(du -h disk.img | cut -f1) allocated"

step "2. Write 8 MiB of text and 1 MiB of 0xAB bytes through the engine"
awk 'BEGIN { srand(7); for (i = 0; i < 200000; i++)
  printf "%06d the quick brown fox %08x jumps over the lazy dog; ledger %d\n", i, int(rand() * 2^31), i * 37 }' \
  >original.txt
truncate -s 8M original.txt
run volume write "$vol" --offset 0 --input original.txt
run volume write "$vol" --offset 64M --pattern 0xAB --length 1M
# expected.img: what the volume holds now, built without vss.
truncate -s 256M expected.img
dd if=original.txt of=expected.img conv=notrunc status=none
head -c 1M /dev/zero | tr '\0' '\253' | dd of=expected.img bs=1M seek=64 conv=notrunc status=none
check "the volume holds exactly the data written" \
  same "$(volume_range 0 256M | sha)" "$(sha <expected.img)"

step "3. Take a shadow copy"
created=$(run shadow create "$vol")
echo "$created"
shadow=$(grep -o 'Shadow Copy ID: {[0-9a-f-]*}' <<<"$created" | tr -d '{}' | cut -d' ' -f4)
run shadow list --volume "$vol"

step "4. Overwrite part of the volume"
head -c 300K /dev/urandom >new.bin
run volume write "$vol" --offset 1M --pattern 0x5A --length 2M
run volume write "$vol" --offset 5000001 --input new.bin
run volume write "$vol" --offset 64M --pattern 0 --length 512K

step "5. The shadow still reads the old bytes (sha256, first 16 hex digits)"
printf '   %-26s %-18s %-18s %s\n' "range" "original data" "shadow copy" "live volume"
compare_range "text, 0..8 MiB" 0 8M differ
compare_range "pattern, 64..65 MiB" 64M 1M differ
compare_range "untouched, 100..101 MiB" 100M 1M same
compare_range "whole volume" 0 256M differ

step "6. What changed since the shadow"
run shadow diff "$shadow"

step "7. Verify every diff-area record the shadow needs"
run shadow verify "$shadow"
say "$("$VSSCTL" volume show "$vol" | grep 'Diff area:' | sed 's/^ *//')"

step "8. Export the shadow as a sparse raw image"
run shadow export "$shadow" shadow.img
say "shadow.img: $(du -h --apparent-size shadow.img | cut -f1) apparent, $(du -h shadow.img | cut -f1) allocated"
check "the export equals the original data (sha256 $(sha <expected.img | cut -c1-16)…)" \
  same "$(sha <shadow.img)" "$(sha <expected.img)"

step "9. Revert the volume to the shadow"
run shadow revert "$shadow"
check "the volume equals the original data again" \
  same "$(volume_range 0 256M | sha)" "$(sha <expected.img)"
run shadow list --volume "$vol"

step "10. Part two: a filesystem on a live volume, with vssd"
fsvol=$vol-fs
run volume create fs.img --size 256M --name "$fsvol"
"$VSSD" --store "$VSS_STORE" 2>vssd.log &
vssd_pid=$!
for _ in $(seq 100); do [[ -S $VSS_STORE/vssd.sock ]] && break; sleep 0.1; done
check "vssd serves the store" test -S "$VSS_STORE/vssd.sock"
run writers list
nbd="nbd+unix:///live/$fsvol?socket=$VSS_STORE/nbd.sock"
if ((EUID == 0)) && [[ -c /dev/fuse ]] && command -v mkfs.ext4 >/dev/null && losetup -f >/dev/null 2>&1; then
  run attach "$fsvol" fs.raw
  loop=$(losetup -f --show fs.raw)
  mkfs.ext4 -q "$loop"
  mkdir -p live then
  mount "$loop" live
  say "ext4 on $loop (backed by the attached file), mounted on live/"
  echo "the first version" >live/notes.txt
  seq 1 200000 >live/numbers.txt
  sync
  before=$(sha256sum live/notes.txt live/numbers.txt | cut -c1-64)
  run shadow create "$fsvol" --context client-accessible-writers
  fshadow=$("$VSSCTL" shadow list --volume "$fsvol" --json | jq -r '.[0].shadow_id')
  echo "the second version" >live/notes.txt
  rm live/numbers.txt
  sync
  say "notes.txt rewritten, numbers.txt deleted on the live filesystem"
  run mount "$fshadow" then --filesystem
  fsdir=$(find then -mindepth 1 -maxdepth 1 -type d | head -1)
  check "the shadow's filesystem has the old files, byte for byte" \
    same "$(sha256sum "$fsdir/notes.txt" "$fsdir/numbers.txt" | cut -c1-64)" "$before"
  check "the live filesystem has the new ones" same "$(cat live/notes.txt)" "the second version"
  if command -v nbdinfo >/dev/null; then
    step "11. Extents changed since the shadow, over NBD (nbdinfo --map)"
    nbdinfo --map="vss:changed:$fshadow" "$nbd" >changed.map
    head -8 changed.map
    say "(1 = changed since the shadow; $(wc -l <changed.map) extents in all)"
  fi
  run unmount then
  umount live
  losetup -d "$loop"
  run unmount fs.raw
else
  say "this machine cannot mount here (needs root, /dev/fuse and a loop device);"
  say "the NBD path does the same: qemu-io or a VM writes $nbd,"
  say "shadows come from 'vssctl shadow create $fsvol --context client-accessible-writers',"
  say "and 'nbdcopy nbd+unix:///shadow/<id>?socket=...' pulls one."
fi
kill "$vssd_pid" && wait "$vssd_pid" || true
vssd_pid=

echo
if ((failures > 0)); then
  echo "demo: $failures check(s) FAILED" >&2
  exit 1
fi
echo "demo: all checks passed."
