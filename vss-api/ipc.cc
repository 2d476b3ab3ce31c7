#include "ipc.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "json_util.h"

namespace vss::internal {
namespace {

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

std::string Encode(const Json& message) {
  return message.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Why a message of `bytes` bytes is not sent.
std::string TooLong(const std::string& what, size_t bytes) {
  return what + " is " + std::to_string(bytes) + " bytes, over the control protocol's limit of " +
         std::to_string(kMaxFrame) + " bytes per message";
}

// The status members of a reply.
Json StatusMembers(const VssStatus& s) {
  return Json{{"hr", s.code()}, {"message", s.message()}};
}

}  // namespace

VssStatus StatusFromJson(const Json& j) {
  // A peer's reply: `hr` a signed 32-bit number, `message` a string. Any
  // other shape is the peer's fault, never this side's crash.
  auto hr = j.find("hr");
  auto message = j.find("message");
  if (hr == j.end()) return VssError(E_UNEXPECTED, "a reply without a status");
  HResult code;
  try {
    code = IntFromJson<HResult>(*hr);
  } catch (const std::exception&) {
    return VssError(E_UNEXPECTED, "a reply whose status is not a 32-bit HRESULT");
  }
  if (Succeeded(code)) return VssStatus(code, "");
  if (message == j.end() || !message->is_string()) return VssStatus(code, "");
  return VssStatus(code, message->get<std::string>());
}

int ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

bool Channel::Core::Send(const std::string& body) {
  uint32_t n = static_cast<uint32_t>(body.size());
  char head[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                  static_cast<char>(n >> 8), static_cast<char>(n)};
  std::lock_guard<std::mutex> l(write_mu);
  if (closed.load()) return false;
  return WriteAll(fd, head, 4) && WriteAll(fd, body.data(), body.size());
}

Channel::Channel(int fd, CallHandler on_call, CloseHandler on_close)
    : core_(std::make_shared<Core>()), on_call_(std::move(on_call)), on_close_(std::move(on_close)) {
  core_->fd = fd;
}

Channel::~Channel() {
  Shutdown();
  ::close(core_->fd);
}

void Channel::Shutdown() {
  Close();
  if (reader_.joinable()) reader_.join();
  for (;;) {
    std::list<Worker> workers;
    {
      std::lock_guard<std::mutex> l(mu_);
      shut_down_ = true;
      workers.swap(workers_);
    }
    if (workers.empty()) return;
    for (Worker& w : workers) w.thread.join();
  }
}

void Channel::Start() { reader_ = std::thread([this] { ReadLoop(); }); }

void Channel::Close() {
  bool was = core_->closed.exchange(true);
  if (!was) ::shutdown(core_->fd, SHUT_RDWR);
}

void Channel::Spawn(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  if (shut_down_) return;  // the peer is gone: nobody waits for this work
  // Reap the workers that finished.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back({std::thread([fn = std::move(fn), done] {
                        fn();
                        done->store(true);
                      }),
                      done});
}

void Channel::CallAsync(const std::string& method, Json args, Reply done) {
  if (core_->closed.load()) {
    done(VssError(E_UNEXPECTED, "the connection to vssd is closed"), nullptr);
    return;
  }
  uint64_t id;
  {
    std::lock_guard<std::mutex> l(mu_);
    id = next_id_++;
    pending_[id] = std::move(done);
  }
  std::string body = Encode(Json{{"call", id}, {"method", method}, {"args", std::move(args)}});
  VssStatus failure = VssStatus::Ok();
  if (body.size() > kMaxFrame) {
    failure = VssError(E_INVALIDARG, TooLong("the call " + method, body.size()));
  } else if (!core_->Send(body)) {
    failure = VssError(E_UNEXPECTED, "the connection to vssd is closed");
  }
  if (!failure.ok()) {
    Reply r;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return;  // the reader failed it already
      r = std::move(it->second);
      pending_.erase(it);
    }
    r(failure, nullptr);
  }
}

