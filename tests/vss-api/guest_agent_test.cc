// The QEMU guest agent client and the guest freezer against a fake agent:
// a thread that speaks the agent's protocol (0xFF resets its parser,
// guest-sync-delimited answers after a 0xFF, one JSON reply a line) on a
// socketpair or a Unix socket, and can be told to send stale bytes first,
// to stop answering, or to refuse a command. The real qemu-ga, in a
// virtual machine, is tests/e2e/guest_agent_vm_test.sh.
//
// The thaw guard's helper is vssd's `--thaw-guard` mode (VSSD_PATH, built
// with this test).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "vss/api/guest_agent_writer.h"
#include "vss/testing/status_matchers.h"
#include "vss/testing/temp_dir.h"

namespace vss::testing {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// A fake guest agent serving one connection at a time.
class FakeAgent {
 public:
  enum class Mode {
    kNormal,
    kStaleBeforeSync,  // stale replies and garbage before the sync's 0xFF
    kSilent,           // reads commands, never answers
    kSilentFreeze,     // answers everything but guest-fsfreeze-freeze
    kRefuseFreeze,     // an error reply to guest-fsfreeze-freeze
  };

  FakeAgent() : stop_(::eventfd(0, EFD_CLOEXEC)) {}
  ~FakeAgent() {
    uint64_t one = 1;
    (void)!::write(stop_, &one, sizeof one);
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    ::close(stop_);
  }

  // Serves `fd` (the agent's end of a socketpair) in a thread.
  void ServeFd(int fd) {
    thread_ = std::thread([this, fd] {
      Serve(fd);
      ::close(fd);
    });
  }

  // Listens on the Unix socket `path` and serves each connection in turn.
  void Listen(const std::string& path) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listen_fd_, 4), 0);
    thread_ = std::thread([this] {
      while (WaitReadable(listen_fd_)) {
        int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        Serve(c);
        ::close(c);
      }
    });
  }

  void set_mode(Mode m) { mode_ = m; }
  bool frozen() const {
    std::lock_guard<std::mutex> l(mu_);
    return frozen_;
  }
  // Waits (at most `limit`) until the guest's state is `frozen`.
  bool WaitFrozen(bool frozen, milliseconds limit) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, limit, [&] { return frozen_ == frozen; });
  }
  int commands(const std::string& name) const {
    std::lock_guard<std::mutex> l(mu_);
    int n = 0;
    for (const std::string& c : log_) n += c == name;
    return n;
  }

 private:
  // False when told to stop.
  bool WaitReadable(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_, POLLIN, 0}};
    while (::poll(p, 2, -1) < 0) {
    }
    return (p[1].revents & POLLIN) == 0;
  }

  void Send(int fd, const std::string& bytes) {
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }

  void Serve(int fd) {
    std::string buf;
    char chunk[1024];
    while (WaitReadable(fd)) {
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        // 0xFF resets the parser: what came before it is dropped.
        if (size_t ff = line.rfind('\xff'); ff != std::string::npos)
          line.erase(0, ff + 1);
        Answer(fd, nlohmann::json::parse(line, nullptr, false));
      }
    }
  }

  void Answer(int fd, const nlohmann::json& cmd) {
    if (!cmd.is_object() || !cmd.contains("execute")) return;
    const std::string name = cmd["execute"].get<std::string>();
    nlohmann::json reply;
    {
      std::lock_guard<std::mutex> l(mu_);
      log_.push_back(name);
      if (mode_ == Mode::kSilent ||
          (mode_ == Mode::kSilentFreeze && name == "guest-fsfreeze-freeze")) {
        return;
      }
      if (name == "guest-sync-delimited") {
        if (mode_ == Mode::kStaleBeforeSync)
          Send(fd, "{\"return\": 99}\ngarbage}{\"ret");
        Send(fd, "\xff");
        reply = {{"return", cmd["arguments"]["id"]}};
      } else if (name == "guest-ping") {
        reply = {{"return", nlohmann::json::object()}};
      } else if (name == "guest-fsfreeze-freeze" &&
                 mode_ == Mode::kRefuseFreeze) {
        reply = {
            {"error",
             {{"class", "GenericError"}, {"desc", "fsfreeze is disabled"}}}};
      } else if (name == "guest-fsfreeze-freeze" ||
                 name == "guest-fsfreeze-thaw") {
        frozen_ = name == "guest-fsfreeze-freeze";
        cv_.notify_all();
        reply = {{"return", 2}};
      } else if (name == "guest-fsfreeze-status") {
        reply = {{"return", frozen_ ? "frozen" : "thawed"}};
      } else {
        reply = {
            {"error", {{"class", "CommandNotFound"}, {"desc", "no " + name}}}};
      }
    }
    Send(fd, reply.dump() + "\n");
  }

  int stop_;
  int listen_fd_ = -1;
  std::atomic<Mode> mode_{Mode::kNormal};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool frozen_ = false;
  std::vector<std::string> log_;
  std::thread thread_;
};

