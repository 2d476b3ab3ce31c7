#!/usr/bin/env bash
# nbd_bench.sh: vssd's NBD exports against qemu-storage-daemon, driven by fio
# over NBD on Unix sockets, in one run.
#
#   tests/bench/nbd_bench.sh [--size 1G] [--dir DIR] [--runs 3] [--seed N]
#                            [--build DIR] [--cap SECONDS] [--qemu-env VAR=VALUE]...
#
# --build: the CMake build holding tools/vssd/vssd and tools/vssctl (default
# $VSS_BUILD, else build/). --qemu-env: environment for both
# qemu-storage-daemon instances, e.g. MALLOC_MMAP_THRESHOLD_=67108864 (glibc
# then reuses QEMU's per-request 1 MiB buffers instead of mmap/munmap-ing
# each one, which costs a page fault per 4 KiB on some VMs); off by default,
# printed with the parameters when used.
#
# Three servers, each on its own Unix socket, each over a byte-identical copy
# of one pre-filled image (written once per invocation by fio with
# buffer_compress_percentage=50, so about half of every 4 KiB compresses):
#
#   raw    qemu-storage-daemon: --blockdev file + raw, one writable export.
#          Writes and reads go to that export (no snapshot at all).
#   qemu   qemu-storage-daemon doing QEMU image fleecing: a copy-before-write
#          node (file = the raw node, target = a qcow2 temporary image whose
#          backing is the raw node) and a snapshot-access node over it.
#          Writes go to the cbw node's export, snapshot reads to the
#          snapshot-access export.
#   ours   vssd --store S --nbd unix:SOCK over a volume registered with
#          `vssctl volume add` and a shadow taken with `vssctl shadow create`
#          (default context: client-accessible, persistent) before any
#          client connects. Writes go to live/v, snapshot reads to
#          shadow/<id>.
#
# Passes (fio ioengine=nbd, direct=1, iodepth=8, one connection):
#   seq session (fresh image, temp image / store + shadow):
#     1. first sequential writes: bs=1M over the whole device, end_fsync=1
#        (the final NBD flush is inside the timed figure); every cluster /
#        chunk is written for the first time since the snapshot.
#     2. rewrites: the same pass again (nothing left to copy).
#     3. shadow reads: bs=1M sequential over the whole snapshot export, now
#        entirely preserved data (raw: its own export).
#   rand session (fresh again):
#     4. first random 4 KiB writes: one 4 KiB write at the start of every
#        64 KiB region, regions in a seeded random order (fio read_iolog
#        replay, no stalls), end_fsync=1. 64 KiB is both our chunk size and
#        the cbw/qcow2 cluster size, so every write triggers one copy on both
#        snapshotting sides.
#   Every pass is size-bounded, with a runtime cap (--cap, default 90 s)
#   that only matters on a very slow machine (a capped pass is flagged).
#
# Each run does every session for every server, the servers' order rotating
# from run to run; the table gives medians over --runs, MiB/s (seq) or IOPS
# (random). Page cache: all three start from a just-copied, fsync'ed image
# (warm cache); files are buffered on every server side (qemu's default
# cache.direct=off, vssd's pwrite), durability comes from the NBD flush.
# Checks (untimed): after the first-write pass the size of QEMU's temporary
# image and of our diff area are printed; after the seq session of run 1 the
# snapshot export is compared with the pre-filled image (qemu-img compare).
#
# Everything is created under a new directory inside --dir (default
# /var/tmp) and removed at exit, every server stopped, also on error or ^C.
set -euo pipefail

BENCH_NAME=nbd_bench
SIZE=1G
BASE_DIR=/var/tmp
RUNS=3
SEED=20240605
CAP=90
QEMU_ENV=()
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=bench_lib.sh
source "$ROOT/tests/bench/bench_lib.sh"
BUILD=${VSS_BUILD:-$ROOT/build}

