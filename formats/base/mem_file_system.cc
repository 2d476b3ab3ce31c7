#include "vss/base/mem_file_system.h"

#include <algorithm>
#include <cstring>
#include <random>

namespace vss {

// One file's bytes. `durable` is what survives a power loss; `pending` the
// operations since the last Sync(); `current` is durable with pending
// applied, which is what reads see.
//
// Name durability: `linked` says whether the name is visible now and
// `name_durable` whether it survives a power loss (set by SyncDir). A file
// removed before its removal was synced stays in the table unlinked so a
// power loss can bring it back; a durable file replaced by an unsynced
// create is kept in `previous` for the same reason.
struct MemFileSystem::Node {
  enum class OpKind { kWrite, kPunch, kTruncate };
  struct Op {
    OpKind kind;
    uint64_t offset;  // the new size for kTruncate
    uint64_t length;
    std::vector<uint8_t> data;  // kWrite only
  };
  std::vector<uint8_t> durable;
  std::vector<uint8_t> current;
  std::vector<Op> pending;
  bool linked = true;
  bool name_durable = false;
  std::shared_ptr<Node> previous;
};

namespace {

using Node = MemFileSystem::Node;
constexpr uint64_t kSector = 512;
constexpr uint64_t kPage = 4096;

// Collapses repeated slashes and drops a trailing one ("/a//b/" -> "/a/b").
std::string Normalize(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// "/a/b" -> "/a", "/a" -> "/", "a" -> "".
std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return path.size() > 1 ? "/" : "";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Applies the first `length` bytes of an operation (all of a truncate).
void ApplyOp(std::vector<uint8_t>& bytes, const Node::Op& op, uint64_t length) {
  switch (op.kind) {
    case Node::OpKind::kWrite:
      if (bytes.size() < op.offset + length) bytes.resize(op.offset + length);
      std::memcpy(bytes.data() + op.offset, op.data.data(), length);
      break;
    case Node::OpKind::kPunch: {
      uint64_t end = std::min<uint64_t>(op.offset + length, bytes.size());
      if (op.offset < end) {
        std::fill(bytes.begin() + op.offset, bytes.begin() + end, 0);
      }
      break;
    }
    case Node::OpKind::kTruncate:
      bytes.resize(op.offset);
      break;
  }
}

// A random 512-aligned prefix strictly inside the operation, or 0.
uint64_t TornLength(const Node::Op& op, std::mt19937_64& rng) {
  if (op.kind == Node::OpKind::kTruncate) return 0;
  uint64_t first = (op.offset / kSector + 1) * kSector;
  uint64_t end = op.offset + op.length;
  if (first >= end) return 0;
  uint64_t boundaries = (end - 1 - first) / kSector + 1;
  return first + (rng() % boundaries) * kSector - op.offset;
}

// Rebuilds a file as a power cut leaves it: its durable image plus none
// (kDropAll) or a random selection, some torn, of its pending operations.
void LoseUnsynced(Node& node, PowerLossMode mode, std::mt19937_64& rng) {
  if (node.pending.empty()) return;  // current == durable already
  node.current = node.durable;
  for (const Node::Op& op : node.pending) {
    if (mode == PowerLossMode::kDropAll) break;
    switch (rng() % 3) {
      case 0:
        ApplyOp(node.current, op, op.length);
        break;
      case 1:
        break;
      default: {
        uint64_t keep = TornLength(op, rng);
        if (keep > 0) ApplyOp(node.current, op, keep);
      }
    }
  }
  node.durable = node.current;
  node.pending.clear();
}

}  // namespace

// A handle on a node. It stays usable after its name is removed, as in
// POSIX. Not in the anonymous namespace because MemFileSystem befriends it.
// REQUIRES: the MemFileSystem outlives its files.
class MemFile final : public File {
 public:
  MemFile(MemFileSystem* fs, std::shared_ptr<Node> node)
      : fs_(fs), node_(std::move(node)) {}

  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    VSS_RETURN_IF_ERROR(fs_->Check(FileOp::kRead));
    const std::vector<uint8_t>& bytes = node_->current;
    if (offset >= bytes.size()) return size_t{0};
    size_t n = static_cast<size_t>(
        std::min<uint64_t>(buf.size(), bytes.size() - offset));
    std::memcpy(buf.data(), bytes.data() + offset, n);
    return n;
  }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    VSS_RETURN_IF_ERROR(fs_->Check(FileOp::kWrite));
    if (buf.empty()) return Status();
    Record({Node::OpKind::kWrite, offset, buf.size(),
            std::vector<uint8_t>(buf.begin(), buf.end())});
    return Status();
  }

