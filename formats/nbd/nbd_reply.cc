#include "vss/formats/nbd_reply.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "vss/formats/nbd_protocol.h"

namespace vss {
namespace {

std::string TypeName(uint16_t type) {
  switch (type) {
    case nbd::kReplyTypeNone:
      return "NONE";
    case nbd::kReplyTypeOffsetData:
      return "OFFSET_DATA";
    case nbd::kReplyTypeOffsetHole:
      return "OFFSET_HOLE";
    case nbd::kReplyTypeBlockStatus:
      return "BLOCK_STATUS";
    case nbd::kReplyTypeError:
      return "ERROR";
    case nbd::kReplyTypeErrorOffset:
      return "ERROR_OFFSET";
    default:
      return "type " + std::to_string(type);
  }
}

}  // namespace

NbdReply::NbdReply(const NbdRequest& request, bool structured,
                   std::span<uint8_t> read_into, uint32_t context_id)
    : request_(request),
      structured_(structured),
      read_into_(read_into),
      context_id_(context_id) {}

Status NbdReply::Malformed(const std::string& what) const {
  return IoError("malformed reply from the server: " + what);
}

Status NbdReply::OnSimpleReply(uint32_t error, uint64_t handle) {
  if (handle != request_.handle) return Malformed("unknown handle");
  if (structured_ && request_.type == nbd::kCmdRead) {
    return Malformed("a simple reply to a read after structured replies");
  }
  if (error == 0 && request_.type == nbd::kCmdBlockStatus) {
    return Malformed("block status without a status chunk");
  }
  error_ = error;
  simple_data_follows_ = error == 0 && request_.type == nbd::kCmdRead;
  done_ = true;
  return OkStatus();
}

Status NbdReply::OnChunkHeader(const NbdChunkHeader& h) {
  if (!structured_) {
    return Malformed("a structured reply that was not negotiated");
  }
  if (h.handle != request_.handle) return Malformed("unknown handle");
  const bool read = request_.type == nbd::kCmdRead;
  bool fits = false;
  switch (h.type) {
    case nbd::kReplyTypeNone:
      fits = h.length == 0 && (h.flags & nbd::kReplyFlagDone);
      break;
    case nbd::kReplyTypeOffsetData:
      fits = read && h.length > 8 && h.length - 8 <= request_.length;
      break;
    case nbd::kReplyTypeOffsetHole:
      fits = read && h.length == 12;
      break;
    case nbd::kReplyTypeBlockStatus:
      fits = request_.type == nbd::kCmdBlockStatus && h.length >= 12 &&
             (h.length - 4) % 8 == 0 && h.length <= kMaxStatusPayload;
      break;
    case nbd::kReplyTypeErrorOffset:
      fits = h.length >= 14 && h.length <= kMaxErrorPayload;
      break;
    default:  // ERROR, and error types not known here
      fits = (h.type & nbd::kReplyTypeErrorBit) && h.length >= 6 &&
             h.length <= kMaxErrorPayload;
  }
  if (!fits) {
    return Malformed("unexpected " + TypeName(h.type) + " chunk of " +
                     std::to_string(h.length) + " bytes");
  }
  return OkStatus();
}

Status NbdReply::OnChunkPayload(const NbdChunkHeader& h,
                                std::span<const uint8_t> payload) {
  const uint8_t* p = payload.data();
  switch (h.type) {
    case nbd::kReplyTypeNone:
      break;
    case nbd::kReplyTypeOffsetData: {
      uint64_t offset = nbd::Get64(p);
      VSS_RETURN_IF_ERROR(OnContent(offset, payload.size() - 8, "data"));
      std::memcpy(read_into_.data() + (offset - request_.offset), p + 8,
                  payload.size() - 8);
      break;
    }
    case nbd::kReplyTypeOffsetHole: {
      uint64_t offset = nbd::Get64(p);
      uint32_t length = nbd::Get32(p + 8);
      if (length == 0) return Malformed("an empty hole");
      VSS_RETURN_IF_ERROR(OnContent(offset, length, "hole"));
      std::fill_n(read_into_.data() + (offset - request_.offset), length, 0);
      break;
    }
    case nbd::kReplyTypeBlockStatus:
      VSS_RETURN_IF_ERROR(OnBlockStatus(payload));
      break;
    default:
      VSS_RETURN_IF_ERROR(OnError(h, payload));
  }
  if (h.flags & nbd::kReplyFlagDone) return Finish();
  return OkStatus();
}

// Read data or a hole at [offset, offset + length): inside the request,
// overlapping nothing seen before.
Status NbdReply::OnContent(uint64_t offset, uint64_t length, const char* what) {
  const uint64_t request_end = request_.offset + request_.length;
  if (offset < request_.offset || offset > request_end ||
      length > request_end - offset) {
    return Malformed(std::string(what) + " outside the read");
  }
  const uint64_t end = offset + length;
  auto next = content_.lower_bound(offset);
  if (next != content_.end() && next->first < end) {
    return Malformed(std::string(what) + " overlapping earlier data");
  }
  if (next != content_.begin() && std::prev(next)->second > offset) {
    return Malformed(std::string(what) + " overlapping earlier data");
  }
  content_.emplace(offset, end);
  content_bytes_ += length;
  return OkStatus();
}

// ERROR, ERROR_OFFSET or an unknown error type: error(32), message
// length(16), message, then fields of the type (ERROR_OFFSET: offset(64)).
Status NbdReply::OnError(const NbdChunkHeader& h,
                         std::span<const uint8_t> payload) {
  const uint8_t* p = payload.data();
  uint32_t error = nbd::Get32(p);
  uint16_t message_length = nbd::Get16(p + 4);
  if (error == 0) return Malformed("an error chunk with error 0");
  const size_t trailer = h.type == nbd::kReplyTypeErrorOffset ? 8 : 0;
  if (message_length > payload.size() - 6 - trailer ||
      (trailer != 0 && message_length != payload.size() - 6 - trailer)) {
    return Malformed("an error message longer than its chunk");
  }
  if (trailer != 0) {
    uint64_t offset = nbd::Get64(p + 6 + message_length);
    if (offset < request_.offset ||
        offset - request_.offset >= std::max<uint32_t>(request_.length, 1)) {
      return Malformed("an error offset outside the request");
    }
  }
  if (error_ == 0) {
    error_ = error;
    error_message_.assign(reinterpret_cast<const char*>(p + 6), message_length);
  }
  return OkStatus();
}

// context id(32), then descriptors of length(32) and flags(32).
Status NbdReply::OnBlockStatus(std::span<const uint8_t> payload) {
  if (nbd::Get32(payload.data()) != context_id_) {
    return Malformed("block status for a context that was not negotiated");
  }
  if (have_status_) return Malformed("a second block status chunk");
  have_status_ = true;
  const uint64_t end = request_.offset + request_.length;
  uint64_t pos = request_.offset;
  for (size_t i = 4; i < payload.size(); i += 8) {
    uint32_t length = nbd::Get32(payload.data() + i);
    bool allocated = !(nbd::Get32(payload.data() + i + 4) & nbd::kStateHole);
    if (length == 0) return Malformed("an empty block status descriptor");
    if (pos >= end) {
      return Malformed("block status descriptors past the request");
    }
    // Only the last descriptor may reach past the request: clip it.
    uint64_t n = std::min<uint64_t>(length, end - pos);
    if (!extents_.empty() && extents_.back().allocated == allocated) {
      extents_.back().length += n;
    } else {
      extents_.push_back({pos, n, allocated});
    }
    pos += n;
  }
  return OkStatus();
}

// The chunk with DONE: a successful reply must be complete.
Status NbdReply::Finish() {
  done_ = true;
  if (error_ != 0) {
    extents_.clear();
    return OkStatus();
  }
  if (request_.type == nbd::kCmdRead && content_bytes_ != request_.length) {
    return Malformed("a read reply that does not cover the read");
  }
  if (request_.type == nbd::kCmdBlockStatus && !have_status_) {
    return Malformed("block status without a status chunk");
  }
  return OkStatus();
}

}  // namespace vss
