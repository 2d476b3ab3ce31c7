// NbdDevice: a BlockDevice whose bytes are an export of an NBD server,
// reached over a Unix socket. It is how vssctl's FUSE front end reads and
// writes through vssd when vssd serves the store (vssd then holds the
// volume open, so vssctl could not open it itself).
//
// The client speaks the fixed newstyle handshake and NBD_OPT_GO, then simple
// replies with one request in flight at a time (calls from many threads are
// serialised on the connection). Reads and writes larger than 8 MiB are
// split. Extents are not asked for: every range is reported allocated, which
// the BlockDevice contract allows (SEEK_HOLE then finds only the end).
// Discard and write-zeroes are NBD_CMD_WRITE_ZEROES (which reads back as
// zeroes, unlike TRIM); Flush is NBD_CMD_FLUSH.
//
// Errors: a server error reply becomes a Status from its errno (EIO ->
// kIoError, EPERM -> kFailedPrecondition, ENOSPC -> kNoSpace, EINVAL ->
// kInvalidArgument), naming the export; a broken connection is kIoError for
// this call and every later one.
//
// Thread safety: any number of threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "vss/block_device.h"
#include "vss/status.h"

namespace vss::fuse {

class NbdDevice final : public BlockDevice {
 public:
  // Connects to the server at `socket_path` and opens `export_name`
  // ("live/disk", "shadow/<id>"). kNotFound if the server has no such
  // export, kIoError if the connection or the handshake fails.
  static StatusOr<std::unique_ptr<NbdDevice>> Connect(
      const std::string& socket_path, const std::string& export_name);
  // True when something accepts connections on `socket_path` (the
  // connection is closed again at once).
  static bool ServerListening(const std::string& socket_path);

  // Sends NBD_CMD_DISC and closes the connection.
  ~NbdDevice() override;

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override;
  Status DoWrite(uint64_t offset, std::span<const uint8_t> buf) override;
  Status DoWriteZeroes(uint64_t offset, uint64_t length) override;
  Status DoDiscard(uint64_t offset, uint64_t length) override;
  Status DoFlush() override;
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset,
                                          uint64_t length) override;

 private:
  NbdDevice(std::string name, int fd, uint64_t size, uint16_t flags);
  // One request and its simple reply. `out` is the write payload, `in` is
  // filled with read data. REQUIRES: mu_ held.
  Status Exchange(uint16_t type, uint64_t offset, uint32_t length,
                  std::span<const uint8_t> out, std::span<uint8_t> in);
  Status Broken(const std::string& what);

  const int fd_;
  const uint16_t flags_;  // transmission flags of the export
  std::mutex mu_;         // one request in flight
  uint64_t next_handle_ = 1;
  bool broken_ = false;
};

}  // namespace vss::fuse