  Status Sync() override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    VSS_RETURN_IF_ERROR(fs_->Check(FileOp::kSync));
    // Replays the pending operations onto the durable image instead of
    // copying the whole file: the cost follows the change (appends stay
    // cheap on large files).
    for (const Node::Op& op : node_->pending) {
      ApplyOp(node_->durable, op, op.length);
    }
    node_->pending.clear();
    return Status();
  }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    VSS_RETURN_IF_ERROR(fs_->Check(FileOp::kPunch));
    if (length == 0) return Status();
    Record({Node::OpKind::kPunch, offset, length, {}});
    return Status();
  }

  Status Truncate(uint64_t size) override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    VSS_RETURN_IF_ERROR(fs_->Check(FileOp::kTruncate));
    Record({Node::OpKind::kTruncate, size, 0, {}});
    return Status();
  }

  StatusOr<uint64_t> Size() override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    return static_cast<uint64_t>(node_->current.size());
  }

  // Plausible stand-in for st_blocks: 4 KiB pages holding a non-zero byte,
  // times 4096. A written page of zeroes therefore counts as unallocated.
  StatusOr<uint64_t> AllocatedBytes() override {
    std::lock_guard<std::mutex> lock(fs_->mu_);
    const std::vector<uint8_t>& bytes = node_->current;
    uint64_t pages = 0;
    for (uint64_t start = 0; start < bytes.size(); start += kPage) {
      auto begin = bytes.begin() + start;
      auto end =
          bytes.begin() + std::min<uint64_t>(start + kPage, bytes.size());
      if (std::any_of(begin, end, [](uint8_t b) { return b != 0; })) ++pages;
    }
    return pages * kPage;
  }

 private:
  void Record(Node::Op op) {
    ApplyOp(node_->current, op, op.length);
    node_->pending.push_back(std::move(op));
  }

  MemFileSystem* fs_;
  std::shared_ptr<Node> node_;
};

MemFileSystem::MemFileSystem() = default;
MemFileSystem::~MemFileSystem() = default;

// REQUIRES: mu_ held. Counts the call if the rule matches it and fails the
// nth matching call (and every later one when the rule is persistent).
Status MemFileSystem::Check(FileOp op) {
  if (!rule_ || (rule_->ops & static_cast<uint32_t>(op)) == 0) return Status();
  uint64_t n = ++calls_;
  if (n == rule_->nth || (rule_->persistent && n > rule_->nth)) {
    return rule_->error;
  }
  return Status();
}

void MemFileSystem::SetFaultRule(FileFaultRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rule_ = std::move(rule);
  calls_ = 0;
}

void MemFileSystem::ClearFaultRule() {
  std::lock_guard<std::mutex> lock(mu_);
  rule_.reset();
}

namespace {

// The root and the current directory always exist; others once created.
bool DirExists(const std::set<std::string>& dirs, const std::string& dir) {
  return dir.empty() || dir == "/" || dir == "." || dirs.count(dir) > 0;
}

void AddDirs(std::set<std::string>& dirs, const std::string& path) {
  for (std::string d = path; !DirExists(dirs, d); d = Parent(d)) {
    dirs.insert(d);
  }
}

// The file visible under a name, or null.
std::shared_ptr<Node> Visible(
    const std::map<std::string, std::shared_ptr<Node>>& files,
    const std::string& path) {
  auto it = files.find(path);
  if (it == files.end() || !it->second->linked) return nullptr;
  return it->second;
}

}  // namespace

StatusOr<std::unique_ptr<File>> MemFileSystem::Open(const std::string& path,
                                                    bool create) {
  std::lock_guard<std::mutex> lock(mu_);
  VSS_RETURN_IF_ERROR(Check(FileOp::kOpen));
  const std::string p = Normalize(path);
  if (DirExists(dirs_, p)) {
    return FailedPreconditionError(path + ": is a directory");
  }
  std::shared_ptr<Node> node = Visible(files_, p);
  if (node == nullptr) {
    if (!create) return NotFoundError(path + ": no such file");
    if (!DirExists(dirs_, Parent(p))) {
      return NotFoundError(path + ": no such directory " + Parent(p));
    }
    node = std::make_shared<Node>();
    auto it = files_.find(p);
    if (it != files_.end()) node->previous = it->second;  // removed, unsynced
    files_[p] = node;
  }
  return std::unique_ptr<File>(new MemFile(this, node));
}

