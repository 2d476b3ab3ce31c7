#include "vss/api/guest_agent_writer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "freeze_window.h"
#include "json_util.h"
#include "vss/api/daemon/thaw_guard.h"

namespace vss {
namespace {

using internal::Json;

// The byte that resets the agent's parser (sent) and marks the reply to
// guest-sync-delimited (received): never valid in UTF-8 JSON text.
constexpr char kSentinel = '\xff';

// Replies longer than this are not the agent's (the freeze commands'
// replies are a few bytes).
constexpr size_t kMaxReply = 1 << 20;

int RemainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// A guest-sync id that another client of the agent is unlikely to use.
int64_t FreshSyncId() {
  static std::atomic<int64_t> next{[] {
    std::random_device rd;
    return static_cast<int64_t>(rd() & 0x3fffffff) << 16;
  }()};
  return next++;
}

// The "return" value of `reply`, or the error it carries.
StatusOr<Json> ReturnOf(const Json& reply, const std::string& context) {
  if (!reply.is_object())
    return IoError(context + ": a reply that is not a JSON object");
  if (auto e = reply.find("error"); e != reply.end()) {
    std::string desc =
        e->is_object() && e->contains("desc") && (*e)["desc"].is_string()
            ? (*e)["desc"].get<std::string>()
            : e->dump();
    return FailedPreconditionError(context + ": the agent says: " + desc);
  }
  auto r = reply.find("return");
  if (r == reply.end())
    return IoError(context + ": a reply without \"return\"");
  return *r;
}

}  // namespace

Guid GuestAgentWriterClassId() {
  // Fixed, so that requesters recognise the writer across restarts.
  static const Guid id = *Guid::Parse("0b6f3c2e-8d41-4a57-b1e9-7a2c4f90d3a5");
  return id;
}

// --- QgaClient --------------------------------------------------------------

QgaClient::QgaClient(int fd, std::string name,
                     std::chrono::milliseconds timeout)
    : fd_(fd), name_(std::move(name)), timeout_(timeout) {}

QgaClient::~QgaClient() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<std::unique_ptr<QgaClient>> QgaClient::Connect(
    const std::string& path, std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return InvalidArgumentError(
        "guest agent socket " + path +
        ": not a usable socket path (empty or too long)");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "guest agent socket " + path);
  // A Unix socket connects at once or fails (a full backlog: EAGAIN).
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) !=
      0) {
    const int err = errno;
    ::close(fd);
    return IoError("guest agent socket " + path +
                   ": cannot connect: " + std::strerror(err));
  }
  return std::make_unique<QgaClient>(fd, path, timeout);
}

Status QgaClient::SendAll(const std::string& bytes, Deadline deadline) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      return IoError("guest agent " + name_ +
                     ": cannot send: " + std::strerror(errno));
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, RemainingMs(deadline)) == 0) {
      return IoError("guest agent " + name_ +
                     ": does not take commands (no answer within " +
                     std::to_string(timeout_.count()) + " ms)");
    }
  }
  return OkStatus();
}

Status QgaClient::Fill(Deadline deadline, const std::string& what) {
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, RemainingMs(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      return IoError("guest agent " + name_ + ": no answer to " + what +
                     " within " + std::to_string(timeout_.count()) + " ms");
    }
    char chunk[4096];
    ssize_t n = r < 0 ? -1 : ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0)
      return IoError("guest agent " + name_ + ": " + what + ": " +
                     std::strerror(errno));
    if (n == 0)
      return IoError("guest agent " + name_ +
                     ": closed the connection during " + what);
    buf_.append(chunk, static_cast<size_t>(n));
    if (buf_.size() > kMaxReply) {
      return IoError("guest agent " + name_ + ": a reply to " + what +
                     " over " + std::to_string(kMaxReply) + " bytes");
    }
    return OkStatus();
  }
}

StatusOr<std::string> QgaClient::ReadLine(Deadline deadline,
                                          const std::string& what) {
  size_t nl;
  while ((nl = buf_.find('\n')) == std::string::npos)
    VSS_RETURN_IF_ERROR(Fill(deadline, what));
  std::string line = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  return line;
}

