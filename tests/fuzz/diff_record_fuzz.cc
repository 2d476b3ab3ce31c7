// Fuzz target: the diff-area record parser (engine/record.h), fed the bytes
// of one record as they lie in a segment: the 72-byte header, the payload.
//
// Each input is decoded twice, as DiffArea::ReadRecord does (DecodeHeader,
// then DecodePayload of stored_len bytes into raw_len bytes):
//   1. as it is, so that the magic and both checksums are checked;
//   2. re-sealed: the payload hash and the header checksum recomputed over
//      the input's own bytes, so that mutations of the lengths, the codec
//      and the zstd frame reach the checks behind the checksums.
// A record that decodes is encoded again with EncodeRecord and must decode
// to the same bytes.
#include <xxhash.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "record.h"

namespace vss::engine {
namespace {

uint32_t Le32(const uint8_t* p) {
  return p[0] | p[1] << 8 | p[2] << 16 | uint32_t{p[3]} << 24;
}
void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void Check(bool ok) {
  if (!ok) std::abort();
}

void Decode(std::span<const uint8_t> record) {
  StatusOr<RecordHeader> h = DecodeHeader(record);
  if (!h.ok()) return;
  Check(h->raw_len > 0 && h->raw_len <= kMaxChunkSize);
  Check(h->stored_len <= h->raw_len);
  // ReadRecord reads exactly header + stored_len bytes.
  if (record.size() - kRecordHeaderBytes < h->stored_len) return;
  std::span<const uint8_t> payload =
      record.subspan(kRecordHeaderBytes, h->stored_len);
  std::vector<uint8_t> data(h->raw_len);
  if (!DecodePayload(*h, payload, data).ok()) return;

  // What decodes encodes again to a record of the same chunk and bytes.
  std::vector<uint8_t> again(RecordBytes(h->raw_len));
  RecordHeader e =
      EncodeRecord(h->volume_id, h->chunk, h->epoch, data, again.data());
  StatusOr<RecordHeader> h2 = DecodeHeader(again);
  Check(h2.ok() && h2->chunk == h->chunk && h2->epoch == h->epoch &&
        h2->raw_len == h->raw_len && h2->stored_len == e.stored_len);
  std::vector<uint8_t> data2(h2->raw_len);
  Check(DecodePayload(*h2,
                      std::span<const uint8_t>(again).subspan(
                          kRecordHeaderBytes, h2->stored_len),
                      data2)
            .ok());
  Check(data2 == data);
}

}  // namespace
}  // namespace vss::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace vss::engine;
  std::span<const uint8_t> input(bytes, size);
  Decode(input);
  if (size < kRecordHeaderBytes) return 0;

  std::vector<uint8_t> sealed(input.begin(), input.end());
  const uint32_t stored_len = Le32(sealed.data() + 44);
  if (stored_len <= size - kRecordHeaderBytes) {
    PutLe64(sealed.data() + 56,
            PayloadHash({sealed.data() + kRecordHeaderBytes, stored_len}));
  }
  PutLe64(sealed.data() + 64, XXH3_64bits(sealed.data(), 64));
  Decode(sealed);
  return 0;
}
