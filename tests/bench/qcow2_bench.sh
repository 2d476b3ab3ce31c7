#!/usr/bin/env bash
# qcow2_bench.sh: qcow2 volumes served by vssd against qemu-storage-daemon's
# own qcow2 driver over the same images, driven by fio over NBD on Unix
# sockets, in one run. (The cost of an incremental qcow2 export against a
# full one: qcow2_export_bench.sh.)
#
#   tests/bench/qcow2_bench.sh [--size 1G] [--runs 3] [--dir DIR] [--seed N]
#                              [--build DIR] [--cap SECONDS]
#                              [--data text,mixed,incompressible]
#
# Servers (one at a time, each on a fresh byte-identical copy of its image):
#   qemu         qemu-storage-daemon: file + qcow2 nodes, one writable export.
#   ours         vssd over the same qcow2 registered with `vssctl volume add`
#                (the format read from the header), export live/v.
#   qemu-fleece  the qcow2 node under QEMU's image fleecing: copy-before-write
#                into a temporary qcow2 backed by it, snapshot-access export.
#   ours-shadow  vssd with a shadow of the volume taken before any client
#                connects (vssctl shadow create), live/v and shadow/<id>.
#
# Passes (fio ioengine=nbd, direct=1, iodepth=8, one connection; writes are
# timed to their final NBD flush, end_fsync=1):
#   plain, on an empty qcow2 (64 KiB clusters), qemu against ours:
#     alloc_seq      1 MiB sequential writes over the whole device (every
#                    cluster allocated by the write)
#     rewrite_seq    the same again (clusters allocated)
#     read_seq       1 MiB sequential reads of the whole device
#     alloc_rand4k   one 4 KiB write at the start of every 64 KiB cluster, in
#                    a seeded random order (each allocates its cluster)
#     rewrite_rand4k the same writes again (clusters allocated)
#   shadow, on a qcow2 whose every cluster holds data of the kind given
#   (--data), qemu-fleece against ours-shadow:
#     first_seq_K    1 MiB sequential first writes under the snapshot
#     shadow_read_K  1 MiB sequential reads of the snapshot
#     first_rand4k_K one 4 KiB first write per 64 KiB region, random order
#   Data kinds: text (words of a seeded vocabulary, lines of ~70 bytes:
#   what logs, sources and documents hold; compresses about 3:1), mixed
#   (fio buffer_compress_percentage=50), incompressible (random bytes).
#
# Every figure is a median over --runs; the table prints ours/qemu. Runs
# rotate the servers' order. Everything is created in a new directory in
# --dir (default /var/tmp) and removed at exit, every server stopped.
set -euo pipefail