die() { echo "nbd_bench: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 [--size 1G] [--dir DIR] [--runs 3] [--seed N] [--build DIR] [--cap SECONDS] [--qemu-env VAR=VALUE]..."
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --size) SIZE=${2:?--size needs a value}; shift 2 ;;
    --dir) BASE_DIR=${2:?--dir needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
    --build) BUILD=${2:?--build needs a value}; shift 2 ;;
    --cap) CAP=${2:?--cap needs a value}; shift 2 ;;
    --qemu-env)
      [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || die "--qemu-env needs VAR=VALUE"
      QEMU_ENV+=("$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

for t in fio qemu-storage-daemon qemu-img qemu-io nbdinfo jq numfmt awk; do
  command -v "$t" >/dev/null || die "$t is missing (Debian: fio, qemu-utils, qemu-system-common, libnbd-bin, jq)"
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs $RUNS: expected a positive integer"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed $SEED: expected a non-negative integer"
[[ $CAP =~ ^[1-9][0-9]*$ ]] || die "--cap $CAP: expected seconds"
SIZE_BYTES=$(numfmt --from=iec "${SIZE%iB}" 2>/dev/null) ||
  die "--size $SIZE: expected bytes or a K/M/G/T suffix"
CHUNK=65536
(( SIZE_BYTES >= 16 * 1048576 && SIZE_BYTES % 1048576 == 0 )) ||
  die "--size $SIZE: must be a multiple of 1M and at least 16M"

# ---- tools -------------------------------------------------------------------
VSSD=$BUILD/tools/vssd/vssd
VSSCTL=$BUILD/tools/vssctl
[[ -x $VSSD ]] || die "$VSSD is missing (cmake --build $BUILD --target vssd, or pass --build DIR)"
[[ -x $VSSCTL ]] || die "$VSSCTL is missing (cmake --build $BUILD --target vssctl, or pass --build DIR)"
fio --enghelp=nbd >/dev/null 2>&1 || die "fio was built without the nbd ioengine"

# ---- scratch space and cleanup ----------------------------------------------
mkdir -p "$BASE_DIR" || die "cannot create $BASE_DIR"
WORK=$(mktemp -d "$BASE_DIR/nbd-bench.XXXXXX") || die "cannot create a directory in $BASE_DIR"
SOCK=$WORK/s  # one server at a time
(( ${#SOCK} < 100 )) || { rm -rf "$WORK"; die "--dir $BASE_DIR: path too long for a Unix socket"; }
SERVER_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOG=$WORK/log
mkdir -p "$LOG"

# ---- servers -----------------------------------------------------------------
# start_server SYS IMG: starts SYS over IMG and sets URI_W, URI_R, SERVER_PID,
# INFO_PATH (what grows on copy-before-write; empty for raw).

start_server() {
  local sys=$1 img=$2 d
  d=$(dirname "$img")
  SERVER_SYS=$sys
  rm -f "$SOCK"
  case $sys in
    raw)
      env "${QEMU_ENV[@]}" qemu-storage-daemon \
        --blockdev "driver=file,filename=$img,node-name=src-file" \
        --blockdev "driver=raw,file=src-file,node-name=src" \
        --nbd-server "addr.type=unix,addr.path=$SOCK" \
        --export "type=nbd,id=e0,node-name=src,name=raw,writable=on" \
        >>"$LOG/raw.log" 2>&1 &
      SERVER_PID=$!
      URI_W="nbd+unix:///raw?socket=$SOCK"
      URI_R=$URI_W
      INFO_PATH=
      wait_ready "$URI_W" "$LOG/raw.log"
      ;;
    qemu)
      qemu-img create -q -f qcow2 -b "$img" -F raw "$d/fleece.qcow2" ||
        die "qemu-img create of the fleecing image failed"
      env "${QEMU_ENV[@]}" qemu-storage-daemon \
        --blockdev "driver=file,filename=$img,node-name=src-file" \
        --blockdev "driver=raw,file=src-file,node-name=src" \
        --blockdev "driver=file,filename=$d/fleece.qcow2,node-name=tmp-file" \
        --blockdev '{"driver":"qcow2","node-name":"tmp","file":"tmp-file","backing":"src"}' \
        --blockdev '{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tmp"}' \
        --blockdev '{"driver":"snapshot-access","node-name":"acc","file":"cbw"}' \
        --nbd-server "addr.type=unix,addr.path=$SOCK" \
        --export "type=nbd,id=e0,node-name=cbw,name=live,writable=on" \
        --export "type=nbd,id=e1,node-name=acc,name=snap" \
        >>"$LOG/qemu.log" 2>&1 &
      SERVER_PID=$!
      URI_W="nbd+unix:///live?socket=$SOCK"
      URI_R="nbd+unix:///snap?socket=$SOCK"
      INFO_PATH=$d/fleece.qcow2
      wait_ready "$URI_W" "$LOG/qemu.log"
      wait_ready "$URI_R" "$LOG/qemu.log"
      ;;
    ours)
      local store=$d/store sid
      "$VSSCTL" --store "$store" volume add "$img" --name v >>"$LOG/ours.log" 2>&1 ||
        fail_with_log "vssctl volume add failed" "$LOG/ours.log"
      sid=$("$VSSCTL" --store "$store" --json shadow create v 2>>"$LOG/ours.log" |
        jq -r '.shadows[0].shadow_id') || fail_with_log "vssctl shadow create failed" "$LOG/ours.log"
      [[ $sid =~ ^[0-9a-f-]{36}$ ]] || fail_with_log "vssctl shadow create gave no shadow id" "$LOG/ours.log"
      "$VSSD" --store "$store" --nbd "unix:$SOCK" >>"$LOG/ours.log" 2>&1 &
      SERVER_PID=$!
      URI_W="nbd+unix:///live/v?socket=$SOCK"
      URI_R="nbd+unix:///shadow/$sid?socket=$SOCK"
      INFO_PATH=$store
      wait_ready "$URI_W" "$LOG/ours.log"
      wait_ready "$URI_R" "$LOG/ours.log"
      ;;
  esac
}

# fresh_image SYS: a new directory with a synced copy of the pre-filled image.
fresh_image() {
  local d=$WORK/$1
  rm -rf "$d"
  mkdir -p "$d"
  cp --sparse=never "$WORK/golden.img" "$d/disk.img"
  sync "$d/disk.img"
  echo "$d/disk.img"
}

# ---- fio ---------------------------------------------------------------------
# run_fio OUT.json DIR(read|write) METRIC(bw|iops) EXPECTED fio-args...:
# EXPECTED is bytes (bw) or requests (iops). Prints the figure (MiB/s or
# IOPS) and the server's CPU seconds (user + system, every thread) during the
# pass; warns when the pass hit the runtime cap.
FIO_COMMON=(--ioengine=nbd --direct=1 --iodepth=8 --numjobs=1
  --randseed="$SEED" --buffer_compress_percentage=50 --buffer_compress_chunk=4k
  --runtime="$CAP" --output-format=json)

RESULTS=$WORK/results  # lines: workload sys run value server-cpu-seconds
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

seq_session() {  # sys run
  local sys=$1 run=$2 img v
  img=$(fresh_image "$sys")
  start_server "$sys" "$img"
  local grown_before=0
  [[ -n $INFO_PATH ]] && grown_before=$(alloc_mib "$INFO_PATH")
  v=$(run_fio "$WORK/f.json" write bw "$SIZE_BYTES" --name=seq_first --uri="$URI_W" --rw=write --bs=1M --end_fsync=1)
  record seq_first "$sys" "$run" "$v"
  v=${v% *}
  local note=""
  if [[ -n $INFO_PATH ]]; then
    local grown
    grown=$(alloc_mib "$INFO_PATH")
    note=" (copied before write: $sys $(basename "$INFO_PATH") ${grown_before} -> ${grown} MiB)"
    (( grown > grown_before )) || fail_with_log "$sys: nothing was copied before the first writes" "$LOG/$sys.log"
  fi
  echo "  run $run $sys: first seq writes $v MiB/s$note" >&2
  v=$(run_fio "$WORK/f.json" write bw "$SIZE_BYTES" --name=seq_rewrite --uri="$URI_W" --rw=write --bs=1M --end_fsync=1)
  record seq_rewrite "$sys" "$run" "$v"
  v=${v% *}
  echo "  run $run $sys: rewrites $v MiB/s" >&2
  v=$(run_fio "$WORK/f.json" read bw "$SIZE_BYTES" --name=shadow_read --uri="$URI_R" --rw=read --bs=1M)
  record shadow_read "$sys" "$run" "$v"
  v=${v% *}
  echo "  run $run $sys: snapshot reads $v MiB/s" >&2
  if [[ $run == 1 && $sys != raw ]]; then
    # The snapshot must still be the pre-filled image, every byte.
    qemu-img compare -q -f raw -F raw "$URI_R" "$WORK/golden.img" ||
      fail_with_log "$sys: the snapshot export differs from the pre-filled image" "$LOG/$sys.log"
    qemu-img compare -q -f raw -F raw "$URI_W" "$WORK/golden.img" 2>/dev/null &&
      fail_with_log "$sys: the live export still equals the pre-filled image" "$LOG/$sys.log"
    echo "  run $run $sys: snapshot export == pre-filled image, live export changed: ok" >&2
  fi
  stop_server
  rm -rf "${WORK:?}/$sys"
}

rand_session() {  # sys run
  local sys=$1 run=$2 img v
  img=$(fresh_image "$sys")
  start_server "$sys" "$img"
  v=$(run_fio "$WORK/f.json" write iops "$((SIZE_BYTES / CHUNK))" --name=rand4k_first --uri="$URI_W" \
    --read_iolog="$WORK/rand.iolog" --replay_no_stall=1 --end_fsync=1)
  record rand4k_first "$sys" "$run" "$v"
  v=${v% *}
  echo "  run $run $sys: first random 4K writes $v IOPS" >&2
  stop_server
  rm -rf "${WORK:?}/$sys"
}

# ---- set-up ------------------------------------------------------------------
echo "nbd_bench: size=$SIZE ($SIZE_BYTES bytes) runs=$RUNS seed=$SEED cap=${CAP}s dir=$WORK" >&2
echo "nbd_bench: fio $(fio --version), $(qemu-storage-daemon --version | head -1), vssd from $BUILD" >&2
echo "nbd_bench: fio: ioengine=nbd direct=1 iodepth=8 numjobs=1 buffer_compress_percentage=50 buffer_compress_chunk=4k randseed=$SEED" >&2
echo "nbd_bench: qemu-storage-daemon environment: ${QEMU_ENV[*]:-(unchanged)}" >&2
echo "nbd_bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# The pre-filled image: 1 MiB writes of half-compressible data.
fio --name=prefill --ioengine=psync --filename="$WORK/golden.img" --size="$SIZE_BYTES" \
  --rw=write --bs=1M --randseed="$SEED" --buffer_compress_percentage=50 \
  --buffer_compress_chunk=4k --refill_buffers --end_fsync=1 \
  --output="$LOG/prefill.txt" >/dev/null 2>>"$LOG/fio.log" ||
  fail_with_log "fio could not write the pre-filled image" "$LOG/fio.log"

# One 4 KiB write at the start of every 64 KiB region, regions in a random
# order drawn from the seed (fio iolog v2; the nbd engine's file is "nbd").
awk -v n=$((SIZE_BYTES / CHUNK)) -v chunk=$CHUNK -v seed="$SEED" 'BEGIN {
  srand(seed)
  for (i = 0; i < n; i++) a[i] = i
  for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = a[i]; a[i] = a[j]; a[j] = t }
  print "fio version 2 iolog"; print "nbd add"; print "nbd open"
  for (i = 0; i < n; i++) print "nbd write " a[i] * chunk " 4096"
  print "nbd close"
}' >"$WORK/rand.iolog"