Status QgaClient::Sync() {
  const Deadline deadline = std::chrono::steady_clock::now() + timeout_;
  const int64_t id = FreshSyncId();
  const std::string what = "guest-sync-delimited";
  Json cmd = {{"execute", what}, {"arguments", {{"id", id}}}};
  VSS_RETURN_IF_ERROR(
      SendAll(std::string(1, kSentinel) + cmd.dump() + "\n", deadline));
  for (;;) {
    // Stale bytes (an earlier client's replies) end at the agent's 0xFF.
    size_t mark;
    while ((mark = buf_.find(kSentinel)) == std::string::npos) {
      buf_.clear();
      VSS_RETURN_IF_ERROR(Fill(deadline, what));
    }
    buf_.erase(0, mark + 1);
    VSS_ASSIGN_OR_RETURN(std::string line, ReadLine(deadline, what));
    Json reply = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    StatusOr<Json> value =
        ReturnOf(reply, "guest agent " + name_ + ": " + what);
    if (value.ok() && value->is_number_integer() && value->get<int64_t>() == id)
      return OkStatus();
    // A reply to an earlier sync (whose 0xFF came first): wait for ours.
    if (!value.ok() &&
        value.status().code() == StatusCode::kFailedPrecondition) {
      return IoError(value.status().message());
    }
  }
}

StatusOr<std::string> QgaClient::Execute(const std::string& command) {
  const Deadline deadline = std::chrono::steady_clock::now() + timeout_;
  VSS_RETURN_IF_ERROR(
      SendAll(Json{{"execute", command}}.dump() + "\n", deadline));
  VSS_ASSIGN_OR_RETURN(std::string line, ReadLine(deadline, command));
  // A stray sentinel (an earlier sync's) is not part of the reply.
  line.erase(std::remove(line.begin(), line.end(), kSentinel), line.end());
  Json reply = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded()) {
    return IoError("guest agent " + name_ + ": " + command +
                   ": a reply that is not JSON");
  }
  VSS_ASSIGN_OR_RETURN(
      Json value, ReturnOf(reply, "guest agent " + name_ + ": " + command));
  return value.dump();
}

Status QgaClient::Ping() { return Execute("guest-ping").status(); }

namespace {
// The integer a count-returning command answered.
StatusOr<int64_t> CountOf(StatusOr<std::string> value,
                          const std::string& context) {
  VSS_RETURN_IF_ERROR(value.status());
  Json j = Json::parse(*value, nullptr, false);
  if (!j.is_number_integer())
    return IoError(context + ": not a count: " + *value);
  return j.get<int64_t>();
}
}  // namespace

StatusOr<int64_t> QgaClient::FsFreezeFreeze() {
  return CountOf(Execute("guest-fsfreeze-freeze"),
                 "guest agent " + name_ + ": freeze");
}

StatusOr<int64_t> QgaClient::FsFreezeThaw() {
  return CountOf(Execute("guest-fsfreeze-thaw"),
                 "guest agent " + name_ + ": thaw");
}

StatusOr<std::string> QgaClient::FsFreezeStatus() {
  VSS_ASSIGN_OR_RETURN(std::string value, Execute("guest-fsfreeze-status"));
  Json j = Json::parse(value, nullptr, false);
  if (!j.is_string()) {
    return IoError("guest agent " + name_ +
                   ": guest-fsfreeze-status: not a status: " + value);
  }
  return j.get<std::string>();
}

// --- GuestFreezer -----------------------------------------------------------

GuestFreezer::GuestFreezer(std::chrono::milliseconds window,
                           std::chrono::milliseconds agent_timeout,
                           std::vector<std::string> guard_command,
                           std::function<void(const std::string&)> log)
    : agent_timeout_(agent_timeout),
      log_(std::move(log)),
      window_(std::make_unique<internal::FreezeWindow>(
          window, std::move(guard_command), &mu_,
          [this] { ThawLocked("watchdog thaw").IgnoreError(); })) {
  window_->Start();
}

GuestFreezer::~GuestFreezer() {
  {
    std::lock_guard<std::mutex> l(mu_);
    ThawLocked("thaw").IgnoreError();
  }
  window_->Stop();
}

void GuestFreezer::Note(const std::string& line) {
  events_.push_back(line);
  if (log_) log_("guest agent: " + line);
}