// Removes a file (open handles keep working) or an empty directory.
Status MemFileSystem::Remove(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  VSS_RETURN_IF_ERROR(Check(FileOp::kRemove));
  const std::string p = Normalize(path);
  if (std::shared_ptr<Node> node = Visible(files_, p)) {
    node->linked = false;
    if (node->name_durable) return Status();  // kept until SyncDir
    if (node->previous) {
      files_[p] = node->previous;  // still removed, durably present
    } else {
      files_.erase(p);
    }
    return Status();
  }
  if (dirs_.count(p) == 0) return NotFoundError(path + ": no such file");
  StatusOr<std::vector<std::string>> entries = ListLocked(p);
  if (!entries->empty()) {
    return FailedPreconditionError(path + ": directory not empty");
  }
  dirs_.erase(p);
  return Status();
}

Status MemFileSystem::CreateDirs(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  for (std::string d = p; !d.empty() && d != "/"; d = Parent(d)) {
    if (Visible(files_, d)) {
      return FailedPreconditionError(d + " exists and is not a directory");
    }
  }
  AddDirs(dirs_, p);
  return Status();
}

StatusOr<std::vector<std::string>> MemFileSystem::List(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  return ListLocked(Normalize(dir));
}

// REQUIRES: mu_ held, dir normalized.
StatusOr<std::vector<std::string>> MemFileSystem::ListLocked(
    const std::string& dir) {
  if (!DirExists(dirs_, dir)) return NotFoundError(dir + ": no such directory");
  std::vector<std::string> names;
  for (const auto& [path, node] : files_) {
    if (node->linked && Parent(path) == dir) names.push_back(BaseName(path));
  }
  for (const std::string& d : dirs_) {
    if (Parent(d) == dir) names.push_back(BaseName(d));
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool MemFileSystem::Exists(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  return DirExists(dirs_, p) || Visible(files_, p) != nullptr;
}

// Makes the creations and removals of names directly in `dir` durable.
// Directories themselves are durable as soon as they are created.
Status MemFileSystem::SyncDir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  VSS_RETURN_IF_ERROR(Check(FileOp::kSyncDir));
  const std::string d = Normalize(dir);
  if (!DirExists(dirs_, d)) return NotFoundError(dir + ": no such directory");
  for (auto it = files_.begin(); it != files_.end();) {
    if (Parent(it->first) != d) {
      ++it;
    } else if (!it->second->linked) {
      it = files_.erase(it);
    } else {
      it->second->name_durable = true;
      it->second->previous.reset();
      ++it;
    }
  }
  return Status();
}

// Names go back to their last synced state (unsynced creations vanish,
// unsynced removals are undone, in both modes); each surviving file loses
// its unsynced operations per the mode. Files are visited in path order so
// a seed always gives the same result.
void MemFileSystem::PowerLoss(PowerLossMode mode, uint64_t seed) {
  std::lock_guard<std::mutex> lock(mu_);
  std::mt19937_64 rng(seed);
  for (auto it = files_.begin(); it != files_.end();) {
    std::shared_ptr<Node> node = it->second;
    if (node->linked && !node->name_durable) node = node->previous;
    if (node == nullptr) {
      it = files_.erase(it);
      continue;
    }
    node->linked = true;
    node->name_durable = true;
    node->previous.reset();
    LoseUnsynced(*node, mode, rng);
    it->second = node;
    ++it;
  }
}

std::vector<uint8_t> MemFileSystem::Contents(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<Node> node = Visible(files_, Normalize(path));
  return node ? node->current : std::vector<uint8_t>();
}

// Creates the file (and its directories) if needed, durably, name included.
void MemFileSystem::SetContents(const std::string& path,
                                std::vector<uint8_t> bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  AddDirs(dirs_, Parent(p));
  std::shared_ptr<Node> node = Visible(files_, p);
  if (node == nullptr) {
    node = std::make_shared<Node>();
    files_[p] = node;
  }
  node->name_durable = true;
  node->previous.reset();
  node->pending.clear();
  node->durable = bytes;
  node->current = std::move(bytes);
}

}  // namespace vss