# ---- runs --------------------------------------------------------------------
ORDER=(raw qemu ours)
for ((run = 1; run <= RUNS; run++)); do
  echo "nbd_bench: run $run of $RUNS (order: ${ORDER[*]})" >&2
  for sys in "${ORDER[@]}"; do seq_session "$sys" "$run"; done
  for sys in "${ORDER[@]}"; do rand_session "$sys" "$run"; done
  ORDER=("${ORDER[@]:1}" "${ORDER[0]}")
done

# ---- table -------------------------------------------------------------------

echo
echo "NBD over a Unix socket, fio iodepth=8, size=$SIZE, medians of $RUNS runs, seed=$SEED${QEMU_ENV:+, qemu env: ${QEMU_ENV[*]}}"
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs)"
printf '%-34s %10s %10s %10s %9s %10s %9s\n' workload raw-NBD qemu-fleece ours ours/raw ours/qemu qemu/raw
for row in "seq_first|first seq writes 1M (MiB/s)" \
           "rand4k_first|first random 4K writes (IOPS)" \
           "seq_rewrite|rewrites seq 1M (MiB/s)" \
           "shadow_read|snapshot reads seq 1M (MiB/s)"; do
  w=${row%%|*}
  label=${row#*|}
  r=$(median "$w" raw)
  q=$(median "$w" qemu)
  o=$(median "$w" ours)
  awk -v l="$label" -v r="$r" -v q="$q" -v o="$o" 'BEGIN {
    printf "%-34s %10s %10s %10s %9.2f %10.2f %9.2f\n", l, r, q, o, o / r, o / q, q / r }'
done
echo
echo "server CPU seconds per pass (user + system, medians; size=$SIZE, random: $((SIZE_BYTES / CHUNK)) writes)"
printf '%-34s %10s %10s %10s\n' workload raw-NBD qemu-fleece ours
for row in "seq_first|first seq writes 1M" "rand4k_first|first random 4K writes" \
           "seq_rewrite|rewrites seq 1M" "shadow_read|snapshot reads seq 1M"; do
  w=${row%%|*}
  printf '%-34s %10s %10s %10s\n' "${row#*|}" "$(median "$w" raw 5)" "$(median "$w" qemu 5)" "$(median "$w" ours 5)"
done
echo
echo "samples (run 1..$RUNS; figure/server CPU s):"
for w in seq_first rand4k_first seq_rewrite shadow_read; do
  line="  $w:"
  for sys in raw qemu ours; do
    line+=" $sys $(awk -v w="$w" -v s="$sys" '$1 == w && $2 == s { printf "%s%s/%s", (n++ ? "," : ""), $4, $5 }' "$RESULTS")"
  done
  echo "$line"
done
