#!/usr/bin/env bash
# End-to-end test of `vssctl shadow export --format qcow2`, judged by
# qemu-img: every export passes `qemu-img check` (no errors, no leaks) and
# `qemu-img compare` finds it equal to the shadow (`shadow read`); a chain
# of a full export and two incrementals reads through qemu-img as the
# newest shadow; compressed exports are smaller on text-like data and still
# equal; bad combinations fail with one line and leave no file. Exports
# here skip the read-back through vss's own qcow2 driver (--no-verify):
# qcow2_verify_test.sh covers it.
#
# usage: qcow2_export_test.sh PATH/TO/vssctl
# shellcheck disable=SC2155
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
qemu_work qcow2-export

# qemu_equal RAW IMAGE: qemu-img compare finds the qcow2 chain equal to RAW.
qemu_equal() { qemu-img compare -q -f raw -F qcow2 "$1" "$2"; }
new_shadow() {
  v shadow create disk --json | jq -r '.shadows[0].shadow_id'
}
read_shadow() { v shadow read "$1" --offset 0 --length 64M --output "$2"; }

setup() {
  expect_ok "volume create" volume create disk.img --size 64M --name disk
  yes "volume shadow copy cluster backup restore incremental" | head -c 16M >text.bin
  expect_ok "write text" volume write disk --offset 1M --input text.bin
  head -c 2M /dev/urandom >noise.bin
  expect_ok "write noise" volume write disk --offset 40M --input noise.bin
  expect_ok "write the last bytes" volume write disk --offset 67108000 --pattern 0x5A --length 864
  s1=$(new_shadow)
  read_shadow "$s1" s1.raw
}

test_full_export() {
  expect_ok "full export" shadow export "$s1" full.qcow2 --no-verify --json
  ok "format from the name" eq "$(jq -r .format <<<"$out")" qcow2
  ok "full: qemu-img check" qemu_clean full.qcow2
  ok "full: qemu-img compare" qemu_equal s1.raw full.qcow2
  ok "full: only the data is stored" \
    eq "$(($(stat -c %s full.qcow2) < 20 * 1048576))" 1
  expect_ok "raw export" shadow export "$s1" full.img --json
  ok "raw export: raw" eq "$(jq -r .format <<<"$out")" raw
  ok "raw export equals the qcow2 export" qemu-img compare -q -f raw -F qcow2 full.img full.qcow2
  expect_ok "--format qcow2 on another name" shadow export "$s1" full.bin --format qcow2 --no-verify
  ok "--format qcow2: qemu-img check" qemu_clean full.bin
}

test_compressed_export() {
  local codec
  for codec in zlib zstd; do
    expect_ok "$codec export" shadow export "$s1" "z-$codec.qcow2" --compress --compression "$codec" \
      --no-verify --json
    ok "$codec: compressed clusters" eq "$(jq '.compressed_units > 0' <<<"$out")" true
    ok "$codec: qemu-img check" qemu_clean "z-$codec.qcow2"
    ok "$codec: qemu-img compare" qemu_equal s1.raw "z-$codec.qcow2"
    ok "$codec: smaller than uncompressed" \
      eq "$(($(stat -c %s "z-$codec.qcow2") * 2 < $(stat -c %s full.qcow2)))" 1
    ok "$codec: compression type" \
      contains "$(qemu-img info "z-$codec.qcow2")" "compression type: $codec"
  done
}

