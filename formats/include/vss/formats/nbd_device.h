// NbdDevice: a BlockDevice whose bytes are an export of an NBD server,
// reached over a Unix socket: the client of the "nbd" image driver
// (nbd_driver.h). It is how vssctl's FUSE front end reads and writes
// through vssd when vssd serves the store (vssd then holds the volume open,
// so vssctl could not open it itself).
//
// The client speaks the fixed newstyle handshake. Before NBD_OPT_GO it asks
// for structured replies (NBD_OPT_STRUCTURED_REPLY) and, if the server
// agrees, for the "base:allocation" meta context (NBD_OPT_SET_META_CONTEXT).
// A server that refuses either is still served: without structured replies
// every reply is a simple reply, and without base:allocation Extents()
// reports every range allocated, which the BlockDevice contract allows
// (SEEK_HOLE then finds only the end). With it, Extents() asks
// NBD_CMD_BLOCK_STATUS (in pieces of under 4 GiB, again from where a short
// answer stopped) and a range is a hole when NBD_STATE_HOLE is set.
//
// With structured replies on, any reply may come as chunks: NONE,
// OFFSET_DATA, OFFSET_HOLE (zeroes are filled in), BLOCK_STATUS, ERROR and
// ERROR_OFFSET (nbd_reply.h says what each must satisfy). One request is in
// flight at a time (calls from many threads are serialised on the
// connection). Reads and writes larger than 8 MiB are split. Discard and
// write-zeroes are NBD_CMD_WRITE_ZEROES (which reads back as zeroes, unlike
// TRIM); Flush is NBD_CMD_FLUSH.
//
// Errors: a server error reply becomes a Status from its errno (EIO ->
// kIoError, EPERM -> kFailedPrecondition, ENOSPC -> kNoSpace, EINVAL ->
// kInvalidArgument), naming the export and carrying the server's message;
// the connection stays usable. The server is never trusted: a reply with a
// bad magic or handle, a chunk whose type or length does not fit the
// request, read data outside the request or not covering it, or block
// status for another context is kIoError and breaks the connection, as
// does a lost connection or NBD_ESHUTDOWN (after NBD_CMD_DISC): this call
// and every later one then fail with kIoError.
//
// Thread safety: any number of threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vss/base/status.h"
#include "vss/formats/block_device.h"

namespace vss {

class NbdReply;

class NbdDevice final : public BlockDevice {
 public:
  // Connects to the server at `socket_path` and opens `export_name`
  // ("live/disk", "shadow/<id>"). The device is read-only when the server
  // says the export is, or when `read_only` (then nothing is ever sent
  // that changes the export). kNotFound if the server has no such export,
  // kIoError if the connection or the handshake fails.
  static StatusOr<std::unique_ptr<NbdDevice>> Connect(
      const std::string& socket_path, const std::string& export_name,
      bool read_only = false);
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
  // One request: what it sends and where its reply goes.
  struct Command {
    uint16_t type = 0;  // nbd::kCmd*
    uint64_t offset = 0;
    uint32_t length = 0;
    std::span<const uint8_t> payload;        // NBD_CMD_WRITE: length bytes
    std::span<uint8_t> read_into;            // NBD_CMD_READ: length bytes
    std::vector<Extent>* extents = nullptr;  // NBD_CMD_BLOCK_STATUS
  };

  NbdDevice(std::string name, int fd, uint64_t size, uint16_t flags,
            bool structured, std::optional<uint32_t> allocation_context);
  // Sends `c` and takes its whole reply. OK, the server's error, or
  // kIoError with the connection broken. REQUIRES: mu_ held.
  Status Exchange(const Command& c);
  // Reads one simple reply or structured chunk into `reply`. REQUIRES: mu_.
  Status ReceiveMessage(NbdReply& reply, std::span<uint8_t> read_into);
  void SendDisconnect();  // NBD_CMD_DISC. REQUIRES: mu_ held.
  // Marks the connection broken and shuts it down; kIoError naming `what`.
  Status Broken(const std::string& what);

  const int fd_;
  const uint16_t flags_;   // transmission flags of the export
  const bool structured_;  // structured replies negotiated
  const std::optional<uint32_t> allocation_context_;  // base:allocation id
  std::mutex mu_;                                     // one request in flight
  uint64_t next_handle_ = 1;
  bool broken_ = false;
  std::vector<uint8_t> scratch_;  // a chunk's payload
};

}  // namespace vss