VssStatus GuestFreezer::StartGuard() {
  std::lock_guard<std::mutex> l(mu_);
  return window_->StartGuard(&events_);
}

VssStatus GuestFreezer::Prepare(const std::vector<std::string>& sockets) {
  std::lock_guard<std::mutex> l(mu_);
  if (armed_ || std::any_of(guests_.begin(), guests_.end(),
                            [](const Guest& g) { return g.frozen; })) {
    return VssError(VSS_E_BAD_STATE, "guests are already frozen");
  }
  guests_.clear();
  std::vector<Guest> ready;
  for (const std::string& path : sockets) {
    if (std::any_of(ready.begin(), ready.end(),
                    [&](const Guest& g) { return g.client->name() == path; })) {
      continue;  // two volumes of one guest
    }
    StatusOr<std::unique_ptr<QgaClient>> c =
        QgaClient::Connect(path, agent_timeout_);
    Status s = c.status();
    if (s.ok()) s = (*c)->Sync();
    if (!s.ok()) {
      Note("prepare failed " + path + ": " + s.message());
      return VssError(VSS_E_WRITERERROR_RETRYABLE, s.message());
    }
    ready.push_back(Guest{std::move(c).value()});
  }
  guests_ = std::move(ready);
  return VssStatus::Ok();
}

VssStatus GuestFreezer::FreezeOne(Guest& g) {
  const std::string& sock = g.client->name();
  if (ThawGuard* guard = window_->guard(); guard != nullptr) {
    // The helper holds its own duplicate of the connection before the
    // freeze goes out: if this process dies from here on, it thaws.
    Status s = guard->WillFreezeGuest(sock, g.client->fd());
    if (!s.ok()) {
      Note("freeze failed " + sock + ": " + s.message());
      return VssError(VSS_E_WRITERERROR_NONRETRYABLE,
                      "cannot freeze the guest of " + sock +
                          " under the thaw guard: " + s.message());
    }
    g.guarded = true;
  }
  g.frozen = true;  // from here on a thaw is owed, whatever the answer
  StatusOr<int64_t> n = g.client->FsFreezeFreeze();
  StatusOr<std::string> state =
      n.ok() ? g.client->FsFreezeStatus() : StatusOr<std::string>(n.status());
  if (state.ok() && *state != "frozen") {
    state = IoError("guest agent " + sock + ": guest-fsfreeze-status says " +
                    *state + " after guest-fsfreeze-freeze");
  }
  if (!state.ok()) {
    Note("freeze failed " + sock + ": " + state.status().message());
    return VssError(VSS_E_WRITERERROR_RETRYABLE, state.status().message());
  }
  Note("freeze " + sock + " (" + std::to_string(*n) + " filesystems)");
  Note("status frozen " + sock);
  return VssStatus::Ok();
}

VssStatus GuestFreezer::Freeze() {
  std::lock_guard<std::mutex> l(mu_);
  if (guests_.empty()) return VssStatus::Ok();
  if (armed_) return VssError(VSS_E_BAD_STATE, "guests are already frozen");
  if (VssStatus s = window_->StartGuard(&events_); !s.ok()) {
    Note("freeze failed: " + s.message());
    return s;
  }
  // Armed before the first freeze: the window counts from the Freeze
  // event, as the coordinator's does.
  armed_ = true;
  window_->Arm();
  for (Guest& g : guests_) {
    if (VssStatus s = FreezeOne(g); !s.ok()) {
      ThawLocked("thaw").IgnoreError();
      return s;
    }
  }
  return VssStatus::Ok();
}

Status GuestFreezer::ThawOne(Guest& g, const char* why) {
  const std::string& sock = g.client->name();
  // A freeze that timed out leaves its reply in flight: sync first then.
  StatusOr<int64_t> n = g.client->FsFreezeThaw();
  if (!n.ok() && n.status().code() == StatusCode::kIoError &&
      g.client->Sync().ok()) {
    n = g.client->FsFreezeThaw();
  }
  // "not frozen" errors are fine: the status below is what counts.
  StatusOr<std::string> state = g.client->FsFreezeStatus();
  if (!state.ok() && g.client->Sync().ok()) state = g.client->FsFreezeStatus();
  Status result = state.status();
  if (state.ok() && *state != "thawed") {
    result = IoError("guest agent " + sock + ": guest-fsfreeze-status says " +
                     *state + " after guest-fsfreeze-thaw" +
                     (n.ok() ? "" : " (" + n.status().message() + ")"));
  }
  if (result.ok()) {
    Note(std::string(why) + " " + sock);
    Note("status thawed " + sock);
  } else {
    Note("thaw failed " + sock + ": " + result.message());
  }
  // After the thaw: until then the helper must still be able to thaw. A
  // broken guard is replaced at the next Freeze.
  if (g.guarded && window_->guard() != nullptr)
    window_->guard()->Thawed(sock).IgnoreError();
  g.guarded = false;
  g.frozen = false;
  return result;
}

