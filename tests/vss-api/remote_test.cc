// Requesters and writers through the vssd protocol: a ServiceHost over the
// fixture's coordinator serves a Unix socket in the test's directory, and
// Service::Connect reaches it as it reaches vssd. The same sequences as
// the in-process tests must give the same events, states and codes; a
// writer whose connection drops, a requester that goes away, and an
// unprivileged peer are handled as VSS would.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <condition_variable>
#include <thread>

#include "ipc.h"
#include "test_util.h"
#include "vss/api/daemon/service_host.h"
#include "wire.h"

namespace vss::testing {
namespace {

class RemoteTest : public VssApiTest {
 protected:
  void SetUp() override { Open({}); }

  // (Re)makes the coordinator with `options` and serves it on the socket;
  // peers are privileged unless `privileged` is false.
  void Open(CoordinatorOptions options, bool privileged = true) {
    StopHost();
    VssApiTest::Open(std::move(options));
    host_ = std::make_unique<ServiceHost>(*coordinator_, dir_.path() + "/store",
                                          [this](const std::string& line) { host_log_.Add(line); });
    privileged_ = privileged;
    socket_ = dir_.path() + "/vssd.sock";
    ::unlink(socket_.c_str());
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, socket_.c_str());
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_, 16), 0);
    stop_ = false;
    acceptor_ = std::thread([this] {
      while (!stop_) {
        pollfd p{listener_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) host_->Serve(fd, privileged_, "test peer");
      }
    });
  }

  void TearDown() override { StopHost(); }

  void StopHost() {
    if (acceptor_.joinable()) {
      stop_ = true;
      acceptor_.join();
    }
    if (listener_ >= 0) ::close(listener_);
    listener_ = -1;
    host_.reset();
  }

  std::unique_ptr<Service> Connect() {
    ServiceOptions o;
    o.store_dir = dir_.path() + "/store";
    o.socket_path = socket_;
    o.mode = ServiceOptions::Mode::kDaemon;
    VssStatusOr<std::unique_ptr<Service>> s = Service::Connect(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    EXPECT_TRUE((*s)->remote());
    return std::move(*s);
  }

  // Waits up to 5 s for the catalog to hold `n` shadows.
  bool WaitForShadowCount(size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (ShadowCount() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return ShadowCount() == n;
  }

  // The lines the host logs.
  class Lines {
   public:
    void Add(const std::string& line) {
      std::lock_guard<std::mutex> l(mu_);
      lines_.push_back(line);
      cv_.notify_all();
    }
    // Waits (up to 30 s, a bound for a broken build) for a line containing
    // every one of `parts`; returns it, or "" if none came.
    std::string WaitFor(const std::vector<std::string>& parts) {
      std::unique_lock<std::mutex> l(mu_);
      std::string found;
      cv_.wait_for(l, std::chrono::seconds(30), [&] {
        for (const std::string& line : lines_) {
          bool all = true;
          for (const std::string& p : parts) all = all && line.find(p) != std::string::npos;
          if (all) found = line;
        }
        return !found.empty();
      });
      return found;
    }

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
  };

  Lines host_log_;
  std::unique_ptr<ServiceHost> host_;
  std::string socket_;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> privileged_{true};
  std::thread acceptor_;
};

TEST_F(RemoteTest, FullBackup_WritersAndRequesterOverTheSocket_SameSequenceAsInProcess) {
  auto wa = Connect();
  auto wb = Connect();
  auto rq = Connect();
  ASSERT_TRUE(wa && wb && rq);
  TestWriter a(&log_, "A", "vol1/app");
  TestWriter b(&log_, "B", "vol2/db");
  Start(a, "A", *wa, VSS_APP_FRONT_END);
  Start(b, "B", *wb, VSS_APP_BACK_END);
  {
    VssStatusOr<std::vector<WriterStatus>> listed = rq->ListWriters();
    ASSERT_TRUE(listed.ok());
    EXPECT_EQ(listed->size(), 2u);
    VssStatusOr<std::vector<ProviderProp>> providers = rq->ListProviders();
    ASSERT_TRUE(providers.ok());
    ASSERT_EQ(providers->size(), 1u);
    EXPECT_EQ((*providers)[0].provider_type, VSS_PROV_SOFTWARE);
  }
  {
    VssStatusOr<std::unique_ptr<BackupComponents>> made = CreateVssBackupComponents(*rq);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    BackupComponents& bc = **made;
    PrepareBackup(bc, VSS_CTX_BACKUP, {"vol1", "vol2"}, {KeyOf(a, "A"), KeyOf(b, "B")});
    ASSERT_EQ(bc.GetWriterMetadataCount(), 2u);
    VssStatusOr<ExamineWriterMetadata> md = bc.GetWriterMetadata(0);
    ASSERT_TRUE(md.ok());
    EXPECT_EQ(md->GetFileCounts().components, 1u);
    // Order rules hold through the socket, with the same codes.
    EXPECT_EQ(bc.SetContext(VSS_CTX_BACKUP).code(), VSS_E_BAD_STATE);
    EXPECT_EQ(bc.BackupComplete().status().code(), VSS_E_BAD_STATE);

    auto snap = bc.DoSnapshotSet();
    ASSERT_EQ(WaitOn(snap), VSS_S_ASYNC_FINISHED) << (*snap)->Result().ToString();
    EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_WAITING_FOR_BACKUP_COMPLETE);
    EXPECT_EQ(StatusOf(bc, "B").state, VSS_WS_WAITING_FOR_BACKUP_COMPLETE);
    EXPECT_EQ(ShadowCount(), 2u);
    EXPECT_EQ(log_.Noted("A.device").rfind("vss:shadow/", 0), 0u) << log_.Noted("A.device");

    ASSERT_TRUE(bc.SetBackupSucceeded(KeyOf(a, "A"), true).ok());
    ASSERT_TRUE(bc.SetBackupSucceeded(KeyOf(b, "B"), true).ok());
    ASSERT_EQ(WaitOn(bc.BackupComplete()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(StatusOf(bc, "A").state, VSS_WS_STABLE);

    VssStatusOr<std::string> bcd = bc.SaveAsJson();
    ASSERT_TRUE(bcd.ok());
    VssStatusOr<BackupComponentsDocument> doc = BackupComponentsFromJson(*bcd);
    ASSERT_TRUE(doc.ok());
    const Component* ca = doc->FindWriter(a.class_id)->GetComponent(0);
    EXPECT_EQ(ca->GetBackupMetadata(), "meta-A");
    EXPECT_EQ(ca->GetBackupStamp(), "stamp-A");
    EXPECT_TRUE(ca->GetBackupSucceeded());
    VssStatusOr<std::vector<SnapshotProp>> shadows = bc.Query();
    ASSERT_TRUE(shadows.ok());
    EXPECT_EQ(shadows->size(), 2u);
  }
  // Auto-release when the requester object goes.
  EXPECT_TRUE(WaitForShadowCount(0));
  ASSERT_TRUE(log_.WaitFor("B:BackupShutdown"));
  const std::vector<std::string> expected = {
      "Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw",
      "PostSnapshot", "BackupComplete", "BackupShutdown"};
  EXPECT_EQ(log_.Of("A"), expected);
  EXPECT_EQ(log_.Of("B"), expected);
  EXPECT_LT(log_.IndexOf("A:Freeze"), log_.IndexOf("B:Freeze"));
  EXPECT_LT(log_.IndexOf("B:Thaw"), log_.IndexOf("A:Thaw"));
  // The registry shows the writers' last event.
  VssStatusOr<std::vector<WriterStatus>> listed = rq->ListWriters();
  ASSERT_TRUE(listed.ok());
  for (const WriterStatus& s : *listed) EXPECT_EQ(s.last_event, "BackupShutdown") << s.name;
  ASSERT_TRUE(a.Unsubscribe().ok());
  ASSERT_TRUE(b.Unsubscribe().ok());
  EXPECT_TRUE(rq->ListWriters()->empty());
}

TEST_F(RemoteTest, WriterFailsAtFreeze_SetAbortedWithItsCode_NoShadow) {
  auto w = Connect();
  auto rq = Connect();
  TestWriter ok(&log_, "OK", "vol1/app");
  TestWriter bad(&log_, "BAD", "vol1/db", FailAt(WriterEventKind::kFreeze, VSS_E_WRITERERROR_RETRYABLE));
  Start(ok, "OK", *w);
  Start(bad, "BAD", *w);
  auto bc = rq->CreateBackupComponents().value();
  PrepareBackup(*bc, VSS_CTX_BACKUP, {"vol1"});
  auto snap = bc->DoSnapshotSet();
  EXPECT_EQ(WaitOn(snap), VSS_E_WRITERERROR_RETRYABLE);
  EXPECT_EQ(StatusOf(*bc, "BAD").state, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_EQ(StatusOf(*bc, "BAD").failure, VSS_E_WRITERERROR_RETRYABLE);
  EXPECT_EQ(ShadowCount(), 0u);
  ASSERT_TRUE(log_.WaitFor("OK:Abort"));
  EXPECT_TRUE(bc->AbortBackup().ok());
}

TEST_F(RemoteTest, WriterStallsPastTheFreezeWindow_TimesOut) {
  CoordinatorOptions o;
  o.freeze_timeout_ms = 300;
  Open(o);
  auto w = Connect();
  auto rq = Connect();
  TestWriter slow(&log_, "SLOW", "vol1/app", StallAt(WriterEventKind::kFreeze, 1500));
  Start(slow, "SLOW", *w);
  auto bc = rq->CreateBackupComponents().value();
  PrepareBackup(*bc, VSS_CTX_BACKUP, {"vol1"});
  EXPECT_EQ(WaitOn(bc->DoSnapshotSet()), VSS_E_WRITERERROR_TIMEOUT);
  EXPECT_EQ(StatusOf(*bc, "SLOW").state, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_EQ(ShadowCount(), 0u);
}

// A writer process that dies at Freeze: a bare protocol client that answers
// every event and closes its socket when Freeze comes.
TEST_F(RemoteTest, WriterConnectionDropsAtFreeze_FailedWithInfrastructureCode) {
  int fd = internal::ConnectUnix(socket_);
  ASSERT_GE(fd, 0);
  internal::Channel* self = nullptr;
  internal::Channel ch(
      fd,
      [&](const std::string& method, internal::Json args, internal::Channel::Reply reply) {
        ASSERT_EQ(method, "WriterEvent");
        WriterEvent ev = internal::EventFromJson(args.at("event"));
        log_.Add("DIE:" + std::string(WriterEventName(ev.kind)));
        if (ev.kind == WriterEventKind::kFreeze) {
          self->Close();
          return;
        }
        WriterEventResult r;
        r.components = ev.components;
        if (ev.kind == WriterEventKind::kIdentify) {
          WriterMetadataDocument d;
          d.identity.writer_id = *Guid::Parse("11111111-2222-3333-4444-555555555555");
          d.identity.name = "DIE";
          r.metadata = d;
        }
        reply(VssStatus::Ok(), internal::ToJson(r));
      },
      nullptr);
  self = &ch;
  ch.Start();
  ASSERT_TRUE(ch.Call("Hello", {{"version", 1}}).ok());
  WriterRegistration reg;
  reg.identity.instance_id = Guid::Generate();
  reg.identity.writer_id = *Guid::Parse("11111111-2222-3333-4444-555555555555");
  reg.identity.name = "DIE";
  reg.identity.usage = VSS_UT_USERDATA;
  reg.identity.source = VSS_ST_OTHER;
  ASSERT_TRUE(ch.Call("Subscribe", {{"registration", internal::ToJson(reg)}}).ok());

  auto rq = Connect();
  auto bc = rq->CreateBackupComponents().value();
  PrepareBackup(*bc, VSS_CTX_BACKUP, {"vol1"});
  EXPECT_EQ(WaitOn(bc->DoSnapshotSet()), VSS_E_WRITER_INFRASTRUCTURE);
  EXPECT_EQ(StatusOf(*bc, "DIE").state, VSS_WS_FAILED_AT_FREEZE);
  EXPECT_EQ(ShadowCount(), 0u);
  // The dead writer left the registry.
  for (int i = 0; i < 100 && !rq->ListWriters()->empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(rq->ListWriters()->empty());
}

TEST_F(RemoteTest, RequesterConnectionCloses_AutoReleaseShadowsGoNoAutoReleaseStay) {
  {
    auto rq = Connect();
    auto bc = rq->CreateBackupComponents().value();
    PrepareBackup(*bc, VSS_CTX_BACKUP, {"vol1"});
    ASSERT_EQ(WaitOn(bc->DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    EXPECT_EQ(ShadowCount(), 1u);
    // The connection closes with the requester object still alive on this
    // side, as when the process is killed.
    rq.reset();
    EXPECT_TRUE(WaitForShadowCount(0));
  }
  {
    auto rq = Connect();
    auto bc = rq->CreateBackupComponents().value();
    PrepareBackup(*bc, VSS_CTX_BACKUP | VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE, {"vol1"});
    ASSERT_EQ(WaitOn(bc->DoSnapshotSet()), VSS_S_ASYNC_FINISHED);
    rq.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(ShadowCount(), 1u);
  }
}

TEST_F(RemoteTest, UnprivilegedPeer_MayListButNotChangeAnything) {
  Open({}, /*privileged=*/false);
  auto s = Connect();
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->ListWriters().ok());
  EXPECT_TRUE(s->ListProviders().ok());
  EXPECT_EQ(s->CreateBackupComponents().status().code(), E_ACCESSDENIED);
  TestWriter w(&log_, "W", "vol1/app");
  ASSERT_TRUE(w.Initialize(w.class_id, "W", VSS_UT_USERDATA, VSS_ST_OTHER).ok());
  EXPECT_EQ(w.Subscribe(*s).code(), E_ACCESSDENIED);
  EXPECT_EQ(ShadowCount(), 0u);
}

TEST_F(RemoteTest, NoDaemon_AutoFallsBackInProcess_DaemonModeSaysSo) {
  StopHost();
  ::unlink(socket_.c_str());
  ServiceOptions o;
  o.store_dir = dir_.path() + "/store";
  o.socket_path = socket_;
  o.mode = ServiceOptions::Mode::kDaemon;
  VssStatusOr<std::unique_ptr<Service>> d = Service::Connect(o);
  EXPECT_EQ(d.status().code(), E_UNEXPECTED);
  EXPECT_NE(d.status().message().find(socket_), std::string::npos) << d.status().message();
  // In-process needs the store to itself for volumes it opens; the fixture's
  // store is another Store object on the same directory, which is fine for
  // the catalog.
  o.mode = ServiceOptions::Mode::kAuto;
  VssStatusOr<std::unique_ptr<Service>> a = Service::Connect(o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_FALSE((*a)->remote());
  EXPECT_NE((*a)->store(), nullptr);
  o.store_dir = dir_.path() + "/missing";
  EXPECT_EQ(Service::Connect(o).status().code(), VSS_E_OBJECT_NOT_FOUND);
}

// Writes a frame header announcing `n` bytes, then `body` (may be shorter).
bool SendFrame(int fd, uint32_t n, const std::string& body) {
  std::string frame = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  frame += body;
  size_t done = 0;
  while (done < frame.size()) {
    ssize_t w = ::send(fd, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

// True once `fd` reads end of file; a bound of 30 s stands for "never".
bool ReadsEndOfFile(int fd) {
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 30000) <= 0) return false;
    ssize_t r = ::recv(fd, buf, sizeof buf, 0);
    if (r == 0) return true;
    if (r < 0) return errno == ECONNRESET;
  }
}

// A peer announcing a frame over the limit is dropped from the header alone
// (nothing of the body is read or allocated), and the host says why.
TEST_F(RemoteTest, FrameOverTheLimit_ClosedFromItsHeader_ReasonLogged) {
  int fd = internal::ConnectUnix(socket_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendFrame(fd, internal::kMaxFrame + 1, ""));
  EXPECT_TRUE(ReadsEndOfFile(fd));
  ::close(fd);
  std::string line = host_log_.WaitFor(
      {"test peer", "a frame of " + std::to_string(internal::kMaxFrame + 1) + " bytes"});
  EXPECT_FALSE(line.empty());
  // 16 MiB, which used to be accepted.
  fd = internal::ConnectUnix(socket_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendFrame(fd, 16u << 20, "{"));
  EXPECT_TRUE(ReadsEndOfFile(fd));
  ::close(fd);
  EXPECT_FALSE(host_log_.WaitFor({"a frame of 16777216 bytes"}).empty());
}

TEST_F(RemoteTest, FrameOfExactlyTheLimit_IsServed) {
  EXPECT_LE(internal::kMaxFrame, 1u << 20) << "the limit must stay well below 16 MiB";
  int fd = internal::ConnectUnix(socket_);
  ASSERT_GE(fd, 0);
  std::string head = R"({"call":1,"method":"Hello","args":{"version":1,"pad":")";
  std::string tail = R"("}})";
  std::string body = head + std::string(internal::kMaxFrame - head.size() - tail.size(), 'x') + tail;
  ASSERT_EQ(body.size(), internal::kMaxFrame);
  ASSERT_TRUE(SendFrame(fd, internal::kMaxFrame, body));
  unsigned char h[4];
  ASSERT_EQ(::recv(fd, h, 4, MSG_WAITALL), 4);
  uint32_t n = (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | h[3];
  std::string reply(n, '\0');
  ASSERT_EQ(::recv(fd, reply.data(), n, MSG_WAITALL), static_cast<ssize_t>(n));
  internal::Json j = internal::Json::parse(reply);
  EXPECT_EQ(j.value("reply", 0), 1);
  EXPECT_EQ(j.value("hr", -1), 0);
  ::close(fd);
}

TEST_F(RemoteTest, CallOverTheLimit_FailsAtTheCaller_ConnectionStaysUsable) {
  int fd = internal::ConnectUnix(socket_);
  ASSERT_GE(fd, 0);
  internal::Channel ch(fd, nullptr, nullptr);
  ch.Start();
  VssStatusOr<internal::Json> big =
      ch.Call("Hello", {{"version", 1}, {"pad", std::string(internal::kMaxFrame, 'x')}});
  EXPECT_EQ(big.status().code(), E_INVALIDARG);
  EXPECT_NE(big.status().message().find("limit of " + std::to_string(internal::kMaxFrame)),
            std::string::npos)
      << big.status().message();
  EXPECT_TRUE(ch.Call("Hello", {{"version", 1}}).ok());
}

TEST(ChannelTest, ReplyOverTheLimit_BecomesAnErrorReply) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  internal::Channel server(
      sv[0],
      [](const std::string& method, internal::Json, internal::Channel::Reply reply) {
        if (method == "Big") {
          reply(VssStatus::Ok(), internal::Json(std::string(internal::kMaxFrame, 'x')));
        } else {
          reply(VssStatus::Ok(), internal::Json("small"));
        }
      },
      nullptr);
  internal::Channel client(sv[1], nullptr, nullptr);
  server.Start();
  client.Start();
  // Asynchronously, so that a reply that never comes fails the test
  // instead of hanging it.
  auto p = std::make_shared<std::promise<VssStatus>>();
  client.CallAsync("Big", internal::Json::object(),
                   [p](const VssStatus& s, internal::Json) { p->set_value(s); });
  std::future<VssStatus> f = p->get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  VssStatus s = f.get();
  EXPECT_EQ(s.code(), E_OUTOFMEMORY);
  EXPECT_NE(s.message().find("the reply to Big"), std::string::npos) << s.message();
  VssStatusOr<internal::Json> small = client.Call("Small", internal::Json::object());
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(*small, "small");
}

}  // namespace
}  // namespace vss::testing
