// The qcow2 consistency check and refcount repair, like `qemu-img check
// [-r all]`.
//
// CheckImage() walks every structure that holds host clusters: the header
// cluster, the refcount table and its blocks, the active L1 table, the
// snapshot table and each internal snapshot's L1 table, every L2 table
// those reach, the data and compressed clusters the L2 entries point to,
// and the persistent bitmaps (directory, tables, data clusters) when the
// autoclear bit says they are valid. From that walk it computes how many times
// each host cluster is used and compares it with the stored refcount:
//   - stored 0, or stored below the uses: an error (the cluster may be
//     handed out again while in use, which loses data);
//   - stored above the uses: a leak (space nothing refers to);
//   - bit 63 ("copied") of an active L1 or L2 entry not matching a stored
//     refcount of exactly 1: an error;
//   - offsets past the end of the file, not cluster-aligned, metadata
//     overlapping other metadata or data, a compressed entry with the
//     copied bit or a subcluster bitmap, an extended L2 bitmap that says
//     both "allocated" and "zero", reserved bits set in an L1, L2 or
//     refcount table entry: errors.
// The counts agree with qemu-img's (its corruptions are our errors) for
// refcount and copied-bit damage; for pointers past the end, unaligned or
// overlapping, both report errors, not always as many.
//
// Never trusts a byte of the file: any content gives a result or a Status,
// in time and memory bounded by the file's size (each table is parsed at
// most once; the working set is 4 bytes and 2 bits per host cluster, plus
// one table at a time).
//
// Repair (CheckOptions::repair) rewrites refcount entries so that they
// equal the walk's counts (adding a refcount block at the end of the file
// where an empty refcount table entry covers used clusters), then the
// copied bits of active L1/L2 entries so that they match, then clears the
// dirty and corrupt header bits. It refuses, without writing a byte, an
// image with errors a refcount rewrite cannot fix (a pointer past the file
// end or unaligned, overlapping metadata, a bad refcount table entry, a
// cluster the refcount table cannot cover, a count above the refcount
// width).
// Crash safety: every entry written is written whole within one 512-byte
// sector and only ever replaced by the walk's count, which is never below
// a cluster's real uses, so a torn repair leaves each entry either as it
// was or right: no worse than before. New refcount blocks and raised
// refcounts are made durable before the table points to the new blocks,
// that before any refcount is lowered, refcounts before copied bits, all
// before the header bits are cleared.
//
// Thread safety: none of its own; the caller must keep others from
// writing the file during the call.
#pragma once

#include <cstdint>
#include <string>

#include "qcow2_layout.h"
#include "vss/base/file.h"
#include "vss/base/status.h"
#include "vss/formats/driver.h"

namespace vss::qcow2 {

struct CheckOptions {
  // The image's name in Status messages (the result's lines name places
  // inside the image).
  std::string name = "qcow2 image";
  // Repair refcounts, copied bits and the dirty bit (see above).
  bool repair = false;
  // Lines kept in ImageCheckResult::errors; the rest are summed up in one
  // last line, so that a garbage file cannot fill memory with messages.
  uint64_t max_error_lines = 1000;
  // The largest file, in host clusters, that is checked (the working set
  // is about 4 bytes per cluster); above it kUnsupported.
  uint64_t max_clusters = 1ull << 30;
};

// Checks the qcow2 image in `file` and, with options.repair, repairs it
// first (see above) and returns the check made after the repair.
// Errors: kCorruption when the header cannot be parsed (naming
// options.name and the field), kUnsupported for a feature the walk cannot
// follow (an external data file, encryption) or an image above
// max_clusters, kFailedPrecondition when a repair is refused (naming the
// errors it cannot fix), I/O errors of the file. Without repair, nothing
// is written.
[[nodiscard]] StatusOr<ImageCheckResult> CheckImage(
    File& file, const CheckOptions& options);

}  // namespace vss::qcow2
