#!/usr/bin/env bash
# End-to-end test of what reads qcow2 exports back through vss's own qcow2
# driver: `shadow export` verified (without --no-verify), `backup --format
# qcow2` full + two incrementals (each read back by the driver before the
# manifest vouches for it), and `restore` from every point of that chain
# equal to the volume at that point. qemu-img judges the backup images too.
#
# usage: qcow2_backup_test.sh PATH/TO/vssctl
# shellcheck disable=SC2155
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
qemu_work qcow2-backup

volume_sha() { v volume read disk --offset 0 --length 32M | sha; }
# backup_qcow2 DIR [BASE]: a qcow2 backup whose shadows are kept.
backup_qcow2() {
  local dir=$1 base=${2:-}
  if [[ -n $base ]]; then
    expect_ok "backup $dir" backup disk --to "$dir" --format qcow2 --context app-rollback \
      --keep-shadows --type incremental --base "$base" --json
  else
    expect_ok "backup $dir" backup disk --to "$dir" --format qcow2 --context app-rollback \
      --keep-shadows --json
  fi
}

setup() {
  expect_ok "volume create" volume create disk.img --size 32M --name disk
  yes "the quick brown fox restores the backup" | head -c 6M >text.bin
  expect_ok "write" volume write disk --offset 512K --input text.bin
}

test_verified_export() {
  local s=$(v shadow create disk --json | jq -r '.shadows[0].shadow_id')
  expect_ok "verified export" shadow export "$s" verified.qcow2 --json
  ok "export: verified" eq "$(jq .verified <<<"$out")" true
  ok "export: verified the data" eq "$(jq '.verified_bytes >= 6 * 1048576' <<<"$out")" true
  expect_ok "write more" volume write disk --offset 20M --pattern 0x44 --length 300K
  local s2=$(v shadow create disk --json | jq -r '.shadows[0].shadow_id')
  expect_ok "verified incremental" shadow export "$s2" verified-inc.qcow2 --since "$s" \
    --backing verified.qcow2 --json
  ok "incremental: verified the changed clusters" eq "$(jq '.verified_bytes > 0' <<<"$out")" true
  ok "incremental: qemu-img check" qemu_clean verified-inc.qcow2
  ok "incremental: equals the shadow" \
    eq "$(qemu_reads verified-inc.qcow2)" "$(v shadow read "$s2" --offset 0 --length 32M | sha)"
}

test_backup_chain_and_restore() {
  local sha0 sha1 sha2
  sha0=$(volume_sha)
  backup_qcow2 bk0
  ok "full: manifest version 3" eq "$(jq .version bk0/manifest.json)" 3
  ok "full: format qcow2" eq "$(jq -r '.volumes[0].format' bk0/manifest.json)" qcow2
  ok "full: qemu-img check" qemu_clean bk0/disk.qcow2
  ok "full: reads as the volume" eq "$(qemu_reads bk0/disk.qcow2)" "$sha0"

  expect_ok "change 1" volume write disk --offset 4M --pattern 0x61 --length 200K
  expect_ok "zero 1" volume write disk --offset 1M --pattern 0 --length 128K
  sha1=$(volume_sha)
  backup_qcow2 bk1 bk0
  ok "inc1: backing is the base's image" eq "$(jq -r '.volumes[0].backing' bk1/manifest.json)" \
    ../bk0/disk.qcow2
  ok "inc1: qemu-img check" qemu_clean bk1/disk.qcow2
  ok "inc1: reads as the volume" eq "$(qemu_reads bk1/disk.qcow2)" "$sha1"
  ok "inc1: holds only the change" eq "$(($(stat -c %s bk1/disk.qcow2) < 1048576))" 1

  expect_ok "change 2" volume write disk --offset 30M --pattern 0x62 --length 64K
  sha2=$(volume_sha)
  backup_qcow2 bk2 bk1
  ok "inc2: chain of two" eq "$(jq -c '.volumes[0].chain' bk2/manifest.json)" \
    '["../bk1/disk.qcow2","../bk0/disk.qcow2"]'
  ok "inc2: reads as the volume" eq "$(qemu_reads bk2/disk.qcow2)" "$sha2"

  # Restore from each point of the chain, newest last.
  expect_ok "restore bk0" restore bk0
  ok "restore bk0: the volume at the full backup" eq "$(volume_sha)" "$sha0"
  expect_ok "restore bk2" restore bk2
  ok "restore bk2: the volume at the second incremental" eq "$(volume_sha)" "$sha2"
  expect_ok "restore bk1" restore bk1
  ok "restore bk1: the volume at the first incremental" eq "$(volume_sha)" "$sha1"

  # A damaged link of the chain is found before a byte is written.
  expect_ok "write after restore" volume write disk --offset 0 --pattern 0x77 --length 4K
  local now=$(volume_sha)
  # Cluster 1 holds the full backup's first data.
  printf 'DAMAGE' | dd of=bk0/disk.qcow2 bs=1 seek=$((65536 + 100)) conv=notrunc status=none
  expect_fail 1 "restore through a damaged base" restore bk2
  ok "damaged: says the image" contains "$errline" "disk.qcow2"
  ok "damaged: the volume untouched" eq "$(volume_sha)" "$now"
}

test_incremental_needs_kept_shadows() {
  expect_ok "backup without kept shadows" backup disk --to nokeep --format qcow2
  expect_fail 1 "incremental on it" backup disk --to nokeep-inc --format qcow2 \
    --type incremental --base nokeep
  ok "says --keep-shadows" contains "$errline" "--keep-shadows"
  ok "no directory left" test ! -e nokeep-inc
}

for t in setup test_verified_export test_backup_chain_and_restore \
  test_incremental_needs_kept_shadows; do
  before=$failures
  $t
  ((failures == before)) && echo "ok   $t" || echo "FAIL $t"
done
echo "$checks checks, $failures failed"
((failures == 0))
