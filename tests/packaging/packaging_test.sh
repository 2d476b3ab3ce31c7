#!/usr/bin/env bash
# Packaging test: what a developer outside the tree does with vss.
#
#  1. The README's requester, writer and CMakeLists.txt (its fenced blocks
#     whose first line is "// file: NAME" or "# file: NAME") are exactly
#     tests/packaging/{requester.cc,writer.cc,consumer/CMakeLists.txt}.
#  2. `cmake --install` of this build into a temporary prefix.
#  3. The requester and the writer built against the installed package, once
#     with find_package(vss) and once with the README's pkg-config line.
#  4. Both builds run: a store and a volume made with vssctl, a full backup
#     and a restore in-process; the writer starts and stops cleanly.
#  4b. The requester library (vss/api/backup.h) from the package: the sample
#     tests/packaging/library/backup_files.cc backs a volume up into a
#     directory and restores it, in-process; the bytes are compared.
#  5. Through vssd, when vssd has its control socket (STORE/vssd.sock): the
#     writer subscribes through the daemon and the requester's backup and
#     restore reach it. Skipped, and said so, while vssd has no such socket.
#
# usage: packaging_test.sh SOURCE_DIR BUILD_DIR CMAKE CXX VSSCTL VSSD
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

if [[ $# -ne 6 ]]; then
  echo "usage: packaging_test.sh SOURCE_DIR BUILD_DIR CMAKE CXX VSSCTL VSSD" >&2
  exit 2
fi
SRC=$(realpath "$1")
BUILD=$(realpath "$2")
CMAKE=$3
CXX=$4
VSSCTL=$(realpath "$5")
VSSD=$(realpath "$6")
SAMPLES=$SRC/tests/packaging

make_work vss-packaging
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
}
at_exit cleanup

# run LOG COMMAND...: runs the command with its output in LOG; dies on failure.
run() {
  local log=$1; shift
  "$@" >"$log" 2>&1 || die "exit $?: $*" "$log"
}

# --- 1. The README shows exactly the sources that are built here. ----------
mkdir -p "$work/readme"
awk -v dir="$work/readme" '
  /^```/ { if (in_block) { in_block = 0; out = "" } else { in_block = 1; first = 1 }; next }
  in_block && first {
    first = 0
    if (match($0, /^(\/\/|#) file: /)) out = dir "/" substr($0, RLENGTH + 1)
  }
  in_block && out != "" { print > out }
' "$SRC/README.md"
for pair in requester.cc:requester.cc writer.cc:writer.cc CMakeLists.txt:consumer/CMakeLists.txt \
            backup_files.cc:library/backup_files.cc; do
  shown=$work/readme/${pair%%:*}
  source=$SAMPLES/${pair#*:}
  [[ -f $shown ]] || die "README.md has no code block starting with 'file: ${pair%%:*}'"
  diff -u "$source" "$shown" >"$work/diff.log" ||
    die "README.md's ${pair%%:*} differs from tests/packaging/${pair#*:}" "$work/diff.log"
done
pkg_line='c++ -std=c++20 -o requester requester.cc $(pkg-config --cflags --libs --static vss)'
grep -qxF -- "$pkg_line" "$SRC/README.md" || die "README.md lacks the line: $pkg_line"
echo "ok: README code blocks match tests/packaging"

# --- 2. Install. -----------------------------------------------------------
prefix=$work/prefix
run "$work/install.log" "$CMAKE" --install "$BUILD" --prefix "$prefix"
for f in include/vss/vss.h include/vss/api/service.h include/vss/base/guid.h include/vss/formats/block_device.h \
         include/vss/engine/store.h bin/vssctl bin/vssd; do
  [[ -e $prefix/$f ]] || die "not installed: $f" "$work/install.log"
done
pc_file=$(find "$prefix" -name vss.pc -path '*/pkgconfig/*' | head -n1)
config=$(find "$prefix" -name vssConfig.cmake | head -n1)
[[ -n $pc_file ]] || die "not installed: lib/pkgconfig/vss.pc" "$work/install.log"
[[ -n $config ]] || die "not installed: lib/cmake/vss/vssConfig.cmake" "$work/install.log"
[[ -e $prefix/include/vss/api/backup.h ]] || die "not installed: include/vss/api/backup.h" "$work/install.log"
# The daemon's side of vss-api is not part of the package.
for f in service_host.h thaw_guard.h daemon/service_host.h daemon/thaw_guard.h; do
  [[ -e $prefix/include/vss/api/$f ]] && die "installed, but internal to vssd: include/vss/api/$f"
done
ls "$(dirname "$pc_file")"/../libvss_api.* >/dev/null 2>&1 ||
  die "not installed: the vss_api library next to $pc_file" "$work/install.log"
echo "ok: installed into a temporary prefix"

# --- 3. Build the samples against the installed package. --------------------
mkdir -p "$work/with-cmake" "$work/with-pkgconfig"
cp "$SAMPLES/requester.cc" "$SAMPLES/writer.cc" "$SAMPLES/consumer/CMakeLists.txt" \
   "$work/with-cmake/"
cp "$SAMPLES/requester.cc" "$SAMPLES/writer.cc" "$work/with-pkgconfig/"
# find_package(vss) and pkg-config at the same time (two cores).
(
  run "$work/cmake-configure.log" "$CMAKE" -S "$work/with-cmake" -B "$work/with-cmake/build" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$CXX"
  run "$work/cmake-build.log" "$CMAKE" --build "$work/with-cmake/build"
  mkdir -p "$work/library"
  cp "$SAMPLES/library/CMakeLists.txt" "$SAMPLES/library/backup_files.cc" "$work/library/"
  run "$work/library-configure.log" "$CMAKE" -S "$work/library" -B "$work/library/build" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$CXX"
  run "$work/library-build.log" "$CMAKE" --build "$work/library/build"
) &
cmake_job=$!
(
  cd "$work/with-pkgconfig" || exit 1
  export PKG_CONFIG_PATH=$(dirname "$pc_file")
  # The README's line, with this build's compiler for c++.
  flags=$(pkg-config --cflags --libs --static vss) || die "pkg-config --static vss failed"
  for prog in requester writer; do
    # shellcheck disable=SC2086  # flags are words
    run "$work/pc-$prog.log" "$CXX" -std=c++20 -o $prog $prog.cc $flags
  done
) &
pc_job=$!
wait "$cmake_job" || exit 1
wait "$pc_job" || exit 1
echo "ok: built requester and writer with find_package(vss) and with pkg-config"

# --- 4. Run them in-process. -------------------------------------------------
store=$work/store
run "$work/vssctl.log" "$VSSCTL" --store "$store" volume create "$work/disk.img" --size 64M --name disk
run "$work/vssctl.log" "$VSSCTL" --store "$store" volume write disk --offset 0 --pattern 0xab --length 1M
guid='[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}'
for kind in with-cmake/build with-pkgconfig; do
  bin=$work/$kind
  bcd=$work/backup-${kind%%/*}.json
  run "$work/backup.log" "$bin/requester" backup "$store" disk "$bcd"
  grep -q "^using in-process on " "$work/backup.log" || die "$kind: backup not in-process" "$work/backup.log"
  grep -q "^shadow $guid of disk in set $guid at " "$work/backup.log" ||
    die "$kind: backup printed no shadow of disk" "$work/backup.log"
  grep -q '"snapshot_set_id": *"[0-9a-f]' "$bcd" || die "$kind: saved document has no set id" "$bcd"
  # A backup-context shadow goes away with its requester (auto-release).
  run "$work/list.log" "$VSSCTL" --store "$store" --json shadow list
  grep -q "$(sed -n "s/^shadow \($guid\) .*/\1/p" "$work/backup.log")" "$work/list.log" &&
    die "$kind: the backup's shadow outlived its requester" "$work/list.log"
  run "$work/restore.log" "$bin/requester" restore "$store" "$bcd"
  grep -q "^restored 0 component(s) from " "$work/restore.log" ||
    die "$kind: restore did not finish" "$work/restore.log"

  # Bad input: one line naming the wrong thing, non-zero exit.
  "$bin/requester" backup "$store" no-such-volume "$work/x.json" >/dev/null 2>"$work/err.log" &&
    die "$kind: backup of an unknown volume succeeded"
  [[ $(wc -l <"$work/err.log") -eq 1 ]] && grep -q no-such-volume "$work/err.log" ||
    die "$kind: unknown volume: want one line naming it" "$work/err.log"
  "$bin/requester" restore "$store" "$work/missing.json" >/dev/null 2>"$work/err.log" &&
    die "$kind: restore from a missing file succeeded"
  grep -q missing.json "$work/err.log" || die "$kind: missing file not named" "$work/err.log"
  "$bin/requester" >/dev/null 2>&1
  [[ $? -eq 2 ]] || die "$kind: requester without arguments: want exit 2"

  # The writer subscribes in-process and stops on SIGTERM.
  # The log is emptied here, not by the child's redirection: otherwise the
  # wait below could read the last round's "subscribed" line before the new
  # writer has even started, and signal it too early.
  : >"$work/writer.log"
  "$bin/writer" "$store" disk/data >>"$work/writer.log" 2>&1 &
  wpid=$!
  pids=("$wpid")
  wait_for_line "$work/writer.log" "^writer: subscribed, in-process on " 120 ||
    die "$kind: writer did not subscribe" "$work/writer.log"
  kill -TERM "$wpid"
  wait "$wpid" || die "$kind: writer exit $? on SIGTERM" "$work/writer.log"
  pids=()
  grep -q "^writer: stopped" "$work/writer.log" || die "$kind: writer did not stop" "$work/writer.log"
  echo "ok: $kind: in-process backup, restore and writer"
done

# --- 4b. The requester library from the package. ---------------------------
lib_bin=$work/library/build/backup_files
run "$work/vssctl.log" "$VSSCTL" --store "$store" volume write disk --offset 8M --pattern 0x5c --length 2M
"$VSSCTL" --store "$store" volume read disk --offset 0 --length 64M >"$work/disk.before" ||
  die "reading the volume before the backup"
run "$work/lib-backup.log" "$lib_bin" backup "$store" "$work/lib-backup" disk
grep -q "^backed up disk to $work/lib-backup/disk.img (67108864 bytes, xxh3-128 [0-9a-f]\{32\})" \
  "$work/lib-backup.log" || die "backup_files: no image reported" "$work/lib-backup.log"
cmp -s "$work/disk.before" "$work/lib-backup/disk.img" ||
  die "backup_files: the image differs from the volume"
[[ -f $work/lib-backup/manifest.json && -f $work/lib-backup/backup.json ]] ||
  die "backup_files: no manifest.json or backup.json"
run "$work/vssctl.log" "$VSSCTL" --store "$store" volume write disk --offset 0 --pattern 0x11 --length 16M
run "$work/lib-restore.log" "$lib_bin" restore "$store" "$work/lib-backup"
grep -q "^restored disk from $work/lib-backup/disk.img" "$work/lib-restore.log" ||
  die "backup_files: restore not reported" "$work/lib-restore.log"
"$VSSCTL" --store "$store" volume read disk --offset 0 --length 64M | cmp -s - "$work/disk.before" ||
  die "backup_files: the restored volume differs from the backup"
"$lib_bin" restore "$store" "$work/lib-backup/nowhere" >/dev/null 2>"$work/err.log" &&
  die "backup_files: restore from a missing directory succeeded"
grep -q "nowhere" "$work/err.log" || die "backup_files: missing directory not named" "$work/err.log"
echo "ok: the requester library's Backup and Restore from the installed package"

# --- 5. Through vssd, when it has a control socket. ---------------------------
"$VSSD" --store "$store" >"$work/vssd.log" 2>&1 &
vssd_pid=$!
pids+=("$vssd_pid")
wait_for_vssd "$work/vssd.log" "$vssd_pid" 0 120
if [[ ! -S $store/vssd.sock ]]; then
  kill -TERM "$vssd_pid" 2>/dev/null
  wait "$vssd_pid" 2>/dev/null
  echo "SKIP daemon part: vssd has no control socket yet"
  exit 0
fi
bin=$work/with-cmake/build
: >"$work/writer.log"
"$bin/writer" "$store" disk/data >>"$work/writer.log" 2>&1 &
wpid=$!
pids+=("$wpid")
wait_for_line "$work/writer.log" "^writer: subscribed, vssd" 120 ||
  die "writer did not subscribe through vssd" "$work/writer.log"
run "$work/backup.log" "$bin/requester" backup "$store" disk "$work/backup-vssd.json"
grep -q "^using vssd" "$work/backup.log" || die "requester did not use vssd" "$work/backup.log"
grep -q "^writer sample-writer" "$work/backup.log" &&
  grep -q "^  component sample/data" "$work/backup.log" ||
  die "the backup through vssd did not show the writer's component" "$work/backup.log"
grep -q "^shadow $guid of disk" "$work/backup.log" || die "no shadow through vssd" "$work/backup.log"
for event in "Freeze" "Thaw" "BackupComplete"; do
  grep -q "^writer: $event" "$work/writer.log" || die "writer got no $event" "$work/writer.log"
done
run "$work/restore.log" "$bin/requester" restore "$store" "$work/backup-vssd.json"
grep -q "^restored 1 component(s)" "$work/restore.log" || die "restore through vssd" "$work/restore.log"
wait_for_line "$work/writer.log" "^writer: PostRestore" 120 || die "writer got no PostRestore" "$work/writer.log"
kill -TERM "$wpid"
wait "$wpid" || die "writer exit $? on SIGTERM" "$work/writer.log"
kill -TERM "$vssd_pid"
wait "$vssd_pid" || die "vssd exit $? on SIGTERM" "$work/vssd.log"
pids=()
echo "ok: backup and restore through vssd reach the writer"
