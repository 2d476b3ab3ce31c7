#!/usr/bin/env bash
# fio's nbd ioengine as a real NBD client of vssd: verified writes to a live
# export with shadows taken through vssd between and during the passes, then
# every shadow read back over NBD and checked.
#
#   pass 1  sequential 1M writes over the whole volume, verify=crc32c
#           shadow S1 (between passes); reference R1 = the live export,
#           copied right after S1 with no writer running
#   pass 2  random 4K writes (a quarter of the blocks), verify=md5, rate
#           limited so that it runs a few seconds; shadow S2 taken while it
#           runs
#           shadow S3 (between passes); reference R3 likewise
#   pass 3  sequential 1M writes again (a new seed: every byte changes)
#   pass 4  shadow S4 and reference R4, then unthrottled random 4K writes
#           with vssd SIGKILLed in the middle (a seeded moment); vssd is
#           restarted and S1, S3 and S4 must still equal R1, R3 and R4
#
# fio runs with iodepth=8 and do_verify (it reads back and checks what it
# wrote, in the same pass). Then: a fio write to a shadow export fails
# (shadows are read-only) and changes nothing; S1 and S3 read back (nbdcopy)
# equal R1 and R3 byte for byte; S2 reads back whole; fio with
# verify_only against the read-only S1 and S3 exports finds pass 1's and
# pass 2's data; `vssctl shadow verify` passes for all three.
#
# The shadows are persistent (--context app-rollback) and taken through
# vssd's VSS coordinator: the volume is open in vssd while fio uses it.
# The fio seeds (randseed, which also makes the verified data) derive from
# one seed, printed; set VSS_TEST_SEED=N to replay a run, KEEP_WORK=1 to
# keep the scratch directory (fio's JSON and error files are there).
#
# usage: fio_nbd_test.sh VSSCTL VSSD
# Exits 77 (skipped) when fio lacks the nbd engine or a tool is missing.
# Not -e: a failed check is counted and the run goes on; vssd is always
# stopped and the scratch directory removed.
# shellcheck disable=SC2016  # eval strings
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
command -v fio >/dev/null || skip "fio is not installed (Debian: fio)"
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio was built without the nbd ioengine (fio --enghelp=nbd)"
for tool in nbdcopy nbdinfo jq cmp; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (Debian: libnbd-bin, jq)"
done

SEED=${VSS_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}
echo "fio_nbd_test: seed $SEED (replay: VSS_TEST_SEED=$SEED $0 $*)"

make_work vss-fio-nbd
export VSS_STORE=$work/store
unset XDG_DATA_HOME VSS_SOCKET
SOCK=$work/nbd.sock
SIZE=64M
vssd_pid=
fio_pid=
cleanup() {
  stop_pid "$fio_pid" KILL
  stop_pid "$vssd_pid"
}
at_exit cleanup
cd "$work" || exit 1

live="nbd+unix:///live/v?socket=$SOCK"
shadow_uri() { echo "nbd+unix:///shadow/$1?socket=$SOCK"; }

# fio_job NAME ARGS...: one fio job over NBD, its output in NAME.json and
# errors in NAME.err; true if fio exits 0 with no job error.
# With `-q` first, says nothing on failure (for runs meant to fail).
fio_job() {
  local quiet=0
  [[ $1 == -q ]] && { quiet=1; shift; }
  local name=$1; shift
  if fio --name="$name" --ioengine=nbd --iodepth=8 --numjobs=1 --output-format=json \
    --output="$name.json" "$@" 2>"$name.err" &&
    [[ $(jq '[.jobs[].error] | add' "$name.json" 2>/dev/null) == 0 ]]; then
    return 0
  fi
  ((quiet)) || echo "fio $name failed: $(tail -3 "$name.err") $(jq -c '[.jobs[].error]' "$name.json" 2>/dev/null)"
  return 1
}
# The job of each pass; verify_only runs replay them against a shadow.
pass1=(--rw=write --bs=1M --size=$SIZE --randseed=$((SEED + 1)) --verify=crc32c)
pass2=(--rw=randwrite --bs=4k --size=$SIZE --io_size=16M --randseed=$((SEED + 2)) --verify=md5)
pass3=(--rw=write --bs=1M --size=$SIZE --randseed=$((SEED + 3)) --verify=crc32c)
VERIFY=(--do_verify=1 --verify_fatal=1)

# take_shadow: a persistent shadow of v through vssd; prints its id.
take_shadow() {
  v --json shadow create v --context app-rollback 2>>shadow.err | jq -r '.shadows[0].shadow_id'
}
is_id() { [[ $1 =~ ^[0-9a-f-]{36}$ ]]; }
# copy URI FILE: the whole export into a file (nbdcopy, a real client).
copy() {
  rm -f "$2" && nbdcopy "$1" "$2" 2>copy.err && return 0
  echo "nbdcopy $1: $(cat copy.err)"
  return 1
}
# Shadow verify runs in vssctl: it waits until vssd has closed the volume
# (the NBD clients gone).
verify_shadow() {
  local i
  for ((i = 0; i < 50; i++)); do
    v shadow verify "$1" >verify.out 2>verify.err && return 0
    grep -q "in use" verify.err || break
    sleep 0.2
  done
  echo "shadow verify $1: $(cat verify.err)"
  return 1
}

