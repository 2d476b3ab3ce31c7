// NbdReply: one reply of an NBD server, checked against the request it
// answers. NbdDevice reads the messages off the socket and hands them here;
// this class holds no socket and does no I/O, so every rule it enforces can
// be driven by a test.
//
// A reply is either one simple reply or, once structured replies were
// negotiated, a series of structured reply chunks ending with the one that
// carries NBD_REPLY_FLAG_DONE. Nothing the server sends is trusted: the
// handle must be the request's; a chunk's type must fit the command
// (OFFSET_DATA and OFFSET_HOLE only for NBD_CMD_READ, BLOCK_STATUS only for
// NBD_CMD_BLOCK_STATUS, NONE only as the last chunk); its length must fit
// its type; read data and holes must lie inside the request and not
// overlap, and a successful read must be covered completely; a successful
// block status must have exactly one chunk, for the negotiated context, with
// non-empty descriptors of which only the last may end past the request.
// A violation is kIoError from the On* method that saw it, and the caller
// must drop the connection: the byte stream can no longer be trusted.
//
// An error the server reports (a non-zero simple reply error, or an error
// chunk) is not a violation: the reply completes and error() is non-zero.
//
// Thread safety: none; one reply is handled by one thread.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss {

// The fields of a request a reply is checked against.
struct NbdRequest {
  uint16_t type = 0;  // nbd::kCmd*
  uint64_t handle = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// The header of a structured reply chunk, after its magic.
struct NbdChunkHeader {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t handle = 0;
  uint32_t length = 0;  // of the payload that follows
};

class NbdReply {
 public:
  // Server messages for `request`. `structured`: structured replies were
  // negotiated. `read_into`: for NBD_CMD_READ, request.length bytes that
  // the reply fills (holes as zeroes). `context_id`: for
  // NBD_CMD_BLOCK_STATUS, the id the server gave base:allocation, the only
  // context negotiated.
  NbdReply(const NbdRequest& request, bool structured,
           std::span<uint8_t> read_into, uint32_t context_id);

  // A simple reply (magic already checked). Completes the reply. When it
  // returns OK and simple_data_follows(), the caller reads request.length
  // bytes of data into read_into next.
  [[nodiscard]] Status OnSimpleReply(uint32_t error, uint64_t handle);
  bool simple_data_follows() const { return simple_data_follows_; }

  // A structured chunk's header (magic already checked). OK means its
  // payload of h.length bytes is of a size this chunk type may have, so the
  // caller may read it into memory: read data at most 8 + request.length,
  // block status at most kMaxStatusPayload, an error at most
  // kMaxErrorPayload.
  [[nodiscard]] Status OnChunkHeader(const NbdChunkHeader& h);
  // That chunk's payload. REQUIRES: OnChunkHeader(h) returned OK and
  // payload.size() == h.length. Completes the reply when h has DONE.
  [[nodiscard]] Status OnChunkPayload(const NbdChunkHeader& h,
                                      std::span<const uint8_t> payload);

  bool done() const { return done_; }
  // After done(): the first error the server reported (NBD error number),
  // 0 if none, and its message ("" when the server sent none).
  uint32_t error() const { return error_; }
  const std::string& error_message() const { return error_message_; }
  // After done() with error() == 0, for NBD_CMD_BLOCK_STATUS: the status
  // from request.offset on, clipped to the request, at least one extent;
  // a range is allocated unless NBD_STATE_HOLE is set.
  const std::vector<Extent>& extents() const { return extents_; }

  // 2^20 descriptors, the most the protocol says a server should send.
  static constexpr uint32_t kMaxStatusPayload = 4 + 8 * (1u << 20);
  // An error with a message of the longest string the protocol allows, and
  // room for fields of error types not known here.
  static constexpr uint32_t kMaxErrorPayload = 6 + 4096 + 64;

 private:
  Status Malformed(const std::string& what) const;
  Status OnContent(uint64_t offset, uint64_t length, const char* what);
  Status OnError(const NbdChunkHeader& h, std::span<const uint8_t> payload);
  Status OnBlockStatus(std::span<const uint8_t> payload);
  Status Finish();

  const NbdRequest request_;
  const bool structured_;
  const std::span<uint8_t> read_into_;
  const uint32_t context_id_;

  bool done_ = false;
  bool simple_data_follows_ = false;
  uint32_t error_ = 0;
  std::string error_message_;
  std::map<uint64_t, uint64_t> content_;  // read ranges seen: start -> end
  uint64_t content_bytes_ = 0;
  bool have_status_ = false;
  std::vector<Extent> extents_;
};

}  // namespace vss
