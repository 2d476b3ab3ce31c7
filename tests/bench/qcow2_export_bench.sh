#!/usr/bin/env bash
# The cost of a qcow2 incremental export against a full one: a volume of
# SIZE filled with data, a shadow, a full export; then PERCENT of it
# rewritten in 1 MiB pieces spread over the volume, a second shadow, an
# incremental export on top of the full one. Prints one JSON line with
# both times, the bytes each stored and their ratio. Asserts nothing; not
# part of CTest. Exports skip the read-back (--no-verify) unless VERIFY=1,
# so the figures are those of writing.
#
# usage: qcow2_export_bench.sh PATH/TO/vssctl DIR [SIZE_MIB (1024)] [PERCENT (1)]
set -euo pipefail
VSSCTL=$(realpath "$1")
dir=$2
size_mib=${3:-1024}
percent=${4:-1}
verify=--no-verify
[[ ${VERIFY:-0} == 1 ]] && verify=

work=$(mktemp -d "$dir/qcow2-export-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export VSS_STORE=$work/store
v() { "$VSSCTL" "$@"; }
now() { date +%s.%N; }
shadow() { v shadow create disk --json | jq -r '.shadows[0].shadow_id'; }

v volume create disk.img --size "${size_mib}M" --name disk >/dev/null
# Data that compresses a little, like a used file system.
head -c 48M /dev/urandom | base64 -w0 >fill.bin  # 64 MiB of text
for ((at = 0; at < size_mib; at += 64)); do
  v volume write disk --offset "${at}M" --input fill.bin >/dev/null
done
s1=$(shadow)
t0=$(now)
v shadow export "$s1" full.qcow2 $verify >/dev/null
t1=$(now)

pieces=$((size_mib * percent / 100))
((pieces > 0)) || pieces=1
stride=$((size_mib / pieces))
for ((i = 0; i < pieces; i++)); do
  v volume write disk --offset "$((i * stride))M" --pattern 0x5A --length 1M >/dev/null
done
s2=$(shadow)
t2=$(now)
v shadow export "$s2" inc.qcow2 --since "$s1" --backing full.qcow2 $verify >/dev/null
t3=$(now)

jq -nc --argjson size_mib "$size_mib" --argjson percent "$percent" \
  --argjson full_s "$(echo "$t1 - $t0" | bc -l)" --argjson inc_s "$(echo "$t3 - $t2" | bc -l)" \
  --argjson full_bytes "$(stat -c %s full.qcow2)" --argjson inc_bytes "$(stat -c %s inc.qcow2)" \
  --arg verified "${VERIFY:-0}" \
  '{name: "qcow2_incremental_export", size_mib: $size_mib, changed_percent: $percent,
    full_s: $full_s, incremental_s: $inc_s, ratio: ($inc_s / $full_s),
    full_file_bytes: $full_bytes, incremental_file_bytes: $inc_bytes, verified: ($verified == "1")}'
