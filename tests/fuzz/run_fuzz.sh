#!/usr/bin/env bash
# run_fuzz.sh BINARY CORPUS SECONDS: one libFuzzer run of a fuzz target.
#
# Every seed of CORPUS (testdata/fuzz/NAME/, which holds the inputs that once
# crashed) is replayed first; then the fuzzer runs for SECONDS on a copy of
# the corpus in a temporary directory, so testdata/ is never written. Exits
# non-zero on a failed seed or a crash; the input that crashed is kept in
# $VSS_FUZZ_CRASH_DIR (default: crashes/ beside the binary's build tree,
# build-fuzz/crashes/ in the usual set-up) and its path printed, ready to be
# copied into CORPUS as a regression seed once the bug is fixed.
#
# The environment may set VSS_FUZZ_JOBS (parallel fuzzer processes, default 1)
# and VSS_FUZZ_KEEP_CORPUS=1 (keep the grown corpus and print where it is).
set -euo pipefail

if (($# != 3)); then
  echo "usage: run_fuzz.sh BINARY CORPUS SECONDS" >&2
  exit 2
fi
binary=$1 corpus=$2 seconds=$3
name=$(basename "$binary")
name=${name%_fuzz}
[[ -x $binary ]] || { echo "run_fuzz.sh: no fuzz target $binary" >&2; exit 2; }
[[ -d $corpus ]] || { echo "run_fuzz.sh: no seed corpus $corpus" >&2; exit 2; }
[[ $seconds =~ ^[0-9]+$ ]] || { echo "run_fuzz.sh: SECONDS must be a number, not $seconds" >&2; exit 2; }

# build-fuzz/tests/fuzz/NAME_fuzz -> build-fuzz/crashes/NAME
build_root=$(cd "$(dirname "$binary")/../.." && pwd)
crash_dir=${VSS_FUZZ_CRASH_DIR:-$build_root/crashes}/$name
mkdir -p "$crash_dir"

work=$(mktemp -d "${TMPDIR:-/tmp}/vss-fuzz-$name.XXXXXX")
cleanup() {
  if [[ ${VSS_FUZZ_KEEP_CORPUS:-0} == 1 ]]; then
    echo "run_fuzz.sh: the grown corpus of $name is in $work/corpus"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
mkdir "$work/corpus"
cp -- "$corpus"/* "$work/corpus/" 2>/dev/null || true

# Common flags: a slow input (-timeout) and a memory hog (-rss_limit_mb,
# -malloc_limit_mb) count as crashes too; leaks are reported (ASan's LSan).
flags=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048
       -print_final_stats=1 -detect_leaks=1)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# 1. Replay every seed once: a seed that once crashed must not crash again.
echo "run_fuzz.sh: $name: replaying $(ls "$corpus" | wc -l) seeds of $corpus"
if ! "$binary" "${flags[@]}" -runs=0 "$work/corpus" >"$work/replay.log" 2>&1; then
  cat "$work/replay.log" >&2
  echo "run_fuzz.sh: $name: a seed of $corpus fails (see above)" >&2
  exit 1
fi

# 2. Fuzz for $seconds seconds from the copy.
echo "run_fuzz.sh: $name: fuzzing for ${seconds}s"
jobs=${VSS_FUZZ_JOBS:-1}
extra=()
if ((jobs > 1)); then
  extra=(-fork="$jobs" -ignore_crashes=0)
fi
touch "$work/start"
status=0
"$binary" "${flags[@]}" "${extra[@]}" -max_total_time="$seconds" \
  -artifact_prefix="$crash_dir/" "$work/corpus" >"$work/fuzz.log" 2>&1 || status=$?
if ((status != 0)); then
  cat "$work/fuzz.log" >&2
  echo "run_fuzz.sh: $name: the fuzzer failed (exit $status)" >&2
  find "$crash_dir" -type f -newer "$work/start" | while read -r a; do
    echo "run_fuzz.sh: reproducer: $a" >&2
    echo "  replay it: $binary $a" >&2
  done
  exit 1
fi
tail -n 12 "$work/fuzz.log" | grep -E '^(stat::|Done|#)' || true
echo "run_fuzz.sh: $name: no crash in ${seconds}s"
