# bench_lib.sh: the pieces nbd_bench.sh and qcow2_bench.sh share, sourced by
# both. The caller sets BENCH_NAME (message prefix), LOG (log directory),
# SOCK (the server's Unix socket), CAP (a pass's runtime cap, s), RESULTS (the
# results file), FIO_COMMON (fio arguments of every pass), CLK_TCK, and keeps
# SERVER_PID / SERVER_SYS for the server it runs (one at a time).
#
#   fail_with_log MSG LOG     the message, the log's last lines, exit 1
#   wait_ready URI LOG        until the server answers on URI (10 s bound)
#   stop_server               SIGTERM to the server, reaped
#   run_fio OUT DIR METRIC EXPECTED ARGS...
#                             one fio pass; prints "FIGURE CPU_SECONDS"
#                             (MiB/s for METRIC bw, IOPS for iops) after
#                             checking fio moved EXPECTED bytes / requests
#   record WORKLOAD SYS RUN "FIGURE CPU"   appends a result line
#   median WORKLOAD SYS [COLUMN]          median over runs (4 figure, 5 CPU)
#   alloc_mib PATH            allocated MiB of a file or directory

fail_with_log() {  # message, log file
  echo "$BENCH_NAME: $1" >&2
  [[ -f $2 ]] && tail -n 5 "$2" | sed 's/^/  | /' >&2
  exit 1
}

wait_ready() {  # uri, log
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || fail_with_log "server exited at start" "$2"
    if [[ -S $SOCK ]] && nbdinfo --size "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail_with_log "server did not answer on $SOCK within 10 s" "$2"
}

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}

server_cpu_ticks() {  # user + system ticks of the server, all its threads
  awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"
}
run_fio() {
  local out=$1 dir=$2 metric=$3 expect=$4 t0 t1 figure
  shift 4
  t0=$(server_cpu_ticks)
  if ! fio "${FIO_COMMON[@]}" --output="$out" "$@" >/dev/null 2>>"$LOG/fio.log"; then
    echo "$BENCH_NAME: $SERVER_SYS server (pid $SERVER_PID) is $(kill -0 "$SERVER_PID" 2>/dev/null &&
      echo running || echo gone); its log ends:" >&2
    tail -n 5 "$LOG/$SERVER_SYS.log" | sed 's/^/  | /' >&2
    fail_with_log "fio failed: $*" "$LOG/fio.log"
  fi
  t1=$(server_cpu_ticks)
  local err ios runtime_ms
  err=$(jq -r '.jobs[0].error' "$out")
  [[ $err == 0 ]] || fail_with_log "fio reported error $err: $*" "$LOG/fio.log"
  runtime_ms=$(jq -r ".jobs[0].$dir.runtime" "$out")
  (( runtime_ms > 0 )) || fail_with_log "fio did no $dir I/O: $*" "$LOG/fio.log"
  if (( runtime_ms >= CAP * 990 )); then
    echo "$BENCH_NAME: warning: pass stopped at the ${CAP}s cap: $*" >&2
  fi
  if [[ $metric == bw ]]; then
    local bytes
    bytes=$(jq -r ".jobs[0].$dir.io_bytes" "$out")
    (( bytes == expect || runtime_ms >= CAP * 990 )) ||
      fail_with_log "fio moved $bytes of $expect bytes: $*" "$LOG/fio.log"
    # bytes completed / time (the time includes the final flush)
    figure=$(jq -r ".jobs[0].$dir | .io_bytes / 1048576 / (.runtime / 1000) | . * 10 | round / 10" "$out")
  else
    # requests issued (all completed: end_fsync waits for them) / time; fio's
    # own io_bytes under-counts an iolog replay by iodepth-1 requests.
    ios=$(jq -r ".jobs[0].$dir.total_ios" "$out")
    (( ios == expect || runtime_ms >= CAP * 990 )) || fail_with_log "fio issued $ios of $expect requests: $*" "$LOG/fio.log"
    figure=$(jq -r ".jobs[0].$dir | .total_ios / (.runtime / 1000) | round" "$out")
  fi
  echo "$figure $(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
}

record() { echo "$1 $2 $3 $4" >>"$RESULTS"; }

alloc_mib() {  # allocated MiB of a file or directory
  du -sm "$1" | awk '{print $1}'
}

median() {  # workload sys [column: 4 = figure, 5 = server CPU seconds]
  awk -v w="$1" -v s="$2" -v c="${3:-4}" '$1 == w && $2 == s { print $c }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