BENCH_NAME=qcow2_bench
SIZE=1G
BASE_DIR=/var/tmp
RUNS=3
SEED=20261203
CAP=120
DATA=text,mixed,incompressible
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${VSS_BUILD:-$ROOT/build}
# shellcheck source=bench_lib.sh
source "$ROOT/tests/bench/bench_lib.sh"

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 [--size 1G] [--runs 3] [--dir DIR] [--seed N] [--build DIR] [--cap SECONDS]" \
       "[--data text,mixed,incompressible]"
}
while [[ $# -gt 0 ]]; do
  case $1 in
    --size) SIZE=${2:?--size needs a value}; shift 2 ;;
    --dir) BASE_DIR=${2:?--dir needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
    --build) BUILD=${2:?--build needs a value}; shift 2 ;;
    --cap) CAP=${2:?--cap needs a value}; shift 2 ;;
    --data) DATA=${2:?--data needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

for t in fio qemu-storage-daemon qemu-img nbdinfo jq numfmt awk; do
  command -v "$t" >/dev/null || die "$t is missing (Debian: fio, qemu-utils, qemu-system-common, libnbd-bin, jq)"
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs $RUNS: expected a positive integer"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed $SEED: expected a non-negative integer"
[[ $CAP =~ ^[1-9][0-9]*$ ]] || die "--cap $CAP: expected seconds"
SIZE_BYTES=$(numfmt --from=iec "${SIZE%iB}" 2>/dev/null) || die "--size $SIZE: expected bytes or a K/M/G/T suffix"
(( SIZE_BYTES >= 16 * 1048576 && SIZE_BYTES % 1048576 == 0 )) || die "--size $SIZE: a multiple of 1M, at least 16M"
IFS=, read -r -a KINDS <<<"$DATA"
for k in "${KINDS[@]}"; do
  [[ $k == text || $k == mixed || $k == incompressible ]] || die "--data: unknown kind '$k'"
done
CLUSTER=65536
VSSD=$BUILD/tools/vssd/vssd
VSSCTL=$BUILD/tools/vssctl
[[ -x $VSSD && -x $VSSCTL ]] || die "vssd or vssctl missing in $BUILD (cmake --build $BUILD --target vssd vssctl)"
fio --enghelp=nbd >/dev/null 2>&1 || die "fio was built without the nbd ioengine"

mkdir -p "$BASE_DIR" || die "cannot create $BASE_DIR"
WORK=$(mktemp -d "$BASE_DIR/qcow2-bench.XXXXXX") || die "cannot create a directory in $BASE_DIR"
SOCK=$WORK/s
(( ${#SOCK} < 100 )) || { rm -rf "$WORK"; die "--dir $BASE_DIR: path too long for a Unix socket"; }
SERVER_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
LOG=$WORK/log
mkdir -p "$LOG"
RESULTS=$WORK/results
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)
FIO_COMMON=(--ioengine=nbd --direct=1 --iodepth=8 --numjobs=1 --randseed="$SEED"
  --buffer_compress_percentage=50 --buffer_compress_chunk=4k --runtime="$CAP" --output-format=json)

# ---- servers -----------------------------------------------------------------
# start_server SYS IMG: sets URI_W (and URI_R for the shadow servers).
start_qemu() {  # img fleece(0|1)
  local img=$1 d
  d=$(dirname "$img")
  local nodes=(--blockdev "driver=file,filename=$img,node-name=src-file"
               --blockdev "driver=qcow2,file=src-file,node-name=src")
  local exports=(--export "type=nbd,id=e0,node-name=src,name=disk,writable=on")
  URI_W="nbd+unix:///disk?socket=$SOCK"
  if [[ $2 == 1 ]]; then
    qemu-img create -q -f qcow2 -b "$img" -F qcow2 "$d/fleece.qcow2" || die "qemu-img create (fleece) failed"
    nodes+=(--blockdev "driver=file,filename=$d/fleece.qcow2,node-name=tmp-file"
            --blockdev '{"driver":"qcow2","node-name":"tmp","file":"tmp-file","backing":"src"}'
            --blockdev '{"driver":"copy-before-write","node-name":"cbw","file":"src","target":"tmp"}'
            --blockdev '{"driver":"snapshot-access","node-name":"acc","file":"cbw"}')
    exports=(--export "type=nbd,id=e0,node-name=cbw,name=live,writable=on"
             --export "type=nbd,id=e1,node-name=acc,name=snap")
    URI_W="nbd+unix:///live?socket=$SOCK"
    URI_R="nbd+unix:///snap?socket=$SOCK"
  fi
  qemu-storage-daemon "${nodes[@]}" --nbd-server "addr.type=unix,addr.path=$SOCK" \
    "${exports[@]}" >>"$LOG/$SERVER_SYS.log" 2>&1 &
  SERVER_PID=$!
}

start_ours() {  # img shadow(0|1)
  local img=$1 store sid
  store=$(dirname "$img")/store
  "$VSSCTL" --store "$store" volume add "$img" --name v >>"$LOG/$SERVER_SYS.log" 2>&1 ||
    fail_with_log "vssctl volume add failed" "$LOG/$SERVER_SYS.log"
  if [[ $2 == 1 ]]; then
    sid=$("$VSSCTL" --store "$store" --json shadow create v 2>>"$LOG/$SERVER_SYS.log" |
      jq -r '.shadows[0].shadow_id') || fail_with_log "vssctl shadow create failed" "$LOG/$SERVER_SYS.log"
    URI_R="nbd+unix:///shadow/$sid?socket=$SOCK"
  fi
  "$VSSD" --store "$store" --nbd "unix:$SOCK" >>"$LOG/$SERVER_SYS.log" 2>&1 &
  SERVER_PID=$!
  URI_W="nbd+unix:///live/v?socket=$SOCK"
}

start_server() {  # sys img
  SERVER_SYS=$1
  rm -f "$SOCK"
  URI_R=
  case $1 in
    qemu) start_qemu "$2" 0 ;;
    qemu-fleece) start_qemu "$2" 1 ;;
    ours) start_ours "$2" 0 ;;
    ours-shadow) start_ours "$2" 1 ;;
  esac
  wait_ready "$URI_W" "$LOG/$SERVER_SYS.log"
  [[ -z $URI_R ]] || wait_ready "$URI_R" "$LOG/$SERVER_SYS.log"
}