VssStatusOr<Json> Channel::Call(const std::string& method, Json args) {
  auto p = std::make_shared<std::promise<VssStatusOr<Json>>>();
  auto f = p->get_future();
  CallAsync(method, std::move(args), [p](const VssStatus& s, Json result) {
    if (s.ok()) {
      p->set_value(std::move(result));
    } else {
      p->set_value(s);
    }
  });
  return f.get();
}

void Channel::FailPending() {
  std::map<uint64_t, Reply> pending;
  {
    std::lock_guard<std::mutex> l(mu_);
    pending.swap(pending_);
  }
  for (auto& [id, r] : pending) {
    r(VssError(E_UNEXPECTED, "the connection closed before the answer"), nullptr);
  }
}

void Channel::ReadLoop() {
  std::string body;
  std::string reason;  // why this side drops the peer
  for (;;) {
    unsigned char head[4];
    if (!ReadAll(core_->fd, reinterpret_cast<char*>(head), 4)) break;
    uint32_t n = (uint32_t{head[0]} << 24) | (uint32_t{head[1]} << 16) |
                 (uint32_t{head[2]} << 8) | uint32_t{head[3]};
    // A peer that breaks framing is dropped, before anything is allocated.
    if (n == 0 || n > kMaxFrame) {
      reason = "a frame of " + std::to_string(n) + " bytes (the limit is 1 to " +
               std::to_string(kMaxFrame) + ")";
      break;
    }
    body.resize(n);
    if (!ReadAll(core_->fd, body.data(), n)) break;
    Json m = Json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (body.capacity() > 64 * 1024) std::string().swap(body);  // keep no large buffer idle
    if (!m.is_object()) {
      reason = "a message that is not a JSON object";
      break;
    }
    if (m.contains("reply") && m["reply"].is_number_unsigned()) {
      Reply r;
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = pending_.find(m["reply"].get<uint64_t>());
        if (it == pending_.end()) continue;  // a reply nobody waits for
        r = std::move(it->second);
        pending_.erase(it);
      }
      VssStatus s = StatusFromJson(m);
      r(s, s.ok() ? std::move(m["result"]) : Json());
      continue;
    }
    if (!m.contains("call") || !m["call"].is_number_unsigned() || !m.contains("method") ||
        !m["method"].is_string()) {
      reason = "a message that is neither a call nor a reply";
      break;
    }
    uint64_t id = m["call"].get<uint64_t>();
    std::weak_ptr<Core> weak = core_;
    auto answered = std::make_shared<std::atomic<bool>>(false);
    Reply reply = [weak, id, answered, method = m["method"].get<std::string>()](
                      const VssStatus& s, Json result) {
      if (answered->exchange(true)) return;
      std::shared_ptr<Core> core = weak.lock();
      if (!core) return;
      Json r = StatusMembers(s);
      r["reply"] = id;
      r["result"] = std::move(result);
      std::string body = Encode(r);
      if (body.size() > kMaxFrame) {
        // The caller still gets its one reply: an error saying why.
        Json e = StatusMembers(
            VssError(E_OUTOFMEMORY, TooLong("the reply to " + method, body.size())));
        e["reply"] = id;
        e["result"] = nullptr;
        body = Encode(e);
      }
      core->Send(body);
    };
    Json args = m.contains("args") ? std::move(m["args"]) : Json::object();
    try {
      on_call_(m["method"].get<std::string>(), std::move(args), reply);
    } catch (const std::exception& e) {
      // A call whose arguments have the wrong shape.
      reply(VssError(E_INVALIDARG, std::string("bad arguments: ") + e.what()), nullptr);
    }
  }
  core_->closed.store(true);
  ::shutdown(core_->fd, SHUT_RDWR);
  FailPending();
  if (on_close_) on_close_(reason);
}

}  // namespace vss::internal
