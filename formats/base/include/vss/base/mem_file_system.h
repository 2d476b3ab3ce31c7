// MemFileSystem: an in-memory FileSystem for tests that can simulate power
// loss and inject faults under the engine's diff area.
//
// Each file keeps a durable image and the operations since its last Sync().
// Reads see everything. PowerLoss() turns every file back into its durable
// image plus, per the mode, none, all or a random selection (some torn at a
// 512-byte boundary) of its pending operations; files created since the last
// SyncDir() of their directory vanish in kDropAll mode, removals not yet
// synced are undone. Fault rules fail the Nth matching call (like
// FaultDevice) with a chosen Status, for example kNoSpace on writes.
// Thread safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "vss/base/file.h"
#include "vss/base/power_loss_mode.h"

namespace vss {

enum class FileOp : uint32_t {
  kRead = 1,
  kWrite = 2,
  kSync = 4,
  kPunch = 8,
  kTruncate = 16,
  kOpen = 32,
  kRemove = 64,   // Remove of a file or directory
  kSyncDir = 128,
  kAny = 255,     // every call that reads or changes a file or a name
};

struct FileFaultRule {
  uint32_t ops = static_cast<uint32_t>(FileOp::kAny);
  uint64_t nth = 1;
  bool persistent = false;
  Status error = IoError("injected fault");
};

class MemFileSystem final : public FileSystem {
 public:
  MemFileSystem();
  ~MemFileSystem() override;

  StatusOr<std::unique_ptr<File>> Open(const std::string& path,
                                       bool create) override;
  Status Remove(const std::string& path) override;
  Status CreateDirs(const std::string& path) override;
  StatusOr<std::vector<std::string>> List(const std::string& dir) override;
  bool Exists(const std::string& path) override;
  Status SyncDir(const std::string& dir) override;

  void PowerLoss(PowerLossMode mode, uint64_t seed);
  void SetFaultRule(FileFaultRule rule);
  void ClearFaultRule();

  // Direct access for damage tests: the current bytes of a file (empty if
  // missing) and replacing them (durably).
  std::vector<uint8_t> Contents(const std::string& path);
  void SetContents(const std::string& path, std::vector<uint8_t> bytes);

  struct Node;  // private

 private:
  friend class MemFile;
  Status Check(FileOp op);
  StatusOr<std::vector<std::string>> ListLocked(const std::string& dir);
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Node>> files_;
  std::set<std::string> dirs_;
  std::optional<FileFaultRule> rule_;
  uint64_t calls_ = 0;
};

}  // namespace vss