# start_vssd: vssd on the store, in the background; true once it serves
# live/v on its NBD socket.
start_vssd() {
  "$VSSD" --store "$VSS_STORE" --nbd "unix:$SOCK" 2>>vssd.err &
  vssd_pid=$!
  for ((i = 0; i < 100; i++)); do
    [[ -S $SOCK && -S $VSS_STORE/vssd.sock ]] && nbdinfo --size "$live" >/dev/null 2>&1 && return 0
    kill -0 "$vssd_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "vssd did not start: $(tail -3 vssd.err)"
  return 1
}

# ------------------------------------------------------------------ setup
v volume create v.img --size $SIZE --name v >/dev/null || { echo "volume create failed"; exit 1; }
start_vssd
size=$(nbdinfo --size "$live" 2>/dev/null)
[[ $size == $((64 << 20)) ]] || { echo "vssd does not serve live/v: $(tail -3 vssd.err)"; exit 1; }

# ------------------------------------------------------------- the passes
ok "pass 1 (seq 1M, verified)" fio_job pass1 --uri="$live" "${pass1[@]}" "${VERIFY[@]}"
s1=$(take_shadow)
ok "shadow S1 between passes: $(cat shadow.err)" is_id "$s1"
ok "reference R1:" copy "$live" r1.img

# Pass 2 writes for about 8 s (4096 writes at 500/s); S2 is taken 1.5 s in.
fio_job pass2 --uri="$live" "${pass2[@]}" "${VERIFY[@]}" --rate_iops=0,500 &
fio_pid=$!
sleep 1.5
s2=$(take_shadow)
ok "shadow S2 during pass 2: $(cat shadow.err)" is_id "$s2"
ok "pass 2 was still running when S2 was taken" kill -0 "$fio_pid"
wait "$fio_pid"
ok "pass 2 (random 4K, verified)" [ $? -eq 0 ]
fio_pid=
s3=$(take_shadow)
ok "shadow S3 between passes: $(cat shadow.err)" is_id "$s3"
ok "reference R3:" copy "$live" r3.img
ok "pass 2 changed the volume" eval '! cmp -s r1.img r3.img'

ok "pass 3 (seq 1M, new data, verified)" \
  fio_job pass3 --uri="$live" "${pass3[@]}" "${VERIFY[@]}"
ok "the live export after pass 3" copy "$live" live.img
ok "pass 3 changed the volume" eval '! cmp -s r3.img live.img'

# ------------------------------------------------------------ the shadows
ok "a fio write to a shadow export fails" \
  eval '! fio_job -q write_shadow --uri="$(shadow_uri "$s1")" --rw=write --bs=4k --size=1M'
for n in 1 2 3; do
  id_var=s$n
  ok "S$n reads back whole over NBD:" copy "$(shadow_uri "${!id_var}")" s$n.img
done
ok "S1 equals R1, byte for byte (after the write attempt)" cmp s1.img r1.img
ok "S3 equals R3, byte for byte" cmp s3.img r3.img
ok "S2 is a full-size image" eq "$(stat -c %s s2.img)" $((64 << 20))
ok "fio verify_only on the read-only S1 export finds pass 1's data" \
  fio_job verify_s1 --uri="$(shadow_uri "$s1")" "${pass1[@]}" --verify_only=1
ok "fio verify_only on the read-only S3 export finds pass 2's data" \
  fio_job verify_s3 --uri="$(shadow_uri "$s3")" "${pass2[@]}" --verify_only=1
for n in 1 2 3; do
  id_var=s$n
  ok "vssctl shadow verify S$n" verify_shadow "${!id_var}"
done

# ------------------------------------------------ vssd killed mid-write
# S4 and its reference R4, then unthrottled random 4K writes (each the first
# write of its chunk since S4, so each waits on a diff-area sync before its
# overwrite reaches the image) and vssd SIGKILLed in the middle. After a
# restart every persistent shadow must read back exactly as before.
s4=$(take_shadow)
ok "shadow S4 before the crash pass: $(cat shadow.err)" is_id "$s4"
ok "reference R4:" copy "$live" r4.img
fio_job -q pass4 --uri="$live" --rw=randwrite --bs=4k --size=$SIZE --randseed=$((SEED + 4)) \
  --time_based --runtime=30 &
fio_pid=$!
kill_ms=$((200 + SEED % 800))
sleep "$((kill_ms / 1000)).$(printf %03d $((kill_ms % 1000)))"
ok "the crash pass was still writing when vssd was killed (${kill_ms} ms in)" kill -0 "$fio_pid"
kill -KILL "$vssd_pid"
wait "$vssd_pid" 2>/dev/null
vssd_pid=
wait "$fio_pid" 2>/dev/null
fio_pid=
ok "vssd restarts on the store after SIGKILL" start_vssd
for n in 1 3 4; do
  id_var=s$n
  ok "S$n reads back whole after the kill:" copy "$(shadow_uri "${!id_var}")" k$n.img
done
ok "S1 still equals R1 after the kill" cmp k1.img r1.img
ok "S3 still equals R3 after the kill" cmp k3.img r3.img
ok "S4 equals R4 after the kill mid-write" cmp k4.img r4.img
ok "the live export reads back whole after the kill" copy "$live" k-live.img
kill -TERM "$vssd_pid"
wait "$vssd_pid" 2>/dev/null
vssd_pid=
for n in 1 2 3 4; do
  id_var=s$n
  ok "vssctl shadow verify S$n after the kill" verify_shadow "${!id_var}"
done

echo "fio_nbd_test: $checks checks, $failures failures (seed $SEED)"
[[ $failures -eq 0 ]]