# full <- inc1 <- inc2, each written from the changed extents only.
test_incremental_chain() {
  # About 1 % of the volume changes, and a range is zeroed.
  expect_ok "change 1" volume write disk --offset 3M --pattern 0x11 --length 600K
  expect_ok "zero 1" volume write disk --offset 8M --pattern 0 --length 1M
  s2=$(new_shadow)
  read_shadow "$s2" s2.raw
  expect_ok "incremental 1" shadow export "$s2" inc1.qcow2 --since "$s1" --backing full.qcow2 \
    --no-verify --json
  local inc_data=$(jq .data_bytes <<<"$out")
  ok "inc1: zero clusters hide the backing's data" eq "$(jq '.zero_units > 0' <<<"$out")" true
  ok "inc1: qemu-img check" qemu_clean inc1.qcow2
  ok "inc1: backing file as given" contains "$(qemu-img info inc1.qcow2)" "backing file: full.qcow2"
  ok "inc1: chain equals shadow 2" eq "$(qemu_reads inc1.qcow2)" "$(sha <s2.raw)"
  ok "inc1: qemu-img compare" qemu_equal s2.raw inc1.qcow2
  ok "inc1: writes only the change (~1 % of the volume)" eq "$((inc_data <= 1600 * 1024))" 1
  ok "inc1: a small file" eq "$(($(stat -c %s inc1.qcow2) < 2 * 1048576))" 1

  expect_ok "change 2" volume write disk --offset 41M --pattern 0x22 --length 100000
  expect_ok "change 2 at the end" volume write disk --offset 67100000 --pattern 0x33 --length 4000
  s3=$(new_shadow)
  read_shadow "$s3" s3.raw
  mkdir sub
  # A relative backing name is relative to the output's directory.
  expect_ok "incremental 2 (compressed, in a subdirectory)" shadow export "$s3" sub/inc2.qcow2 \
    --since "$s2" --backing ../inc1.qcow2 --compress --no-verify
  ok "inc2: qemu-img check" qemu_clean sub/inc2.qcow2
  ok "inc2: chain equals shadow 3" eq "$(qemu_reads sub/inc2.qcow2)" "$(sha <s3.raw)"
  ok "inc2: qemu-img compare" qemu_equal s3.raw sub/inc2.qcow2
  ok "inc1 still reads as shadow 2" eq "$(qemu_reads inc1.qcow2)" "$(sha <s2.raw)"

  # A raw backing file works as well.
  expect_ok "incremental on a raw backing" shadow export "$s2" onraw.qcow2 --since "$s1" \
    --backing full.img --no-verify
  ok "on raw: backing format raw" contains "$(qemu-img info onraw.qcow2)" "backing file format: raw"
  ok "on raw: chain equals shadow 2" eq "$(qemu_reads onraw.qcow2)" "$(sha <s2.raw)"
}

test_bad_input() {
  expect_fail 2 "--since without --backing" shadow export "$s2" x.qcow2 --since "$s1"
  expect_fail 2 "--backing without --since" shadow export "$s2" x.qcow2 --backing full.qcow2
  expect_fail 2 "--compress with raw" shadow export "$s2" x.img --compress
  expect_fail 2 "--since with raw" shadow export "$s2" x.raw --format raw --since "$s1" \
    --backing full.img
  printf 'vhdxfile' >bad.vhdx && truncate -s 64M bad.vhdx
  expect_fail 1 "a VHDX backing file" shadow export "$s2" x.qcow2 --since "$s1" --backing bad.vhdx
  contains "$errline" "bad.vhdx" && contains "$errline" "VHDX" && pass || fail "VHDX: $errline"
  expect_fail 1 "a missing backing file" shadow export "$s2" x.qcow2 --since "$s1" --backing nope.qcow2
  truncate -s 1M short.img
  expect_fail 1 "a backing file of another size" shadow export "$s2" x.qcow2 --since "$s1" \
    --backing short.img
  expect_fail 1 "--since a newer shadow" shadow export "$s1" x.qcow2 --since "$s2" --backing full.qcow2
  expect_fail 1 "an existing output" shadow export "$s1" full.qcow2 --no-verify
  ok "no file left behind" test ! -e x.qcow2
}

for t in setup test_full_export test_compressed_export test_incremental_chain test_bad_input; do
  before=$failures
  $t
  ((failures == before)) && echo "ok   $t" || echo "FAIL $t"
done
echo "$checks checks, $failures failed"
((failures == 0))