// The value, or the error's message.
std::string Text(const StatusOr<std::string>& s) {
  return s.ok() ? *s : "error: " + s.status().message();
}

// A client on one end of a socketpair whose other end `agent` serves.
std::unique_ptr<QgaClient> PairedClient(FakeAgent& agent,
                                        milliseconds timeout) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  agent.ServeFd(sv[1]);
  return std::make_unique<QgaClient>(sv[0], "fake.sock", timeout);
}

TEST(QgaClientTest, SyncThenFreezeStatusThaw) {
  FakeAgent agent;
  auto c = PairedClient(agent, milliseconds(5000));
  VSS_ASSERT_OK(c->Sync());
  VSS_ASSERT_OK(c->Ping());
  VSS_ASSERT_OK_AND_ASSIGN(int64_t frozen, c->FsFreezeFreeze());
  EXPECT_EQ(frozen, 2);
  EXPECT_EQ(Text(c->FsFreezeStatus()), "frozen");
  VSS_ASSERT_OK_AND_ASSIGN(int64_t thawed, c->FsFreezeThaw());
  EXPECT_EQ(thawed, 2);
  EXPECT_EQ(Text(c->FsFreezeStatus()), "thawed");
}

TEST(QgaClientTest, StaleBytesBeforeTheDelimiterAreDropped) {
  FakeAgent agent;
  agent.set_mode(FakeAgent::Mode::kStaleBeforeSync);
  auto c = PairedClient(agent, milliseconds(5000));
  VSS_ASSERT_OK(c->Sync());
  // Nothing stale is left to be taken for the next reply.
  EXPECT_EQ(Text(c->FsFreezeStatus()), "thawed");
  VSS_ASSERT_OK(c->Sync());
  VSS_ASSERT_OK(c->Ping());
}

TEST(QgaClientTest, AnAgentThatNeverAnswersIsABoundedError) {
  FakeAgent agent;
  agent.set_mode(FakeAgent::Mode::kSilent);
  auto c = PairedClient(agent, milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(c->Sync(),
              StatusIs(StatusCode::kIoError, HasSubstr("fake.sock")));
  EXPECT_THAT(c->FsFreezeFreeze(),
              StatusIs(StatusCode::kIoError,
                       HasSubstr("no answer to guest-fsfreeze-freeze")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(QgaClientTest, AnErrorReplyCarriesTheAgentsDescription) {
  FakeAgent agent;
  agent.set_mode(FakeAgent::Mode::kRefuseFreeze);
  auto c = PairedClient(agent, milliseconds(5000));
  VSS_ASSERT_OK(c->Sync());
  EXPECT_THAT(c->FsFreezeFreeze(), StatusIs(StatusCode::kFailedPrecondition,
                                            HasSubstr("fsfreeze is disabled")));
  // The connection goes on after an error reply.
  VSS_ASSERT_OK(c->Ping());
}

TEST(QgaClientTest, AClosedConnectionIsAnError) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[1]);
  QgaClient c(sv[0], "gone.sock", milliseconds(5000));
  EXPECT_THAT(c.Sync(), StatusIs(StatusCode::kIoError, HasSubstr("gone.sock")));
}

TEST(QgaClientTest, ConnectToNothingNamesTheSocket) {
  TempDir dir;
  EXPECT_THAT(QgaClient::Connect(dir.path() + "/none.sock", milliseconds(100)),
              StatusIs(StatusCode::kIoError, HasSubstr("none.sock")));
}

class GuestFreezerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sock_ = dir_.path() + "/qga.sock";
    agent_.Listen(sock_);
  }
  TempDir dir_;
  std::string sock_;
  FakeAgent agent_;
};

