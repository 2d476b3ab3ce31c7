#!/usr/bin/env bash
# A qcow2 guest disk as a volume, as a KVM user keeps one: registered with
# `volume add` (the format from its header), written by the guest through
# vssd's live export, shadows taken through vssd and read back as they
# were, one mounted with --filesystem and its files read, `image info|
# check`, `volume create --format qcow2`, revert. qemu-img and qemu-io are
# the judges. (Exports and backup chains: qcow2_export_test.sh and
# qcow2_backup_test.sh.)
#
# usage: qcow2_volume_test.sh PATH/TO/vssctl PATH/TO/vssd
# The --filesystem mount needs root, /dev/fuse and loop devices: skipped
# otherwise (the rest runs).
# shellcheck disable=SC2016  # eval strings
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
for t in jq qemu-img qemu-io mkfs.ext4; do
  command -v "$t" >/dev/null || skip "$t is missing (tools/dev.sh installs it)"
done
make_work qcow2-e2e
cd "$work" || exit 1
export VSS_STORE=$work/store
unset XDG_DATA_HOME
state() {
  { v volume list --json; v shadow list --json; } 2>/dev/null
  sha256sum ./*.qcow2 2>/dev/null
}

vssd_pid=
# Ready once vssd says "control socket" (its NBD listener is up before;
# the socket files exist earlier than either is ready).
start_vssd() {
  local before
  before=$(control_socket_lines vssd.log)
  "$VSSD" --store "$VSS_STORE" --no-fsfreeze 2>>vssd.log &
  vssd_pid=$!
  wait_for_vssd vssd.log "$vssd_pid" "${before:-0}" 120 || die "vssd did not start" vssd.log
}
stop_vssd() { stop_pid "$vssd_pid"; vssd_pid=; }
at_exit stop_vssd
live() { echo "nbd+unix:///live/web?socket=$VSS_STORE/nbd.sock"; }
# guest_write OFFSET LENGTH BYTE: the guest writes through vssd's live export.
guest_write() {
  qemu-io -f raw -c "write -P $3 $1 $2" "$(live)" >/dev/null || fail "guest write $*"
}

# An ext4 guest disk with files, as qcow2 (64 KiB clusters).
make_guest() {
  mkdir -p files/docs
  seq 1 20000 >files/docs/numbers.txt
  head -c 700K /dev/urandom >files/blob.bin
  (cd files && find . -type f -print0 | sort -z | xargs -0 sha256sum) >files.manifest
  truncate -s 64M guest.raw
  mkfs.ext4 -q -F -d files guest.raw || die "mkfs.ext4 -d failed"
  qemu-img convert -q -f raw -O qcow2 guest.raw web.qcow2 || die "qemu-img convert failed"
}

test_add_and_info() {
  make_guest
  expect_ok "volume add of a qcow2" volume add web.qcow2 --name web --json
  ok "add: format qcow2" eq "$(jq -r .format <<<"$out")" qcow2
  ok "add: guest size" eq "$(jq -r .size <<<"$out")" 67108864
  ok "volume reads as the guest sees it" \
    eq "$(v volume read web --offset 0 --length 64M | sha)" "$(sha <guest.raw)"
  expect_ok "image info --json" image info web.qcow2 --json
  ok "info: format" eq "$(jq -r .format <<<"$out")" qcow2
  ok "info: virtual size" eq "$(jq -r '."virtual-size"' <<<"$out")" 67108864
  ok "info: cluster size" eq "$(jq -r '."cluster-size"' <<<"$out")" 65536
  expect_ok "image check" image check web.qcow2 --json
  ok "check: clean" eq "$(jq -c '[.corruptions, .leaks]' <<<"$out")" "[0,0]"
  expect_fail 1 "image info of a missing file" image info nothing.qcow2
}

test_shadows_through_vssd() {
  start_vssd
  guest_write 32M 1M 0x11
  expect_ok "shadow create through vssd" shadow create web --json
  s1=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  cp guest.raw s1.expect
  qemu-io -f raw -c "write -P 0x11 32M 1M" s1.expect >/dev/null
  guest_write 40M 512K 0x22
  guest_write 33M 4K 0x33
  expect_ok "second shadow" shadow create web --json
  s2=$(jq -r '.shadows[0].shadow_id' <<<"$out")
  cp s1.expect s2.expect
  qemu-io -f raw -c "write -P 0x22 40M 512K" -c "write -P 0x33 33M 4K" s2.expect >/dev/null
  guest_write 48M 1M 0x44  # the live volume moves on
  stop_vssd
  ok "the qcow2 passes qemu-img check after vssd stopped" qemu-img check -q web.qcow2
  ok "shadow 1 reads as then" eq "$(v shadow read "$s1" --offset 0 --length 64M | sha)" "$(sha <s1.expect)"
  ok "shadow 2 reads as then" eq "$(v shadow read "$s2" --offset 0 --length 64M | sha)" "$(sha <s2.expect)"
  ok "qemu-img reads the guest's writes in web.qcow2" \
    qemu-io -f qcow2 -c "read -P 0x44 48M 1M" web.qcow2
}

test_mount_filesystem() {
  if [[ $EUID -ne 0 || ! -c /dev/fuse ]] || ! losetup -f >/dev/null 2>&1; then
    echo "note: --filesystem mount skipped (needs root, /dev/fuse and loop devices)"
    return
  fi
  mkdir -p m
  expect_ok "mount shadow --filesystem" mount "$s1" m --filesystem --json
  ok "mount: ext4 found" eq "$(jq -r '.files[0].filesystem' <<<"$out")" ext4
  local name
  name=$(jq -r '.files[0].name' <<<"$out")
  ok "mount: the guest's files, every byte" \
    eq "$(cd "m/${name%.img}" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum)" \
    "$(cat files.manifest)"
  expect_ok "unmount" unmount m
}

test_volume_create_qcow2() {
  expect_ok "volume create --format qcow2" \
    volume create new.qcow2 --size 20M --format qcow2 --cluster-size 4K --name new --json
  ok "create: format" eq "$(jq -r .format <<<"$out")" qcow2
  ok "create: qemu-img sees a 4K-cluster qcow2" \
    eq "$(qemu-img info --output=json new.qcow2 | jq -c '[.format, ."cluster-size", ."virtual-size"]')" \
    '["qcow2",4096,20971520]'
  head -c 300K /dev/urandom >in.bin
  expect_ok "write into the new qcow2" volume write new --offset 1M --input in.bin
  ok "qemu-img check after the write" qemu-img check -q new.qcow2
  truncate -s 20M want.raw
  dd if=in.bin of=want.raw bs=1M seek=1 conv=notrunc status=none
  ok "qemu-img reads what vss wrote" qemu-img compare -q -F raw new.qcow2 want.raw
  expect_fail 1 "volume create --cluster-size 3K" volume create bad.qcow2 --size 1M --format qcow2 --cluster-size 3K
  ok "refused create leaves no file" test ! -e bad.qcow2
}

test_revert() {
  expect_ok "shadow revert to shadow 1" shadow revert "$s1"
  ok "reverted: the volume reads as shadow 1" \
    eq "$(v volume read web --offset 0 --length 64M | sha)" "$(sha <s1.expect)"
  ok "reverted: qemu-img reads the same" qemu-img compare -q -F raw web.qcow2 s1.expect
  ok "reverted: qemu-img check" qemu-img check -q web.qcow2
}

test_add_and_info
test_shadows_through_vssd
test_mount_filesystem
test_volume_create_qcow2
test_revert
echo "qcow2_volume_test: $checks checks, $failures failed"
((failures == 0))