VssStatus GuestFreezer::ThawLocked(const char* why) {
  armed_ = false;
  window_->Disarm();
  std::string failed;
  for (auto it = guests_.rbegin(); it != guests_.rend(); ++it) {
    if (!it->frozen) continue;
    if (Status s = ThawOne(*it, why); !s.ok()) {
      failed += (failed.empty() ? "" : "; ") + s.message();
    }
  }
  guests_.clear();  // connections closed: the next set connects anew
  if (!failed.empty())
    return VssError(VSS_E_WRITERERROR_NONRETRYABLE, "cannot thaw: " + failed);
  return VssStatus::Ok();
}

VssStatus GuestFreezer::ThawAll() {
  std::lock_guard<std::mutex> l(mu_);
  return ThawLocked("thaw");
}

std::vector<std::string> GuestFreezer::frozen() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const Guest& g : guests_) {
    if (g.frozen) out.push_back(g.client->name());
  }
  return out;
}

bool GuestFreezer::watchdog_fired() const {
  std::lock_guard<std::mutex> l(mu_);
  return window_->fired();
}

std::vector<std::string> GuestFreezer::events() const {
  std::lock_guard<std::mutex> l(mu_);
  return events_;
}

// --- GuestAgentWriter -------------------------------------------------------

GuestAgentWriter::GuestAgentWriter(GuestAgentWriterOptions options)
    : options_(std::move(options)),
      freezer_(std::chrono::milliseconds(options_.freeze_timeout_ms),
               std::chrono::milliseconds(options_.agent_timeout_ms),
               options_.guard_command, options_.log) {}

GuestAgentWriter::~GuestAgentWriter() { Stop(); }

void GuestAgentWriter::Stop() {
  // No handler may run while the freezer thaws; then thaw whatever is left.
  Unsubscribe().IgnoreError();
  freezer_.ThawAll().IgnoreError();
}

VssStatus GuestAgentWriter::Initialize() {
  if (!options_.socket_of) {
    return VssError(E_INVALIDARG, "guest agent writer: no socket lookup given");
  }
  return Writer::Initialize(GuestAgentWriterClassId(), "guest-agent",
                            VSS_UT_SYSTEMSERVICE, VSS_ST_OTHER, VSS_APP_SYSTEM,
                            options_.freeze_timeout_ms);
}

bool GuestAgentWriter::OnPrepareSnapshot() {
  std::vector<std::string> sockets;
  for (const EventVolume& v : GetCurrentVolumes()) {
    std::string sock = options_.socket_of(v);
    if (!sock.empty()) sockets.push_back(std::move(sock));
  }
  VssStatus s = freezer_.Prepare(sockets);
  if (s.ok()) return true;
  SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  return false;
}

bool GuestAgentWriter::OnFreeze() {
  VssStatus s = freezer_.Freeze();
  if (s.ok()) return true;
  SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  return false;  // a veto: the set is aborted
}

bool GuestAgentWriter::OnThaw() {
  const bool fired = freezer_.watchdog_fired();
  VssStatus s = freezer_.ThawAll();
  if (!s.ok()) {
    SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  } else if (fired) {
    SetWriterFailureEx(
        VSS_E_WRITERERROR_TIMEOUT, S_OK,
        "the freeze window ran out before Thaw; the watchdog thawed the guests")
        .IgnoreError();
  }
  return true;
}

bool GuestAgentWriter::OnAbort() {
  VssStatus s = freezer_.ThawAll();
  if (!s.ok()) SetWriterFailureEx(s.code(), S_OK, s.message()).IgnoreError();
  return true;
}

}  // namespace vss