fresh() {  # sys source-image: a synced copy in a new directory
  local d=$WORK/run-$1
  rm -rf "$d"
  mkdir -p "$d"
  cp --sparse=always "$2" "$d/disk.qcow2"
  sync "$d/disk.qcow2"
  echo "$d/disk.qcow2"
}

pass() {  # workload sys run fio-args... (write passes: bw or iops from the args)
  local w=$1 sys=$2 run=$3 v
  shift 3
  case $w in
    *rand4k*) v=$(run_fio "$WORK/f.json" write iops "$((SIZE_BYTES / CLUSTER))" --name="$w" --uri="$URI_W" \
                  --read_iolog="$WORK/rand.iolog" --replay_no_stall=1 --end_fsync=1) ;;
    read_seq|shadow_read*) v=$(run_fio "$WORK/f.json" read bw "$SIZE_BYTES" --name="$w" "$@" --rw=read --bs=1M) ;;
    *) v=$(run_fio "$WORK/f.json" write bw "$SIZE_BYTES" --name="$w" --uri="$URI_W" --rw=write --bs=1M --end_fsync=1) ;;
  esac
  record "$w" "$sys" "$run" "$v"
  echo "  run $run $sys: $w ${v% *}" >&2
}

# ---- sessions ----------------------------------------------------------------
plain_session() {  # sys run
  local sys=$1 run=$2 img
  img=$(fresh "$sys" "$WORK/empty.qcow2")
  start_server "$sys" "$img"
  pass alloc_seq "$sys" "$run"
  pass rewrite_seq "$sys" "$run"
  pass read_seq "$sys" "$run" --uri="$URI_W"
  stop_server
  img=$(fresh "$sys" "$WORK/empty.qcow2")
  start_server "$sys" "$img"
  pass alloc_rand4k "$sys" "$run"
  pass rewrite_rand4k "$sys" "$run"
  stop_server
  [[ $run != 1 ]] || qemu-img check -q "$img" || die "$sys left an image qemu-img check rejects"
  rm -rf "$WORK/run-$sys"
}

shadow_session() {  # sys run kind
  local sys=$1 run=$2 kind=$3 img
  img=$(fresh "$sys" "$WORK/golden-$kind.qcow2")
  start_server "$sys" "$img"
  pass "first_seq_$kind" "$sys" "$run"
  pass "shadow_read_$kind" "$sys" "$run" --uri="$URI_R"
  if [[ $run == 1 ]]; then
    qemu-img compare -q -f raw "$URI_R" "$WORK/golden-$kind.qcow2" ||
      fail_with_log "$sys: the snapshot differs from the image it was taken of" "$LOG/$sys.log"
  fi
  stop_server
  img=$(fresh "$sys" "$WORK/golden-$kind.qcow2")
  start_server "$sys" "$img"
  pass "first_rand4k_$kind" "$sys" "$run"
  stop_server
  rm -rf "$WORK/run-$sys"
}

# ---- images ------------------------------------------------------------------
make_text() {  # bytes file: seeded words in lines, an 8 MiB block repeated
  awk -v seed="$SEED" -v n=$((8 * 1048576)) 'BEGIN {
    srand(seed)
    for (i = 0; i < 4000; i++) {
      w = ""; l = 2 + int(rand() * 8)
      for (k = 0; k < l; k++) w = w sprintf("%c", 97 + int(rand() * 26))
      voc[i] = w
    }
    out = 0; line = ""
    while (out < n) {
      r = rand(); line = line voc[int(4000 * r * r * r)] " "
      if (length(line) > 70) { print line; out += length(line) + 1; line = "" }
    }
  }' >"$WORK/text.block"
  : >"$2"
  while (( $(stat -c %s "$2") < $1 )); do cat "$WORK/text.block" >>"$2"; done
  truncate -s "$1" "$2"
}

