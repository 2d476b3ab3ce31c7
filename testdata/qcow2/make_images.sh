#!/usr/bin/env bash
# make_images.sh: regenerates the qcow2 test images of this directory with
# qemu-img and qemu-io, and SHA256SUMS.raw, the SHA-256 of each image's
# guest-visible content (`qemu-img convert -O raw IMAGE - | sha256sum`).
#
# Each image is small (a 4 MiB guest, a few written extents, small
# clusters) so that it also serves as a fuzz seed. The names say what each
# one exercises; README.md lists them. Run it from anywhere:
#   testdata/qcow2/make_images.sh
# Needs qemu-img and qemu-io (Debian: qemu-utils).
set -euo pipefail
cd "$(dirname "$0")"

for tool in qemu-img qemu-io; do
  command -v "$tool" >/dev/null || { echo "make_images.sh: $tool is missing" >&2; exit 2; }
done

size=4M
# write_pattern IMAGE: the same three extents in every image (a start, a
# run across clusters, an extent in the second MiB), plus a zeroed range.
write_pattern() {
  qemu-io -f qcow2 -c "write -P 0xab 0 8k" -c "write -P 0x5c 20k 24k" \
    -c "write -P 0x11 1M 4k" -c "write -z 2M 8k" "$1" >/dev/null
}
# make NAME CREATE-OPTIONS: a fresh image with the pattern.
make() {
  local name=$1 opts=$2
  rm -f "$name.qcow2"
  qemu-img create -q -f qcow2 -o "$opts" "$name.qcow2" "$size"
  write_pattern "$name.qcow2"
}

rm -f ./*.qcow2 SHA256SUMS.raw
make v3-c512 cluster_size=512
make v3-c4k cluster_size=4k
make v3-c64k cluster_size=64k
make v2-c4k compat=0.10,cluster_size=4k
for bits in 1 2 4 8 32 64; do
  make "v3-c4k-refcount$bits" "cluster_size=4k,refcount_bits=$bits"
done
make v3-c16k-extl2 cluster_size=16k,extended_l2=on
qemu-io -f qcow2 -c "write -P 0x77 40k 2k" v3-c16k-extl2.qcow2 >/dev/null
make v3-c4k-lazy cluster_size=4k,lazy_refcounts=on

# A persistent dirty bitmap, saved with the writes it tracked.
rm -f v3-c4k-bitmap.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k v3-c4k-bitmap.qcow2 "$size"
qemu-img bitmap --add v3-c4k-bitmap.qcow2 tracked
write_pattern v3-c4k-bitmap.qcow2

# Internal snapshots: writes after each snapshot copy shared clusters.
make v3-c4k-snapshots cluster_size=4k
qemu-img snapshot -c first v3-c4k-snapshots.qcow2
qemu-io -f qcow2 -c "write -P 0xcd 4k 8k" v3-c4k-snapshots.qcow2 >/dev/null
qemu-img snapshot -c second v3-c4k-snapshots.qcow2
qemu-io -f qcow2 -c "write -P 0xef 0 2k" v3-c4k-snapshots.qcow2 >/dev/null

# Compressed clusters, zlib and zstd, converted from an uncompressed image.
for type in zlib zstd; do
  rm -f "v3-c4k-compressed-$type.qcow2"
  qemu-img convert -q -c -f qcow2 -O qcow2 \
    -o "cluster_size=4k,compression_type=$type" v3-c4k.qcow2 "v3-c4k-compressed-$type.qcow2"
done

# A backing chain: base, then an overlay naming it relatively.
make chain-base cluster_size=4k
rm -f chain-overlay.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k -b chain-base.qcow2 -F qcow2 chain-overlay.qcow2
qemu-io -f qcow2 -c "write -P 0x99 4k 4k" -c "write -z 24k 4k" chain-overlay.qcow2 >/dev/null

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for f in *.qcow2; do
  qemu-img check -q "$f"
  qemu-img convert -O raw "$f" "$raw"
  printf '%s  %s\n' "$(sha256sum <"$raw" | cut -d' ' -f1)" "$f"
done >SHA256SUMS.raw
ls -l ./*.qcow2