TEST_F(GuestFreezerTest, FreezesOnceAndThawsChecked) {
  GuestFreezer f(milliseconds(60000), milliseconds(5000));
  // Two volumes of one guest: one freeze.
  VssStatus s = f.Prepare({sock_, sock_});
  ASSERT_TRUE(s.ok()) << s.message();
  s = f.Freeze();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(agent_.frozen());
  EXPECT_EQ(agent_.commands("guest-fsfreeze-freeze"), 1);
  EXPECT_EQ(f.frozen(), std::vector<std::string>{sock_});
  s = f.ThawAll();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_FALSE(agent_.frozen());
  EXPECT_TRUE(f.frozen().empty());
  EXPECT_EQ(f.events(),
            (std::vector<std::string>{"freeze " + sock_ + " (2 filesystems)",
                                      "status frozen " + sock_, "thaw " + sock_,
                                      "status thawed " + sock_}));
}

TEST_F(GuestFreezerTest, TheWatchdogThawsWhenTheWindowRunsOut) {
  GuestFreezer f(milliseconds(200), milliseconds(5000));
  ASSERT_TRUE(f.Prepare({sock_}).ok());
  ASSERT_TRUE(f.Freeze().ok());
  ASSERT_TRUE(agent_.WaitFrozen(false, milliseconds(30000)));
  EXPECT_TRUE(f.watchdog_fired());
  EXPECT_TRUE(f.frozen().empty());
}

TEST_F(GuestFreezerTest, AnUnreachableAgentIsARetryableFailureNamingTheSocket) {
  GuestFreezer f(milliseconds(60000), milliseconds(300));
  const std::string none = dir_.path() + "/none.sock";
  VssStatus s = f.Prepare({sock_, none});
  EXPECT_EQ(s.code(), VSS_E_WRITERERROR_RETRYABLE);
  EXPECT_THAT(s.message(), HasSubstr(none));
  ASSERT_TRUE(f.Freeze().ok());  // nothing prepared: nothing frozen
  EXPECT_FALSE(agent_.frozen());
}

TEST_F(GuestFreezerTest, AFreezeWithoutAnswerFailsBoundedAndIsUndone) {
  GuestFreezer f(milliseconds(60000), milliseconds(300));
  ASSERT_TRUE(f.Prepare({sock_}).ok());
  agent_.set_mode(FakeAgent::Mode::kSilentFreeze);
  VssStatus s = f.Freeze();
  EXPECT_EQ(s.code(), VSS_E_WRITERERROR_RETRYABLE);
  EXPECT_THAT(s.message(), HasSubstr(sock_));
  // The thaw went out after the failed freeze.
  EXPECT_EQ(agent_.commands("guest-fsfreeze-thaw"), 1);
  EXPECT_TRUE(f.frozen().empty());
}

TEST_F(GuestFreezerTest, ARefusedFreezeFailsTheWriter) {
  GuestFreezer f(milliseconds(60000), milliseconds(5000));
  ASSERT_TRUE(f.Prepare({sock_}).ok());
  agent_.set_mode(FakeAgent::Mode::kRefuseFreeze);
  VssStatus s = f.Freeze();
  EXPECT_EQ(s.code(), VSS_E_WRITERERROR_RETRYABLE);
  EXPECT_THAT(s.message(), HasSubstr("fsfreeze is disabled"));
  EXPECT_FALSE(agent_.frozen());
}

// A process that freezes the guest and dies without thawing: its thaw
// guard thaws the guest through its duplicate of the connection.
TEST_F(GuestFreezerTest, TheThawGuardThawsWhenTheFreezerDies) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto* f = new GuestFreezer(milliseconds(600000), milliseconds(5000),
                               {VSSD_PATH, "--thaw-guard"});
    bool ok = f->Prepare({sock_}).ok() && f->Freeze().ok();
    ::_exit(ok ? 0 : 1);  // no destructor, no thaw
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_GE(agent_.commands("guest-fsfreeze-freeze"), 1);
  EXPECT_TRUE(agent_.WaitFrozen(false, milliseconds(30000)));
}

}  // namespace
}  // namespace vss::testing