make_golden() {  # kind
  local raw=$WORK/golden-$1.raw
  case $1 in
    text) make_text "$SIZE_BYTES" "$raw" ;;
    mixed|incompressible)
      local pct=50
      [[ $1 == mixed ]] || pct=0
      fio --name=prefill --ioengine=psync --filename="$raw" --size="$SIZE_BYTES" --rw=write --bs=1M \
        --randseed="$SEED" --buffer_compress_percentage=$pct --buffer_compress_chunk=4k \
        --refill_buffers --output="$LOG/prefill.txt" >/dev/null 2>>"$LOG/fio.log" ||
        fail_with_log "fio could not write the $1 image" "$LOG/fio.log" ;;
  esac
  qemu-img convert -q -f raw -O qcow2 -o cluster_size=$CLUSTER "$raw" "$WORK/golden-$1.qcow2"
  rm -f "$raw"
}

echo "$BENCH_NAME: size=$SIZE runs=$RUNS seed=$SEED data=$DATA dir=$WORK" >&2
echo "$BENCH_NAME: fio $(fio --version), $(qemu-storage-daemon --version | head -1), vssd from $BUILD" >&2
echo "$BENCH_NAME: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
qemu-img create -q -f qcow2 -o cluster_size=$CLUSTER "$WORK/empty.qcow2" "$SIZE_BYTES"
for k in "${KINDS[@]}"; do make_golden "$k"; done
awk -v n=$((SIZE_BYTES / CLUSTER)) -v chunk=$CLUSTER -v seed="$SEED" 'BEGIN {
  srand(seed)
  for (i = 0; i < n; i++) a[i] = i
  for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = a[i]; a[i] = a[j]; a[j] = t }
  print "fio version 2 iolog"; print "nbd add"; print "nbd open"
  for (i = 0; i < n; i++) print "nbd write " a[i] * chunk " 4096"
  print "nbd close"
}' >"$WORK/rand.iolog"

# ---- runs --------------------------------------------------------------------
PLAIN=(qemu ours)
SHADOW=(qemu-fleece ours-shadow)
for ((run = 1; run <= RUNS; run++)); do
  echo "$BENCH_NAME: run $run of $RUNS" >&2
  for sys in "${PLAIN[@]}"; do plain_session "$sys" "$run"; done
  for k in "${KINDS[@]}"; do
    for sys in "${SHADOW[@]}"; do shadow_session "$sys" "$run" "$k"; done
  done
  PLAIN=("${PLAIN[1]}" "${PLAIN[0]}")
  SHADOW=("${SHADOW[1]}" "${SHADOW[0]}")
done

# ---- table -------------------------------------------------------------------
echo
echo "qcow2 over NBD (Unix socket), fio iodepth=8, size=$SIZE, 64 KiB clusters, medians of $RUNS runs, seed=$SEED"
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs)"
printf '%-36s %12s %12s %10s\n' workload qemu ours ours/qemu
row() {  # workload label qemu-sys ours-sys
  local q o
  q=$(median "$1" "$3")
  o=$(median "$1" "$4")
  awk -v l="$2" -v q="$q" -v o="$o" 'BEGIN { printf "%-36s %12s %12s %10.2f\n", l, q, o, o / q }'
}
row alloc_seq "writes 1M, unallocated (MiB/s)" qemu ours
row rewrite_seq "writes 1M, allocated (MiB/s)" qemu ours
row read_seq "reads 1M (MiB/s)" qemu ours
row alloc_rand4k "random 4K writes, unallocated (IOPS)" qemu ours
row rewrite_rand4k "random 4K writes, allocated (IOPS)" qemu ours
for k in "${KINDS[@]}"; do
  row "first_seq_$k" "first writes 1M, $k (MiB/s)" qemu-fleece ours-shadow
  row "first_rand4k_$k" "first random 4K, $k (IOPS)" qemu-fleece ours-shadow
  row "shadow_read_$k" "snapshot reads 1M, $k (MiB/s)" qemu-fleece ours-shadow
done
echo
echo "samples (figure/server CPU s per run):"
awk '{ s[$1 " " $2] = s[$1 " " $2] (s[$1 " " $2] == "" ? "" : ",") $4 "/" $5 } END { for (k in s) print "  " k ": " s[k] }' "$RESULTS" | sort
